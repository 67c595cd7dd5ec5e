"""Chumpy-free MANO loading, file resolution, cache, left-shapedirs fix, and the HandModel API."""

import contextlib
import io
import logging
import os
import pickle
import pickletools
import warnings

import numpy as np
import pytest
import torch

from hand_recon_ros import conventions
from hand_recon_ros.hand_model import mano_loader
from hand_recon_ros.hand_model import model as model_mod
from hand_recon_ros.hand_model.model import HandModel, load_hand_model
from tools.standin import generator as standin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN_DIR = os.path.join(REPO, 'models', 'standin')
MANO_GLOBALS = {
    'numpy.core.multiarray _reconstruct',
    'numpy ndarray',
    'numpy dtype',
    '__builtin__ set',
    'chumpy.ch Ch',
    'chumpy.reordering Select',
    'scipy.sparse.csc csc_matrix',
    '_codecs encode',
}


@pytest.fixture(scope='module')
def right_arrays():
    return standin.build_standin_arrays('right')


@pytest.fixture(scope='module')
def chumpy_dir(tmp_path_factory, right_arrays):
    """A directory laid out like a user's MANO download, holding chumpy-structured stand-in pickles."""
    d = tmp_path_factory.mktemp('mano')
    standin.write_chumpy_style_pickle(d / 'MANO_RIGHT.pkl', model=right_arrays)
    standin.write_chumpy_style_pickle(d / 'MANO_LEFT.pkl', model=standin.mirror_model(right_arrays))
    return d


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(mano_loader.ENV_CACHE_DIR, str(tmp_path / 'cache'))
    monkeypatch.delenv(mano_loader.ENV_MANO_DIR, raising=False)


def _globals(path):
    with open(path, 'rb') as fh:
        return {arg for op, arg, _ in pickletools.genops(fh.read()) if op.name == 'GLOBAL'}


def _pose_batch(seed, batch=3):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 3, generator=g) * 0.5,
        torch.randn(batch, 45, generator=g) * 0.3,
        torch.randn(batch, 10, generator=g),
        torch.randn(batch, 3, generator=g) * 0.1,
    )


# ---------------------------------------------------------------------------------------------
# restricted unpickler
# ---------------------------------------------------------------------------------------------
def test_chumpy_style_fixture_has_exactly_the_mano_globals(chumpy_dir):
    assert _globals(chumpy_dir / 'MANO_RIGHT.pkl') == MANO_GLOBALS
    try:
        import chumpy  # noqa: F401
    except ImportError:
        with (
            open(chumpy_dir / 'MANO_RIGHT.pkl', 'rb') as fh,
            warnings.catch_warnings(),
            pytest.raises(ModuleNotFoundError, match='chumpy'),
        ):
            warnings.simplefilter('ignore', DeprecationWarning)  # scipy.sparse.csc is deprecated
            pickle.load(fh, encoding='latin1')


