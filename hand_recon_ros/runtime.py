"""Process-level helpers shared by the pipeline, the trainers and the tools: device choice, numeric precision,
intra-op threads, file hashes. No ROS here, and nothing about the network itself."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = [
    'PRECISIONS',
    'autocast_dtype',
    'cpu_has_native_bf16',
    'resolve_device',
    'resolve_num_threads',
    'resolve_precision',
    'sha256_of',
    'single_intra_op_thread',
]

PRECISIONS: dict[str, torch.dtype | None] = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
# torch's own intra-op thread count (physical cores, or OMP_NUM_THREADS), read before anything changes it
DEFAULT_TORCH_THREADS = torch.get_num_threads()


def resolve_num_threads(requested: int, leave_free: int = 1) -> int:
    """The torch thread count of a process that does more than run the network: ``requested`` when > 0, else
    torch's default less ``leave_free`` cores (at least 1). In the node the other core serves DDS, the image
    conversion and the publishers, and the camera driver beside it: on 2 cores one network thread answered 21-25
    instead of 18-20 FPS of a 30 Hz stream (bench_e2e.py, README "Benchmarks"), because every fork/join of the
    second thread waits whenever the ROS side holds a core."""
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 0:
        raise ValueError(f'num_threads must be an int >= 0, got {requested!r}')
    if requested > 0:
        return requested
    return max(1, DEFAULT_TORCH_THREADS - max(0, int(leave_free)))


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit 'cuda' without CUDA is an error, never a silent CPU run."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device '{name}' requested but CUDA is not available "
                f'(torch {torch.__version__}); use device:=cpu or device:=auto'
            )
        return torch.device(name)
    if name == 'cpu':
        return torch.device('cpu')
    raise ValueError(f'device must be auto, cpu, cuda or cuda:N, got {name!r}')


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on a CPU that computes it natively (the network 1.3-1.8x faster, the same answers within the
    tolerances of test_pipeline.py), else fp32 (fp16 on CUDA is not the automatic choice: never measured on a GPU
    here). Any other name is checked and returned."""
    if precision == 'auto':
        return 'bf16' if device.type == 'cpu' and cpu_has_native_bf16() else 'fp32'
    autocast_dtype(precision, device)
    return precision


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision name (None: plain fp32); fp16 on the CPU is refused."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be fp32, fp16 or bf16, got {precision!r}')
    if precision == 'fp16' and device.type == 'cpu':
        raise ValueError('precision fp16 needs CUDA; on the CPU use bf16 or fp32')
    return PRECISIONS[precision]


def cpu_has_native_bf16() -> bool:
    """True when oneDNN has bf16 instructions on this CPU (AVX512-BF16 / AMX); emulated bf16 is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def single_intra_op_thread() -> Iterator[None]:
    """Run the post-network torch work (decoding, smplx on a few hands) on one intra-op thread.

    Those tensors are tiny, so a second thread only adds fork/join barriers; on a loaded CPU each barrier
    waits for a descheduled thread (measured: decode + MANO 3 ms with one thread, 80 ms with two while
    another process kept both cores busy). Per-element results do not depend on the thread count.
    The count is restored afterwards so the network keeps its threads (it is process-wide: torch work of
    another thread during this scope also runs on one thread).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
