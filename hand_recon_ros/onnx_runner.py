"""A network's forward pass under onnxruntime: exported once per (weights, input shape), cached on disk.

Why: on CPUs without native bf16 (fp32 inference) the MediaPipe landmark network of the crop stage took 33 ms per
crop in eager PyTorch and 26 ms traced, one thread, and 11 ms under onnxruntime with the same answers (largest
difference 6e-5; 2-core AVX2 EPYC; in the pipeline: ``benchmarks/bench_video.py --runtimes torch onnxruntime``): its
depthwise convolutions and layout changes are where PyTorch's CPU kernels are slow. The palm detector is not faster
there (23 vs 21 ms), so it stays in PyTorch.

The export (torch's dynamo exporter, batch 1, static shape) takes 3-8 s, so the ONNX bytes are kept in the user
cache (``$HAND_RECON_CACHE/onnx`` or ``~/.cache/hand_recon_ros/onnx``) under a key made of the weights, the input
shape and the torch / onnxruntime versions: a node pays for it once per machine. Every session is checked against
the eager module on a seeded random input before use (a cached file that does not load or does not match is
exported again); a runner that cannot be built raises ``OnnxRunnerError`` with the reason, and the caller keeps
PyTorch. A batch runs item by item (onnxruntime's CPU time grows linearly with the batch here anyway).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from hand_recon_ros.acr.traced import OutputsAsTuple

__all__ = [
    'RUNTIMES',
    'OnnxRunner',
    'OnnxRunnerError',
    'check_runtime',
    'onnx_cache_dir',
    'onnxruntime_available',
    'resolve_runtime',
]

RUNTIMES = ('auto', 'torch', 'onnxruntime')
FORMAT = 'onnx-runner-1'  # part of the cache key: bump when the export recipe changes
OPSET = 18
# max |onnxruntime - eager| per output, as a share of (max |eager| + 1): both float32, only sums reordered
TOLERANCE = 1e-3


class OnnxRunnerError(RuntimeError):
    """The module cannot run under onnxruntime here (missing package, export failure, mismatch); says why."""


def check_runtime(value: str) -> str:
    if value not in RUNTIMES:
        raise ValueError(f'runtime must be one of {", ".join(RUNTIMES)}, got {value!r}')
    return value


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: str, device: torch.device, autocast_dtype: torch.dtype | None) -> str:
    """'auto' -> 'onnxruntime' where the network would run float32 on the CPU and onnxruntime is installed, else
    'torch' (a GPU, or a CPU's native bf16, is PyTorch's ground). An explicit choice is kept."""
    check_runtime(runtime)
    if runtime != 'auto':
        return runtime
    if device.type == 'cpu' and autocast_dtype is None and onnxruntime_available():
        return 'onnxruntime'
    return 'torch'


def onnx_cache_dir() -> Path | None:
    """Where exported graphs are kept (None: no usable cache directory; the runner then exports every time)."""
    from hand_recon_ros.hand_model.mano_loader import ModelFileError, cache_dir

    try:
        return Path(cache_dir()) / 'onnx'
    except ModelFileError:
        return None


def _module_key(module: nn.Module, input_shape: tuple[int, ...]) -> str:
    import onnxruntime

    digest = hashlib.sha256()
    for part in (FORMAT, type(module).__qualname__, str(input_shape), torch.__version__, onnxruntime.__version__):
        digest.update(part.encode() + b'\0')
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{data.dtype}:{tuple(data.shape)}'.encode() + b'\0')
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b'')
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as fh:
            fh.write(data)
        os.replace(tmp, path)  # another process exporting the same key writes the same bytes
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class OnnxRunner:
    """Callable like ``module`` on a batch of inputs of ``input_shape`` (one item's shape): -> the module's dict of
    float32 tensors, computed by onnxruntime on the CPU with ``num_threads`` threads.

    ``source``: 'cache' or 'export', where this runner's graph came from; ``cache_note``: why nothing was cached
    ('' when it was)."""

    def __init__(
        self,
        module: nn.Module,
        input_shape: tuple[int, ...],
        num_threads: int = 1,
        cache: Path | None | bool = True,
        seed: int = 0,
    ):
        if not onnxruntime_available():
            raise OnnxRunnerError('onnxruntime is not installed')
        import onnxruntime

        self.module = module.eval()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_threads = max(1, int(num_threads))
        generator = torch.Generator().manual_seed(int(seed))
        self._check_input = torch.rand((1, *self.input_shape), generator=generator)
        with torch.inference_mode():
            reference = self.module(self._check_input)
        self.keys = tuple(sorted(reference))
        self._reference = {k: reference[k].detach().float().cpu() for k in self.keys}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: spinning pool threads would take the cores from the rest of the frame
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self._options = options
        self.cache_note = ''
        directory = onnx_cache_dir() if cache is True else (Path(cache) if cache else None)
        self.path = directory / f'{_module_key(module, self.input_shape)}.onnx' if directory is not None else None
        if self.path is None:
            self.cache_note = 'no cache directory'
        self.session = None
        if self.path is not None and self.path.is_file():
            try:
                self.session = self._session(self.path.read_bytes())
                self.source = 'cache'
            except (OSError, OnnxRunnerError):
                self.session = None  # unreadable or stale: export again below
        if self.session is None:
            data = self._export()
            self.session = self._session(data)
            self.source = 'export'
            if self.path is not None:
                try:
                    _write_atomically(self.path, data)
                except OSError as exc:
                    self.cache_note = f'not cached: {exc}'

    def _export(self) -> bytes:
        wrapper = OutputsAsTuple(self.module, self.keys).eval()
        example = torch.zeros((1, *self.input_shape))
        try:
            # the exporter reports its progress on stdout and warns about what it does not need: both noise here
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet('torch.onnx'):
                warnings.simplefilter('ignore')
                program = torch.onnx.export(
                    wrapper,
                    (example,),
                    dynamo=True,
                    opset_version=OPSET,
                    input_names=['input'],
                    output_names=list(self.keys),
                    verbose=False,
                )
            assert program is not None  # dynamo=True returns the program
            return program.model_proto.SerializeToString()
        except Exception as exc:  # noqa: BLE001 - any exporter failure means: stay on PyTorch
            first = re.sub(r'\x1b\[[0-9;]*m', '', str(exc).splitlines()[0] if str(exc) else '')  # no terminal colours
            raise OnnxRunnerError(f'export failed: {type(exc).__name__}: {first}') from None

    def _session(self, data: bytes):
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(data, self._options, providers=['CPUExecutionProvider'])
        except Exception as exc:  # noqa: BLE001 - a graph onnxruntime cannot load
            raise OnnxRunnerError(f'onnxruntime cannot load the graph: {exc}') from None
        names = tuple(o.name for o in session.get_outputs())
        if names != self.keys:
            raise OnnxRunnerError(f'graph outputs {names} are not the module outputs {self.keys}')
        got = session.run(None, {'input': self._check_input.numpy()})
        for key, value in zip(self.keys, got):
            ref = self._reference[key]
            value = torch.from_numpy(value)
            if value.shape != ref.shape:
                raise OnnxRunnerError(f'output {key!r}: shape {tuple(value.shape)} != {tuple(ref.shape)}')
            diff = float((value.float() - ref).abs().max()) if ref.numel() else 0.0
            allowed = TOLERANCE * (float(ref.abs().max()) + 1.0) if ref.numel() else 0.0
            if not diff <= allowed:
                raise OnnxRunnerError(f'output {key!r} differs from PyTorch by {diff:.3g} (allowed {allowed:.3g})')
        return session

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(
                f'inputs must have shape (B, {", ".join(map(str, self.input_shape))}), got ' f'{tuple(batch.shape)}'
            )
        array = batch.detach().float().cpu().contiguous().numpy()
        outputs: dict[str, list[torch.Tensor]] = {k: [] for k in self.keys}
        for item in range(len(array)):
            got = self.session.run(None, {'input': array[item : item + 1]})
            for key, value in zip(self.keys, got):
                outputs[key].append(torch.from_numpy(value))
        if not len(array):
            with torch.inference_mode():  # the module knows its empty outputs' shapes
                return {k: v.float() for k, v in self.module(batch.float().cpu()).items()}
        return {k: torch.cat(v) for k, v in outputs.items()}