def test_chumpy_pickle_loads_to_the_same_arrays_as_the_npz(chumpy_dir, right_arrays):
    from_pkl, _ = mano_loader.load_model_file(chumpy_dir / 'MANO_RIGHT.pkl')
    from_npz, _ = mano_loader.load_model_file(os.path.join(STANDIN_DIR, 'STANDIN_RIGHT.npz'))
    # the fixture pickles freshly generated arrays (right_arrays): the round trip must give them back exactly
    for key in mano_loader.REQUIRED_KEYS:
        assert from_pkl[key].shape == from_npz[key].shape, key
        np.testing.assert_array_equal(
            np.asarray(from_pkl[key], np.float64), np.asarray(right_arrays[key], np.float64), err_msg=key
        )
    assert isinstance(from_pkl['J_regressor'], np.ndarray)  # densified


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / 'pwned'
    payload = pickle.dumps({'v_template': _Evil(f'touch {marker}')}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r'refusing to load global (posix|os|nt)\.system'):
        mano_loader.load_mano_pickle_bytes(payload)
    assert not marker.exists()
    path = tmp_path / 'MANO_RIGHT.pkl'
    path.write_bytes(pickle.dumps(eval, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match='builtins.eval|__builtin__.eval'):
        mano_loader.load_model_file(path)


def test_missing_key_error_names_the_key(tmp_path, right_arrays):
    d = standin.pickle_dict(right_arrays)
    del d['weights']
    path = tmp_path / 'MANO_RIGHT.pkl'
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(mano_loader.ModelFileError, match="missing key 'weights'"):
        mano_loader.load_model_file(path)


def test_wrong_shape_error_names_key_and_shape(tmp_path, right_arrays):
    d = standin.pickle_dict(right_arrays)
    d['posedirs'] = d['posedirs'][:, :, :100]
    path = tmp_path / 'MANO_RIGHT.pkl'
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(mano_loader.ModelFileError, match=r"'posedirs' has shape \(778, 3, 100\)"):
        mano_loader.load_model_file(path)
    path.write_bytes(b'\x80\x02}q\x00(X')  # truncated
    with pytest.raises(mano_loader.ModelFileError, match='not a readable MANO pickle'):
        mano_loader.load_model_file(path)


def test_standin_pickle_loads_in_smplx_and_in_our_loader(tmp_path, right_arrays):
    import smplx

    path = standin.make_standin_pickle(tmp_path / 'STANDIN_RIGHT.pkl', model=right_arrays)
    with contextlib.redirect_stdout(io.StringIO()):
        direct = smplx.MANO(str(path), use_pca=False, flat_hand_mean=False)
    ours = model_mod.build_smplx_mano(mano_loader.load_model_file(path)[0], 'right')
    orient, pose, betas, transl = _pose_batch(0)
    with torch.no_grad():
        a = direct(global_orient=orient, hand_pose=pose, betas=betas, transl=transl).vertices
        b = ours(global_orient=orient, hand_pose=pose, betas=betas, transl=transl).vertices
    torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


# ---------------------------------------------------------------------------------------------
# cache and resolution
# ---------------------------------------------------------------------------------------------
def test_user_cache_conversion(chumpy_dir, tmp_path):
    first, digest = mano_loader.load_model_file(chumpy_dir / 'MANO_RIGHT.pkl', use_cache=True)
    cached = list((tmp_path / 'cache').glob('MANO_RIGHT.pkl.*.npz'))
    assert len(cached) == 1 and digest[:20] in cached[0].name
    with np.load(cached[0], allow_pickle=False) as z:
        assert z['shapedirs'].shape == (778, 3, 10)
    second, digest2 = mano_loader.load_model_file(chumpy_dir / 'MANO_RIGHT.pkl', use_cache=True)
    assert digest2 == digest
    for key in mano_loader.REQUIRED_KEYS:
        np.testing.assert_array_equal(first[key], second[key])


def test_cache_inside_the_repository_is_refused(monkeypatch):
    monkeypatch.setenv(mano_loader.ENV_CACHE_DIR, os.path.join(REPO, 'models', 'cache'))
    with pytest.raises(mano_loader.ModelFileError, match='inside the repository'):
        mano_loader.cache_dir()


def test_resolution_order(chumpy_dir, tmp_path, monkeypatch):
    paths, is_standin, _ = mano_loader.resolve_model_files()
    assert is_standin and os.path.basename(paths['right']) == 'STANDIN_RIGHT.npz'
    monkeypatch.setenv(mano_loader.ENV_MANO_DIR, str(chumpy_dir))
    paths, is_standin, source = mano_loader.resolve_model_files()
    assert not is_standin and paths['left'] == str(chumpy_dir / 'MANO_LEFT.pkl') and 'HAND_RECON' in source
    only_right = tmp_path / 'only_right'
    only_right.mkdir()
    (only_right / 'MANO_RIGHT.pkl').write_bytes((chumpy_dir / 'MANO_RIGHT.pkl').read_bytes())
    with pytest.raises(mano_loader.ModelFileError, match='MANO_LEFT.pkl'):
        mano_loader.resolve_model_files(only_right)  # the argument beats the env var
    with pytest.raises(mano_loader.ModelFileError, match='does not exist'):
        mano_loader.resolve_model_files(tmp_path / 'nope')


def test_installed_share_dir_is_searched(monkeypatch, tmp_path):
    share = os.path.join(str(tmp_path), 'share', 'hand_recon_ros', 'models', 'standin')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    assert share in mano_loader.standin_dirs()
    assert (
        os.path.join(mano_loader.sys.prefix, 'share', 'hand_recon_ros', 'models', 'standin')
        in mano_loader.standin_dirs()
    )


def test_left_shapedirs_fix_is_guarded_and_idempotent(right_arrays):
    left = standin.mirror_model(right_arrays)
    buggy = dict(left, shapedirs=right_arrays['shapedirs'].copy())  # MANO_LEFT's bug: right's dirs
    fixed, applied = mano_loader.fix_left_shapedirs(buggy, right_arrays)
    assert applied
    np.testing.assert_array_equal(fixed['shapedirs'], left['shapedirs'])
    again, applied_again = mano_loader.fix_left_shapedirs(fixed, right_arrays)
    assert not applied_again and again['shapedirs'] is fixed['shapedirs']
    untouched, applied_standin = mano_loader.fix_left_shapedirs(left, right_arrays)
    assert not applied_standin and untouched is left


# ---------------------------------------------------------------------------------------------
# HandModel
# ---------------------------------------------------------------------------------------------
def test_user_mano_files_give_the_same_vertices_as_the_standin(chumpy_dir):
    standin_model = load_hand_model()
    mano_model = load_hand_model(chumpy_dir)
    assert standin_model.is_standin and standin_model.identity.startswith('standin-v1 sha256:')
    assert not mano_model.is_standin and mano_model.identity.startswith('MANO user files sha256:')
    for side in ('right', 'left'):
        args = _pose_batch(1)
        with torch.no_grad():
            a, b = standin_model(side, *args), mano_model(side, *args)
        for key in ('vertices', 'joints', 'joints16'):
            assert torch.equal(a[key], b[key]), (side, key)


def test_forward_shapes_tips_and_batching():
    model = load_hand_model()
    orient, pose, betas, transl = _pose_batch(2, batch=4)
    with torch.no_grad():
        out = model('right', orient, pose, betas, transl)
        single = model('right', orient[2:3], pose[2:3], betas[2:3], transl[2:3])
        shared_betas = model('right', orient, pose, betas[:1])
        one_each = model('right', orient[1:2], pose[1:2], betas[:1])
    assert out['vertices'].shape == (4, 778, 3) and out['joints'].shape == (4, 21, 3)
    assert out['joints16'].shape == (4, 16, 3) and out['vertices'].dtype == torch.float32
    torch.testing.assert_close(out['vertices'][2:3], single['vertices'], atol=1e-6, rtol=0)
    torch.testing.assert_close(shared_betas['vertices'][1:2], one_each['vertices'], atol=1e-6, rtol=0)
    v, j, j16 = out['vertices'][0], out['joints'][0], out['joints16'][0]
    tips = conventions.MANO_TIP_VERTICES_RIGHT
    for joint21, vid in zip((4, 8, 12, 16, 20), tips):
        assert torch.equal(j[joint21], v[vid])
    for joint21, mano in ((0, 0), (1, 13), (5, 1), (9, 4), (13, 10), (17, 7)):
        assert torch.equal(j[joint21], j16[mano])
    with torch.no_grad():
        left = model('left', orient, pose, betas)
    assert torch.equal(left['joints'][0, 12], left['vertices'][0, conventions.MANO_TIP_VERTICES_LEFT[2]])


def test_forward_gradients_and_input_errors():
    model = load_hand_model()
    orient, pose, betas, transl = _pose_batch(3, batch=2)
    pose.requires_grad_(True)
    out = model('left', orient, pose, betas, transl)
    out['joints'].square().sum().backward()
    assert pose.grad is not None and torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="side must be 'left' or 'right'"):
        model('both', orient, pose, betas)
    with pytest.raises(ValueError, match=r'hand_pose must have shape \(B, 45\)'):
        model('right', orient, pose[:, :44], betas)
    with pytest.raises(ValueError, match='betas has batch 3'):
        model('right', orient, pose, torch.zeros(3, 10))


