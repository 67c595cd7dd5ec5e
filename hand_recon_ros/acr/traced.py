"""The ACR network as frozen TorchScript graphs, one traced per input shape, with eager PyTorch as the fallback.

Why: the node runs the network of frame n+1 on one thread while a second thread makes the hands of frame n
(MANO, refinement, publishing). Eager PyTorch needs Python's GIL between its several hundred operator calls, and
the finisher's Python work holds it, so in one process the network took 48 instead of 30 ms per frame while the
refinement ran beside it (light@192, bf16, one torch thread; ``benchmarks/bench_overlap.py``). A traced graph runs
its operators in C++ with the GIL released, and freezing folds the weights and batch norms into the convolutions,
which also makes the network alone faster (34 -> 28 ms per photo, same benchmark).

A trace records one input shape and the ops that ran (the network has no data-dependent Python branches: its
``if`` statements look at shapes only), so each (batch, channels, height, width, dtype, device) gets its own graph.
Every new graph is traced on one seeded random input and checked against the eager network on another (a value
the trace had baked in shows there); a graph that does not trace or does not match is never used, and the runner
stays on eager PyTorch (``fallback_reason`` says why). ``torch.jit`` is deprecated upstream but present in the
pinned torch; its deprecation warnings are silenced here and in the hand-model fit's kinematics (hand_model/fit.py).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

__all__ = ['OutputsAsTuple', 'TracedNetwork', 'check_graph_outputs']

# max |graph - eager| allowed per output, as a share of (max |eager| + 1): float32 only reorders sums (folded batch
# norms), a 16-bit autocast rounds differently where the graph fused an op
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 2e-2}


class OutputsAsTuple(nn.Module):
    """A network's dict of outputs as a tuple in a fixed key order (tracers and exporters want tensors)."""

    def __init__(self, network: nn.Module, keys: tuple[str, ...]):
        super().__init__()
        self.network = network
        self.keys = keys

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.network(images)
        return tuple(out[k] for k in self.keys)


def check_graph_outputs(
    graph_out: dict[str, torch.Tensor], eager_out: dict[str, torch.Tensor], tolerance: float
) -> str | None:
    """None when every eager output is there with its shape and within tolerance; else what differs."""
    for key, ref in eager_out.items():
        got = graph_out.get(key)
        if got is None or got.shape != ref.shape:
            return f'output {key!r}: shape {None if got is None else tuple(got.shape)} != {tuple(ref.shape)}'
        ref32, got32 = ref.float(), got.float()
        if not torch.isfinite(got32).all() and torch.isfinite(ref32).all():
            return f'output {key!r}: not finite'
        diff = float((got32 - ref32).abs().max()) if ref.numel() else 0.0
        allowed = tolerance * (float(ref32.abs().max()) + 1.0) if ref.numel() else 0.0
        if diff > allowed:
            return f'output {key!r}: differs from eager by {diff:.3g} (allowed {allowed:.3g})'
    return None


class TracedNetwork:
    """Callable like the network (images -> dict of maps) under the given autocast dtype (None = float32).

    ``enabled=False`` or a failed trace runs the eager network under autocast, exactly as before."""

    def __init__(
        self,
        network: nn.Module,
        autocast_dtype: torch.dtype | None = None,
        enabled: bool = True,
        max_graphs: int = 4,
        seed: int = 0,
    ):
        if max_graphs < 1:
            raise ValueError(f'max_graphs must be >= 1, got {max_graphs}')
        self.network = network
        self.autocast_dtype = autocast_dtype
        self.enabled = bool(enabled)
        self.max_graphs = int(max_graphs)
        self.seed = int(seed)
        self.fallback_reason = ''  # why the runner went back to eager PyTorch ('' = it did not)
        self.graphs_traced = 0
        self._graphs: OrderedDict[tuple[Any, ...], tuple[torch.jit.ScriptModule, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def cached_shapes(self) -> list[tuple[Any, ...]]:
        """The input keys (shape, dtype, device, channels_last) with a graph, oldest first."""
        with self._lock:
            return list(self._graphs)

    @property
    def mode(self) -> str:
        """'traced' while graphs are used, 'eager' when disabled or after a fallback."""
        return 'traced' if self.enabled and not self.fallback_reason else 'eager'

    def eager(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.autocast_dtype is None:
            return dict(self.network(images))
        with torch.autocast(images.device.type, dtype=self.autocast_dtype):
            return dict(self.network(images))

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mode == 'eager':
            return self.eager(images)
        key = (*images.shape, images.dtype, images.device, images.is_contiguous(memory_format=torch.channels_last))
        with self._lock:
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._trace(images)
                if entry is None:  # fell back: fallback_reason is set
                    return self.eager(images)
                self._graphs[key] = entry
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            else:
                self._graphs.move_to_end(key)
        graph, keys = entry
        return dict(zip(keys, graph(images)))

    def prepare(self, images: torch.Tensor) -> str:
        """Trace (and check) the graph for this input's shape now, e.g. at start-up; -> the mode afterwards."""
        with torch.inference_mode():
            self(images)
        return self.mode

    def _trace(self, like: torch.Tensor) -> tuple[torch.jit.ScriptModule, tuple[str, ...]] | None:
        # seeded random inputs of the same layout: one to trace, another to check (a value baked into the graph
        # from the first input shows up as a difference on the second)
        generator = torch.Generator().manual_seed(self.seed)
        channels_last = like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last)
        try:
            with torch.inference_mode(False), torch.no_grad():
                example, check = (
                    torch.randn(like.shape, generator=generator).to(like.device, like.dtype) for _ in range(2)
                )
                if channels_last:
                    example = example.contiguous(memory_format=torch.channels_last)
                    check = check.contiguous(memory_format=torch.channels_last)
                eager_out = self.eager(check)
                keys = tuple(sorted(eager_out))
                wrapper = OutputsAsTuple(self.network, keys).eval()
                with warnings.catch_warnings():
                    # deprecation notices of torch.jit, and tracer notes about the shape checks it records
                    warnings.simplefilter('ignore')
                    autocast = (
                        torch.autocast(like.device.type, dtype=self.autocast_dtype, cache_enabled=False)
                        if self.autocast_dtype is not None
                        else torch.autocast(like.device.type, enabled=False)
                    )
                    with autocast:
                        graph = torch.jit.freeze(torch.jit.trace(wrapper, example, check_trace=False))
                    graph_out = dict(zip(keys, graph(check)))
        except Exception as exc:  # any tracer or freezer failure: eager PyTorch still works
            self.fallback_reason = f'tracing failed: {type(exc).__name__}: {exc}'
            return None
        tolerance = TOLERANCE.get(self.autocast_dtype or torch.float32, 5e-2)
        mismatch = check_graph_outputs(graph_out, eager_out, tolerance)
        if mismatch is not None:
            self.fallback_reason = f'traced graph does not match eager PyTorch: {mismatch}'
            return None
        self.graphs_traced += 1
        return graph, keys
