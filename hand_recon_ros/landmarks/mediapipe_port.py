"""MediaPipe's hand landmark network (``hand_landmark_full.tflite``, mediapipe 0.10.21) as a plain PyTorch module.

The network is rebuilt from two files written by ``tools/mediapipe_landmarks/convert.py``: a JSON description of the
TFLite graph (ordered ops, tensor ids, shapes, options) and a safetensors file holding its constant tensors. Every
TFLite op becomes one torch operation. TFLite works in NHWC; here every rank-4 activation is kept NCHW (faster
convolutions on CPU), constants are permuted once at load, and ops that depend on the memory order (reshape,
fully connected on a rank-4 input, reductions) go back to NHWC first, so the results equal TFLite's.

Outputs of the network (224x224 RGB crop, float in [0, 1]):

* ``landmarks`` (B, 21, 3): x, y in input pixels (0..224), z in the same pixel scale relative to the wrist.
* ``presence`` (B,): probability that a hand is in the crop (the graph ends this head with a LOGISTIC op).
* ``handedness`` (B,): probability that MediaPipe labels the hand "Right". The graph's raw handedness output
  (``Identity_2``, after a LOGISTIC op) is the probability of label index 0 of ``handedness.txt`` =
  ["Left", "Right"], i.e. of "Left": ``TensorsToClassificationCalculator`` with ``binary_classification`` gives
  the raw score to index 0, and ``tools/mediapipe_landmarks/parity.py`` confirms it on real photos (raw ~ 1 - the
  P("Right") that ``mediapipe.solutions.hands`` reports for the same photo). So ``handedness = 1 - raw``.
  MediaPipe's documentation says its labels assume a mirrored (selfie) image: in an unmirrored camera image,
  "Right" (handedness > 0.5) is then the person's LEFT hand, and the raw output the person's right hand (the
  palm-facing crops of the parity photos agree, if those photos are unmirrored, which the data does not state).
* ``world_landmarks`` (B, 21, 3): metric 3D landmarks (metres) around the hand's approximate centre.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

DEFAULT_NAME = 'mp_hand_landmark_full'
INPUT_SIZE = 224
NUM_LANDMARKS = 21
GRAPH_FORMAT = 'hand_recon_ros.tflite_graph/1'
HANDEDNESS_MEANING = (
    'probability that MediaPipe labels the hand "Right" (= 1 - the raw graph output); MediaPipe assumes a mirrored '
    "(selfie) image, so in an unmirrored camera image a value > 0.5 means the person's left hand"
)

# NHWC axis -> NCHW axis, for rank-4 tensors
_TO_NCHW_AXIS = (0, 2, 3, 1)


def model_dirs() -> list[Path]:
    """Where the shipped files live: the source tree's ``models/``, then the installed share folder."""
    return [Path(__file__).resolve().parents[2] / 'models', Path(sys.prefix) / 'share' / 'hand_recon_ros' / 'models']


def default_prefix() -> Path:
    """``models/mp_hand_landmark_full`` in the first of :func:`model_dirs` that holds the weights."""
    for folder in model_dirs():
        if (folder / f'{DEFAULT_NAME}.safetensors').is_file():
            return folder / DEFAULT_NAME
    raise FileNotFoundError(f'{DEFAULT_NAME}.safetensors not found in any of {[str(d) for d in model_dirs()]}')


def _activation(x: Tensor, name: str) -> Tensor:
    if name == 'NONE':
        return x
    if name == 'RELU':
        return F.relu(x)
    if name == 'RELU6':
        return F.hardtanh(x, 0.0, 6.0)
    if name == 'RELU_N1_TO_1':
        return F.hardtanh(x, -1.0, 1.0)
    if name == 'TANH':
        return torch.tanh(x)
    raise NotImplementedError(f'fused activation {name}')


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF 'SAME' padding along one axis: (before, after); TF puts the odd pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _to_nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def _to_nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