def test_flat_hand_mean_flag():
    curled, flat = load_hand_model(flat_hand_mean=False), load_hand_model(flat_hand_mean=True)
    zero = (torch.zeros(1, 3), torch.zeros(1, 45), torch.zeros(1, 10))
    mean = torch.tensor(curled.model_array('right', 'hands_mean'), dtype=torch.float32)[None]
    with torch.no_grad():
        a = curled('right', *zero)['vertices']
        b = flat('right', *zero)['vertices']
        c = flat('right', zero[0], mean, zero[2])['vertices']
    assert (a - b).norm(dim=-1).max() > 0.005  # the mean pose is visibly curled
    torch.testing.assert_close(a, c, atol=1e-6, rtol=0)


def test_faces_and_watertight_variant():
    model = load_hand_model()
    for side in ('right', 'left'):
        f = model.faces(side)
        assert f.dtype == np.int64 and f.shape == (1538, 3)
        wt = model.watertight_faces(side)
        assert wt.shape == (1554, 3) and wt.max() == 778
        with torch.no_grad():
            v = model(side, *[t[:1] for t in _pose_batch(4)])['vertices'][0]
        vt = model.watertight_vertices(side, v)
        assert vt.shape == (779, 3)
        np.testing.assert_allclose(model.watertight_vertices(side, v.numpy()), vt.numpy(), atol=1e-7)
        from hand_recon_ros.hand_model import mesh_utils

        report = mesh_utils.mesh_report(vt.numpy(), wt)
        assert report['boundary_edges'] == 0 and report['euler'] == 2 and report['inconsistent_edges'] == 0
        assert report['signed_volume'] > 1e-4  # outward normals on both sides
    np.testing.assert_array_equal(model.faces('left'), model.faces('right')[:, [0, 2, 1]])
    np.testing.assert_allclose(model.rest_joints('right')[0], standin.ROOT_OFFSET, atol=1e-6)


def test_standin_warning_is_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(model_mod, '_standin_warned', False)
    with caplog.at_level(logging.WARNING, logger='hand_recon_ros.hand_model'):
        load_hand_model()
        load_hand_model()
    msgs = [r.getMessage() for r in caplog.records if r.name == 'hand_recon_ros.hand_model']
    assert msgs == [model_mod.STANDIN_WARNING]
    assert 'NOT MANO' in msgs[0]


def test_handmodel_needs_both_sides(right_arrays):
    with pytest.raises(ValueError, match='need models for'):
        HandModel({'right': right_arrays}, True, 'x')
