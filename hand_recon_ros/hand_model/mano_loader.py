"""Load MANO model files without chumpy, plus the project's stand-in, into plain numpy dicts.

MANO's released pickles hold ``shapedirs`` as a chumpy ``Select`` over a ``Ch`` and ``J_regressor`` as a
scipy sparse matrix. Unpickling them normally needs chumpy (unmaintained, broken on current Python) and
executes arbitrary globals. The restricted unpickler below maps the chumpy/scipy classes to inert
records, refuses every other global, and evaluates the records to numpy itself.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import sys
from collections.abc import Mapping
from typing import Any, Union, cast

import numpy as np

logger = logging.getLogger('hand_recon_ros.hand_model')

ENV_MANO_DIR = 'HAND_RECON_MANO_DIR'
ENV_CACHE_DIR = 'HAND_RECON_CACHE'
MANO_FILES = {'right': 'MANO_RIGHT', 'left': 'MANO_LEFT'}
STANDIN_FILES = {'right': 'STANDIN_RIGHT.npz', 'left': 'STANDIN_LEFT.npz'}
CACHE_FORMAT = 'v1'

# key -> expected shape; V (vertices), F (faces) are free but must agree between keys
REQUIRED_KEYS = {
    'v_template': ('V', 3),
    'shapedirs': ('V', 3, None),
    'posedirs': ('V', 3, 135),
    'J_regressor': (16, 'V'),
    'kintree_table': (2, 16),
    'weights': ('V', 16),
    'f': ('F', 3),
    'hands_components': (45, 45),
    'hands_mean': (45,),
}


StrPath = Union[str, 'os.PathLike[str]']
# a directory, a {'right': file, 'left': file} mapping, or None (environment, then the stand-in)
ModelSource = Union[StrPath, dict[str, StrPath], None]


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or does not have the MANO layout."""


# ------------------------------------------------------------------------------------------------
# Restricted unpickling
# ------------------------------------------------------------------------------------------------
class _InertRecord:
    """Stands in for a chumpy / scipy object: keeps the pickled state, runs none of its code."""

    kind = 'record'
    state: Any

    def __setstate__(self, state: Any) -> None:
        self.__dict__['state'] = state

    def __repr__(self) -> str:
        return f'<{self.kind} record>'


class _ChRecord(_InertRecord):
    kind = 'Ch'


class _SelectRecord(_InertRecord):
    kind = 'Select'


class _SparseRecord(_InertRecord):
    kind = 'sparse'
    fmt = ''


def _sparse_record(fmt: str) -> type[_SparseRecord]:
    return type(f'_{fmt}Record', (_SparseRecord,), {'fmt': fmt})


_SPARSE_CLASSES = {name: _sparse_record(name[:3]) for name in ('csc_matrix', 'csr_matrix', 'coo_matrix')}
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array-unpickling helper