class MediaPipeLandmarkNet(nn.Module):
    """The TFLite graph executed op by op in torch; see the module docstring for inputs and outputs."""

    def __init__(self, graph: dict[str, Any], weights: dict[str, Tensor]) -> None:
        super().__init__()
        if graph.get('format') != GRAPH_FORMAT:
            raise ValueError(f'unsupported graph format {graph.get("format")!r}; expected {GRAPH_FORMAT!r}')
        self.tensors: list[dict[str, Any]] = graph['tensors']
        self.input_id: int = int(graph['inputs'][0])
        self.roles: dict[str, int] = {role: int(v['tensor']) for role, v in graph['output_roles'].items()}
        missing_roles = {'landmarks', 'presence', 'handedness', 'world_landmarks'} - set(self.roles)
        if missing_roles:
            raise ValueError(f'graph lacks outputs {sorted(missing_roles)}')
        for role in ('presence', 'handedness'):
            if graph['output_roles'][role]['after_dense'] != ['LOGISTIC']:
                raise ValueError(f'{role} output is not a LOGISTIC probability in this graph')
        # constant tensor id -> safetensors key; DEQUANTIZE outputs alias their (already float) inputs
        self.const_key: dict[int, str] = {t['id']: t['constant'] for t in self.tensors if 'constant' in t}
        self.used_keys: set[str] = set()
        self.steps: list[dict[str, Any]] = []
        for op in graph['ops']:
            if op['type'] == 'DEQUANTIZE':
                src, dst = op['inputs'][0], op['outputs'][0]
                if src not in self.const_key:
                    raise NotImplementedError('DEQUANTIZE of a non-constant tensor')
                self.const_key[dst] = self.const_key[src]
                continue
            self.steps.append(self._prepare(op, weights))
        # after each step, the activations no later step (nor the output) reads: freed during forward
        keep = set(self.roles.values())
        last_use: dict[int, int] = {}
        for index, step in enumerate(self.steps):
            for tid in step['inputs']:
                if tid >= 0 and tid not in self.const_key:
                    last_use[tid] = index
        for index, step in enumerate(self.steps):
            step['free'] = [t for t, last in last_use.items() if last == index and t not in keep]
        missing = sorted(set(weights) - self.used_keys)
        if missing:
            raise ValueError(f'weights not used by the graph: {missing}')

    # ----------------------------------------------------------------------------------------------- loading
    def _const(self, tid: int, weights: dict[str, Tensor]) -> Tensor:
        key = self.const_key.get(tid)
        if key is None:
            raise ValueError(f'tensor {tid} is expected to be constant')
        if key not in weights:
            raise ValueError(f'weights file lacks {key} (tensor {tid} {self.tensors[tid]["name"]})')
        self.used_keys.add(key)
        value = weights[key]
        return value.float() if value.is_floating_point() else value

    def _register(self, name: str, value: Tensor) -> str:
        self.register_buffer(name, value.contiguous(), persistent=False)
        return name

    def _shape(self, tid: int) -> list[int]:
        return [int(s) for s in self.tensors[tid]['shape']]

    def _operand(self, tid: int, weights: dict[str, Tensor], name: str, out_rank: int) -> dict[str, Any]:
        """An elementwise operand: an activation (by id) or a constant laid out for NCHW broadcasting."""
        if tid not in self.const_key:
            return {'id': tid}
        value = self._const(tid, weights)
        if out_rank == 4:  # NHWC broadcasting aligns trailing axes: pad to rank 4, then move channels to axis 1
            value = value.reshape([1] * (4 - value.dim()) + list(value.shape)).permute(0, 3, 1, 2)
        return {'buffer': self._register(name, value)}

    def _prepare(self, op: dict[str, Any], weights: dict[str, Tensor]) -> dict[str, Any]:
        kind: str = op['type']
        opt: dict[str, Any] = op['options']
        ins: list[int] = op['inputs']
        step: dict[str, Any] = {'type': kind, 'inputs': ins, 'output': op['outputs'][0], 'options': opt}
        tag = f'op{op["index"]:03d}'
        if kind in ('CONV_2D', 'DEPTHWISE_CONV_2D'):
            weight = self._const(ins[1], weights)  # CONV: [O, kh, kw, I]; DEPTHWISE: [1, kh, kw, C*M]
            in_channels = self._shape(ins[0])[3]
            if kind == 'CONV_2D':
                step['groups'] = in_channels // weight.shape[3]
                weight = weight.permute(0, 3, 1, 2)
            else:
                step['groups'] = in_channels
                weight = weight.permute(3, 0, 1, 2)  # [C*M, 1, kh, kw]: output c*M+m reads input channel c
            step['weight'] = self._register(f'{tag}_weight', weight)
            has_bias = len(ins) > 2 and ins[2] >= 0
            step['bias'] = self._register(f'{tag}_bias', self._const(ins[2], weights)) if has_bias else None
            step['stride'] = (opt['stride_h'], opt['stride_w'])
            step['dilation'] = (opt['dilation_h'], opt['dilation_w'])
            step['pad'] = self._pads(ins[0], weight.shape[2], weight.shape[3], opt)
        elif kind in ('MAX_POOL_2D', 'AVERAGE_POOL_2D'):
            step['pad'] = self._pads(
                ins[0], opt['filter_h'], opt['filter_w'], {**opt, 'dilation_h': 1, 'dilation_w': 1}
            )
        elif kind == 'FULLY_CONNECTED':
            step['weight'] = self._register(f'{tag}_weight', self._const(ins[1], weights))
            has_bias = len(ins) > 2 and ins[2] >= 0
            step['bias'] = self._register(f'{tag}_bias', self._const(ins[2], weights)) if has_bias else None
            if opt.get('weights_format', 0) != 0:
                raise NotImplementedError('shuffled FULLY_CONNECTED weights')
        elif kind in ('ADD', 'SUB', 'MUL'):
            rank = len(self._shape(op['outputs'][0]))
            step['operands'] = [self._operand(t, weights, f'{tag}_in{i}', rank) for i, t in enumerate(ins)]
        elif kind == 'PRELU':
            rank = len(self._shape(op['outputs'][0]))
            step['operands'] = [{'id': ins[0]}, self._operand(ins[1], weights, f'{tag}_alpha', rank)]
        elif kind == 'MEAN':
            axes = [int(a) % 4 for a in self._const(ins[1], weights).reshape(-1).tolist()]
            if len(self._shape(ins[0])) != 4:
                raise NotImplementedError('MEAN on a tensor that is not rank 4')
            step['axes'] = sorted(_TO_NCHW_AXIS[a] for a in axes)
            step['nhwc_axes'] = axes
        elif kind == 'PAD':
            pads = self._const(ins[1], weights).reshape(-1, 2).tolist()
            if len(pads) != 4:
                raise NotImplementedError('PAD on a tensor that is not rank 4')
            (n0, n1), (h0, h1), (w0, w1), (c0, c1) = pads
            step['pad'] = (w0, w1, h0, h1, c0, c1, n0, n1)  # F.pad order for NCHW: last axis first
        elif kind == 'RESHAPE':
            if len(ins) > 1 and ins[1] >= 0:
                self._const(ins[1], weights)  # the shape tensor; the output tensor's static shape is used instead
            step['shape'] = self._shape(op['outputs'][0])
        elif kind == 'CONCATENATION':
            rank = len(self._shape(op['outputs'][0]))
            axis = opt['axis'] % rank
            step['axis'] = _TO_NCHW_AXIS[axis] if rank == 4 else axis
        elif kind not in ('LOGISTIC', 'RELU', 'RELU6', 'TANH', 'HARD_SWISH'):
            raise NotImplementedError(f'TFLite op {kind} is not supported')
        return step

    def _pads(self, input_id: int, kh: int, kw: int, opt: dict[str, Any]) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) as F.pad takes them."""
        if opt['padding'] == 'VALID':
            return (0, 0, 0, 0)
        _, height, width, _ = self._shape(input_id)
        top, bottom = _same_padding(height, kh, opt['stride_h'], opt['dilation_h'])
        left, right = _same_padding(width, kw, opt['stride_w'], opt['dilation_w'])
        return (left, right, top, bottom)

    # ----------------------------------------------------------------------------------------------- running
    def _conv(self, x: Tensor, step: dict[str, Any]) -> Tensor:
        left, right, top, bottom = step['pad']
        padding: tuple[int, int] | int = 0
        if left == right and top == bottom:
            padding = (top, left)
        else:
            x = F.pad(x, (left, right, top, bottom))
        bias = getattr(self, step['bias']) if step['bias'] else None
        weight = getattr(self, step['weight'])
        y = F.conv2d(x, weight, bias, step['stride'], padding, step['dilation'], step['groups'])
        return _activation(y, step['options']['activation'])

    def _pool(self, x: Tensor, step: dict[str, Any]) -> Tensor:
        opt = step['options']
        kernel, stride = (opt['filter_h'], opt['filter_w']), (opt['stride_h'], opt['stride_w'])
        left, right, top, bottom = step['pad']
        if step['type'] == 'MAX_POOL_2D':
            y = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float('-inf')), kernel, stride)
        else:  # TF averages over the valid pixels only
            total = F.avg_pool2d(F.pad(x, (left, right, top, bottom)), kernel, stride, divisor_override=1)
            ones = F.pad(torch.ones_like(x[:1, :1]), (left, right, top, bottom))
            y = total / F.avg_pool2d(ones, kernel, stride, divisor_override=1)
        return _activation(y, opt['activation'])

    def _value(self, operand: dict[str, Any], values: dict[int, Tensor]) -> Tensor:
        if 'buffer' in operand:
            buffer: Tensor = getattr(self, operand['buffer'])
            return buffer
        return values[operand['id']]

    def _run(self, step: dict[str, Any], values: dict[int, Tensor]) -> Tensor:
        kind = step['type']
        x = values.get(step['inputs'][0]) if kind not in ('ADD', 'SUB', 'MUL', 'PRELU') else None
        opt = step['options']
        if kind in ('CONV_2D', 'DEPTHWISE_CONV_2D'):
            assert x is not None
            return self._conv(x, step)
        if kind in ('ADD', 'SUB', 'MUL'):
            a, b = (self._value(o, values) for o in step['operands'])
            y = a + b if kind == 'ADD' else a - b if kind == 'SUB' else a * b
            return _activation(y, opt['activation'])
        if kind == 'PRELU':
            a, alpha = (self._value(o, values) for o in step['operands'])
            return torch.where(a >= 0, a, a * alpha)
        assert x is not None
        if kind in ('MAX_POOL_2D', 'AVERAGE_POOL_2D'):
            return self._pool(x, step)
        if kind == 'FULLY_CONNECTED':
            flat = _to_nhwc(x).reshape(-1, getattr(self, step['weight']).shape[1]) if x.dim() != 2 else x
            bias = getattr(self, step['bias']) if step['bias'] else None
            y = F.linear(flat, getattr(self, step['weight']), bias)
            if opt.get('keep_num_dims') and x.dim() != 2:
                y = _to_nchw(y.reshape(list(_to_nhwc(x).shape[:-1]) + [y.shape[-1]]))
            return _activation(y, opt['activation'])
        if kind == 'MEAN':
            y = x.mean(dim=step['axes'], keepdim=True)
            if opt['keep_dims']:
                return y
            return _to_nhwc(y).squeeze(dim=tuple(step['nhwc_axes']))
        if kind == 'LOGISTIC':
            return torch.sigmoid(x)
        if kind == 'RELU':
            return F.relu(x)
        if kind == 'RELU6':
            return F.hardtanh(x, 0.0, 6.0)
        if kind == 'TANH':
            return torch.tanh(x)
        if kind == 'HARD_SWISH':
            return F.hardswish(x)
        if kind == 'PAD':
            return F.pad(x, step['pad'])
        if kind == 'RESHAPE':
            shape = [x.shape[0]] + step['shape'][1:]
            return _to_nchw(_to_nhwc(x).reshape(shape))
        if kind == 'CONCATENATION':
            parts = [values[t] for t in step['inputs']]
            return _activation(torch.cat(parts, dim=step['axis']), opt['activation'])
        raise NotImplementedError(kind)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(B, 224, 224, 3) or (B, 3, 224, 224) float RGB in [0, 1] -> dict of outputs (module docstring)."""
        x = self._check_input(images)
        values: dict[int, Tensor] = {self.input_id: x}
        for step in self.steps:
            values[step['output']] = self._run(step, values)
            for tid in step['free']:
                del values[tid]
        batch = x.shape[0]
        return {
            'landmarks': values[self.roles['landmarks']].reshape(batch, NUM_LANDMARKS, 3).float(),
            'presence': values[self.roles['presence']].reshape(batch).float(),
            'handedness': 1.0 - values[self.roles['handedness']].reshape(batch).float(),
            'world_landmarks': values[self.roles['world_landmarks']].reshape(batch, NUM_LANDMARKS, 3).float(),
        }

    @staticmethod
    def _check_input(images: Tensor) -> Tensor:
        """Validate and return the batch as NCHW float32."""
        if not isinstance(images, Tensor):
            raise ValueError(f'images must be a torch.Tensor, got {type(images).__name__}')
        if not images.is_floating_point():
            raise ValueError(f'images must be float RGB in [0, 1], got dtype {images.dtype}')
        shape = tuple(images.shape)
        if images.dim() == 4 and shape[1:] == (INPUT_SIZE, INPUT_SIZE, 3):
            return images.permute(0, 3, 1, 2).float()
        if images.dim() == 4 and shape[1:] == (3, INPUT_SIZE, INPUT_SIZE):
            return images.float()
        raise ValueError(
            f'images must have shape (B, {INPUT_SIZE}, {INPUT_SIZE}, 3) or (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), '
            f'got {shape}'
        )


def load_landmark_model(path_prefix: str | Path | None = None) -> MediaPipeLandmarkNet:
    """Build the network from ``<prefix>.graph.json`` + ``<prefix>.safetensors`` (default: the shipped files).

    Returns the module in eval mode, float32, on the CPU.
    """
    prefix = Path(path_prefix) if path_prefix is not None else default_prefix()
    graph_path = prefix.with_name(prefix.name + '.graph.json')
    weights_path = prefix.with_name(prefix.name + '.safetensors')
    for path in (graph_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(path)
    graph = json.loads(graph_path.read_text())
    model = MediaPipeLandmarkNet(graph, load_file(str(weights_path)))
    return model.eval()


def graph_constant_keys(graph: dict[str, Any]) -> set[str]:
    """Safetensors keys of the constant tensors the graph's ops read (directly or through DEQUANTIZE)."""
    keys = {t['id']: t['constant'] for t in graph['tensors'] if 'constant' in t}
    read: Sequence[int] = [t for op in graph['ops'] for t in op['inputs'] if t >= 0]
    return {keys[t] for t in read if t in keys}
