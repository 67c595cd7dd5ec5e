"""ONNX export of the ACR map outputs and an onnxruntime runner that decodes like the torch model.

Only the maps are exported (decoding is data-dependent Python: NMS top-K, per-hand sampling).
``export_onnx`` tries the dynamo exporter (opset 18) first and falls back to the TorchScript exporter.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .decoding import DecodeConfig, Detections, decode
from .network import ACRNet

__all__ = ['OUTPUT_NAMES', 'ExportResult', 'OnnxACR', 'export_onnx']

INPUT_NAME = 'images'
OUTPUT_NAMES = ('center_maps', 'segmentation', 'params', 'prior', 'image_feature')


class _MapsOnly(nn.Module):
    """Tuple outputs in a fixed order (exporters want tensors, not a dict)."""

    def __init__(self, model: ACRNet):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images)
        return tuple(out[name] for name in OUTPUT_NAMES)


@dataclass
class ExportResult:
    path: Path
    exporter: str  # 'dynamo' or 'torchscript'
    opset: int
    fallback_reason: str | None = None  # why dynamo was not used
    warnings: list[str] = field(default_factory=list)


def export_onnx(
    model: ACRNet, path: str | Path, input_size: int | None = None, opset: int = 18, prefer_dynamo: bool = True
) -> ExportResult:
    """Export ``model`` (eval mode, batch 1, static size) to ONNX; returns which exporter worked."""
    if not isinstance(model, ACRNet):
        raise TypeError(f'model must be an ACRNet, got {type(model).__name__}')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = input_size or model.config.input_size
    was_training = model.training
    model.eval()
    wrapper = _MapsOnly(model).eval()
    example = (torch.zeros(1, 3, size, size),)
    fallback_reason = None
    caught: list[warnings.WarningMessage] = []
    try:
        # exporter warnings are informational here; keep them in the result instead of the caller's filters
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            if prefer_dynamo:
                try:
                    program = torch.onnx.export(
                        wrapper,
                        example,
                        dynamo=True,
                        opset_version=opset,
                        input_names=[INPUT_NAME],
                        output_names=list(OUTPUT_NAMES),
                        verbose=False,
                    )
                    assert program is not None  # dynamo=True returns the program
                    program.save(str(path))
                    exporter = 'dynamo'
                except Exception as exc:  # noqa: BLE001 - any exporter failure means: try the other one
                    fallback_reason = f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'
                    exporter = None
            else:
                exporter = None
            if exporter is None:
                torch.onnx.export(
                    wrapper,
                    example,
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=list(OUTPUT_NAMES),
                )
                exporter = 'torchscript'
    finally:
        model.train(was_training)
    return ExportResult(
        path=path,
        exporter=exporter,
        opset=opset,
        fallback_reason=fallback_reason,
        warnings=[f'{w.category.__name__}: {w.message}' for w in caught],
    )


class OnnxACR:
    """onnxruntime session over an exported ACR; returns the same dict keys as ``ACRNet.forward``."""

    def __init__(self, path: str | Path, num_threads: int | None = None, decode_config: DecodeConfig | None = None):
        import onnxruntime as ort  # imported here: only the ONNX path needs it

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'no ONNX model at {path}')
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        # no busy-waiting between runs: spinning pool threads steal the cores from pre/post-processing
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        try:
            self.session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
        except Exception as exc:  # noqa: BLE001 - surface any ORT load error as a clear ValueError
            raise ValueError(f'{path}: onnxruntime cannot load it ({exc})') from None
        names = [o.name for o in self.session.get_outputs()]
        if tuple(names) != OUTPUT_NAMES:
            raise ValueError(f'{path}: outputs {names} are not the ACR outputs {list(OUTPUT_NAMES)}')
        shape = self.session.get_inputs()[0].shape
        self.input_size = int(shape[-1]) if isinstance(shape[-1], int) else None
        self.decode_config = decode_config or DecodeConfig()

    def __call__(self, images: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim != 4 or array.shape[1] != 3:
            raise ValueError(f'images must be (B, 3, S, S), got {array.shape}')
        if self.input_size is not None and array.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f'this model was exported for {self.input_size}x{self.input_size}, '
                f'got {array.shape[-2]}x{array.shape[-1]}'
            )
        results = self.session.run(None, {INPUT_NAME: array})
        return {name: torch.from_numpy(r) for name, r in zip(OUTPUT_NAMES, results)}

    def forward_inference(self, images: torch.Tensor | np.ndarray) -> tuple[dict[str, torch.Tensor], Detections]:
        outputs = self(images)
        return outputs, decode(outputs, self.decode_config)