# Exact (module, name) pairs that resolve normally. Raw Python-2 names are listed because find_class
# sees them before any name fix-up. numpy._core.* is the same helper as written by numpy >= 2.
_ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'): _RECONSTRUCT,
    ('numpy._core.multiarray', '_reconstruct'): _RECONSTRUCT,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('__builtin__', 'set'): set,
    ('builtins', 'set'): set,
    ('_codecs', 'encode'): __import__('_codecs').encode,
}


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the MANO whitelist (it is never imported or called)."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only knows MANO's globals; anything else raises pickle.UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ('chumpy.ch', 'Ch'):
            return _ChRecord
        if (module, name) == ('chumpy.reordering', 'Select'):
            return _SelectRecord
        if (module == 'scipy.sparse' or module.startswith('scipy.sparse.')) and name in _SPARSE_CLASSES:
            return _SPARSE_CLASSES[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise RefusedGlobalError(f'refusing to load global {module}.{name} from a model pickle')


def _sparse_to_dense(rec: _SparseRecord) -> np.ndarray:
    st = rec.state
    shape = tuple(int(x) for x in (st.get('_shape') or st.get('shape')))
    data = np.asarray(_evaluate(st['data']), dtype=np.float64)
    dense = np.zeros(shape)
    if rec.fmt in ('csc', 'csr'):
        indices = np.asarray(st['indices'], dtype=np.int64)
        indptr = np.asarray(st['indptr'], dtype=np.int64)
        outer = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        rows, cols = (indices, outer) if rec.fmt == 'csc' else (outer, indices)
    else:
        coords = st.get('coords')
        rows, cols = (coords[0], coords[1]) if coords is not None else (st['row'], st['col'])
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    np.add.at(dense, (rows, cols), data)
    return dense


def _evaluate(value: Any) -> Any:
    """Turn inert records into numpy arrays (what chumpy's .r would return)."""
    if isinstance(value, _ChRecord):
        return np.asarray(_evaluate(value.state['x']))
    if isinstance(value, _SelectRecord):
        st = value.state
        flat = np.asarray(_evaluate(st['a'])).ravel()[np.asarray(st['idxs'], dtype=np.int64)]
        shape = st.get('preferred_shape')
        return flat.reshape(shape) if shape is not None else flat
    if isinstance(value, _SparseRecord):
        return _sparse_to_dense(value)
    if isinstance(value, _InertRecord):
        raise ModelFileError(f'cannot evaluate {value!r}')
    return value


def load_mano_pickle_bytes(data: bytes, name: str = '<bytes>') -> dict[str, Any]:
    """Parse MANO-pickle bytes with the restricted unpickler -> dict of plain numpy values."""
    try:
        raw = RestrictedUnpickler(io.BytesIO(data), encoding='latin1').load()
    except RefusedGlobalError:
        raise
    except Exception as exc:  # truncated / corrupt files: say which file
        raise ModelFileError(f'{name}: not a readable MANO pickle ({type(exc).__name__}: {exc})') from exc
    if not isinstance(raw, dict):
        raise ModelFileError(f'{name}: expected a dict at the top level, got {type(raw).__name__}')
    return {str(k): _evaluate(v) for k, v in raw.items()}


# ------------------------------------------------------------------------------------------------
# Validation and normalisation
# ------------------------------------------------------------------------------------------------
def validate_model_dict(d: Mapping[str, Any], name: str = 'model') -> dict[str, Any]:
    """Check keys and shapes (clear error naming the first problem); return normalised arrays."""
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ModelFileError(
            f"{name}: missing key '{missing[0]}' (all missing: {missing}; " f'required: {sorted(REQUIRED_KEYS)})'
        )
    out = dict(d)
    for k in REQUIRED_KEYS:
        out[k] = np.asarray(_evaluate(d[k]))
        if out[k].dtype == object:
            raise ModelFileError(f"{name}: key '{k}' is not numeric ({type(d[k]).__name__})")
    sizes = {'V': out['v_template'].shape[0], 'F': out['f'].shape[0] if out['f'].ndim else -1}
    for k, expected in REQUIRED_KEYS.items():
        shape = out[k].shape
        ok = len(shape) == len(expected) and all(
            e is None or shape[i] == (sizes[e] if isinstance(e, str) else e) for i, e in enumerate(expected)
        )
        if not ok:
            want = tuple('*' if e is None else (f'{e}={sizes[e]}' if isinstance(e, str) else e) for e in expected)
            raise ModelFileError(f"{name}: key '{k}' has shape {shape}, expected {want}")
    if out['shapedirs'].shape[2] < 10:
        raise ModelFileError(f"{name}: 'shapedirs' has {out['shapedirs'].shape[2]} directions, need >= 10")
    if out['f'].min() < 0 or out['f'].max() >= sizes['V']:
        raise ModelFileError(f"{name}: face indices outside [0, {sizes['V']})")
    for k in ('v_template', 'shapedirs', 'posedirs', 'J_regressor', 'weights', 'hands_components', 'hands_mean'):
        if not np.all(np.isfinite(out[k])):
            raise ModelFileError(f"{name}: key '{k}' contains non-finite values")
    return out


def to_npz_dict(d: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Arrays only (no pickling needed to store or load); strings become 0-d unicode arrays."""
    out = {}
    for k, v in d.items():
        if isinstance(v, str):
            out[k] = np.array(v)
        elif isinstance(v, np.ndarray) and v.dtype != object:
            out[k] = v
        elif isinstance(v, (int, float, list, tuple)):
            arr = np.asarray(v)
            if arr.dtype != object:
                out[k] = arr
    return out


# ------------------------------------------------------------------------------------------------
# Files, cache, resolution
# ------------------------------------------------------------------------------------------------
def file_sha256(path: StrPath) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cache_dir() -> str:
    """User cache for converted MANO files (env HAND_RECON_CACHE, else ~/.cache/hand_recon_ros)."""
    path = os.environ.get(ENV_CACHE_DIR) or os.path.join(os.path.expanduser('~'), '.cache', 'hand_recon_ros')
    path = os.path.realpath(path)
    repo = os.path.realpath(_repo_root())
    # .git is a directory in a clone and a file in a git worktree: both are a repository
    if os.path.exists(os.path.join(repo, '.git')) and (path == repo or path.startswith(repo + os.sep)):
        raise ModelFileError(
            f'cache directory {path} is inside the repository {repo}; converted MANO data '
            f'must never be stored there (set {ENV_CACHE_DIR} elsewhere)'
        )
    return path


def load_model_file(path: StrPath, use_cache: bool = False) -> tuple[dict[str, Any], str]:
    """Load a MANO .pkl (chumpy-free) or an .npz (stand-in or cache) -> validated dict + sha256.

    Returns (dict, sha256 of the file bytes). With use_cache, a .pkl is converted once into the user
    cache as an .npz keyed by the file's hash (about 4x faster to load next time).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f'model file not found: {path}')
    with open(path, 'rb') as fh:
        data = fh.read()
    digest = hashlib.sha256(data).hexdigest()
    if path.endswith('.npz'):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        return validate_model_dict(d, path), digest
    cached = None
    if use_cache:
        cached = os.path.join(cache_dir(), f'{os.path.basename(path)}.{digest[:20]}.{CACHE_FORMAT}.npz')
        if os.path.isfile(cached):
            try:
                with np.load(cached, allow_pickle=False) as z:
                    return validate_model_dict({k: z[k] for k in z.files}, cached), digest
            except (OSError, ValueError) as exc:
                logger.warning('ignoring unreadable cache file %s (%s)', cached, exc)
    d = validate_model_dict(load_mano_pickle_bytes(data, path), path)
    if cached is not None:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = f'{cached}.{os.getpid()}.tmp'
        with open(tmp, 'wb') as fh:
            np.savez(fh, **to_npz_dict(d))  # type: ignore[arg-type]  # numpy's stub types **kwds as its allow_pickle
        os.replace(tmp, cached)
    return d, digest


def standin_dirs() -> list[str]:
    """Where the shipped stand-in may live: the source checkout, then installed share/ directories."""
    dirs = [os.path.join(_repo_root(), 'models', 'standin')]
    prefixes = [sys.prefix] + [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    dirs += [os.path.join(p, 'share', 'hand_recon_ros', 'models', 'standin') for p in prefixes]
    return dirs


def _find_side(directory: str, side: str) -> str | None:
    stem = MANO_FILES[side]
    for ext in ('.pkl', '.npz'):
        p = os.path.join(directory, stem + ext)
        if os.path.isfile(p):
            return p
    return None


def resolve_model_files(mano_dir: ModelSource = None) -> tuple[dict[str, str], bool, str]:
    """-> (paths {'right': p, 'left': p}, is_standin, source description).

    Order: explicit argument (a directory with MANO_{RIGHT,LEFT}.pkl|.npz, or a {'right', 'left'}
    mapping of files) > env HAND_RECON_MANO_DIR > the shipped stand-in.
    """
    if isinstance(mano_dir, dict):
        if set(mano_dir) != {'right', 'left'}:
            raise ValueError(f"a model mapping needs exactly the keys 'right' and 'left', got {sorted(mano_dir)}")
        paths = {s: os.fspath(p) for s, p in mano_dir.items()}
        for p in paths.values():
            if not os.path.isfile(p):
                raise ModelFileError(f'model file not found: {p}')
        is_standin = all(os.path.basename(p).startswith('STANDIN_') for p in paths.values())
        return paths, is_standin, 'explicit files'
    source = None
    if mano_dir is not None:
        source = 'argument'
    elif os.environ.get(ENV_MANO_DIR):
        mano_dir, source = os.environ[ENV_MANO_DIR], f'${ENV_MANO_DIR}'
    if mano_dir is not None:
        mano_dir = os.fspath(mano_dir)
        if not os.path.isdir(mano_dir):
            raise ModelFileError(f'MANO directory ({source}) does not exist: {mano_dir}')
        found = {s: _find_side(mano_dir, s) for s in ('right', 'left')}
        if all(found.values()):
            return cast(dict[str, str], found), False, f'MANO files from {source}'
        standin = {s: os.path.join(mano_dir, f) for s, f in STANDIN_FILES.items()}
        if all(os.path.isfile(p) for p in standin.values()):
            return standin, True, f'stand-in files from {source}'
        missing = [MANO_FILES[s] + '.pkl' for s, p in found.items() if p is None]
        raise ModelFileError(
            f'MANO directory {mano_dir} ({source}) lacks {missing} '
            f'(MANO_RIGHT.pkl and MANO_LEFT.pkl from https://mano.is.tue.mpg.de)'
        )
    for d in standin_dirs():
        paths = {s: os.path.join(d, f) for s, f in STANDIN_FILES.items()}
        if all(os.path.isfile(p) for p in paths.values()):
            return paths, True, 'shipped stand-in'
    raise ModelFileError(
        'no MANO files given and no stand-in found (looked in: ' + ', '.join(standin_dirs()) + '); run '
        '`python -m tools.standin --out models/standin` in a source checkout'
    )


def left_shapedirs_need_fix(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """MANO_LEFT ships the right hand's shapedirs (smplx issue #48): detect that case."""
    diff = np.abs(np.asarray(left['shapedirs'])[:, 0, :] - np.asarray(right['shapedirs'])[:, 0, :]).sum()
    return bool(diff < 1.0)


def fix_left_shapedirs(left: dict[str, Any], right: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Negate the x rows of the left shapedirs when they equal the right ones; idempotent.

    Returns (left dict, applied). A correctly mirrored model (e.g. the stand-in) is left unchanged.
    """
    if not left_shapedirs_need_fix(left, right):
        return left, False
    out = dict(left)
    sd = np.array(left['shapedirs'], copy=True)
    sd[:, 0, :] *= -1
    out['shapedirs'] = sd
    return out, True
