"""MediaPipe's hand landmark and palm detection networks (mediapipe 0.10.21) as plain PyTorch modules.

Each network is rebuilt from two files written by ``tools/mediapipe_landmarks/convert.py``: a JSON description of
the TFLite graph (ordered ops, tensor ids, shapes, options) and a safetensors file holding its constant tensors.
:class:`MediaPipeGraphNet` executes such a graph: every TFLite op becomes one torch operation. TFLite works in NHWC;
here every rank-4 activation is kept NCHW (faster convolutions on CPU), constants are permuted once at load, and ops
that depend on the memory order (reshape, fully connected on a rank-4 input, reductions) go back to NHWC first, so
the results equal TFLite's. The input size is the graph's input tensor's. Two thin subclasses give the outputs
meaning: :class:`MediaPipeLandmarkNet` and :class:`MediaPipePalmNet`.

**Hand landmarks** (``hand_landmark_full.tflite``, :func:`load_landmark_model`). Outputs of the network (224x224
RGB crop, float in [0, 1]):

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

**Palm detection** (``palm_detection_full.tflite``, :func:`load_palm_model`). Input: the (letterboxed) image at
192x192, RGB float in **[0, 1]**, like the landmark network's, passed to the graph unchanged: [0, 1] is the range
this graph takes (not [-1, 1], the range of MediaPipe's older 256 px palm model). Checked with the original
interpreter on 40 letterboxed photos of ``realimgs-train/handsdataset/train``: with [0, 1] input the best anchor's
decoded box centre lies inside a labelled hand box on 40 of 40 photos (best palm probability median 0.95, > 0.9 on
35, box ~32 px), with [-1, 1] input on none (logits in the thousands, boxes ~2400 px wide: out of range);
``tools/mediapipe_landmarks/parity.py --model palm`` repeats the check on its photos. Outputs, one row per SSD
anchor (2016: a 24x24 map of stride 8 then a 12x12 map of stride 16, 2 and 6 anchors per cell, in the graph's
concatenation order):

* ``regressors`` (B, 2016, 18) float32, undecoded: per anchor the box centre (x, y) as an offset from the anchor
  centre, the box width and height, then 7 keypoints (x, y) as offsets from the anchor centre, all in input pixels
  (MediaPipe's ``TensorsToDetectionsCalculator`` decodes them with its anchors, scale 192).
* ``scores`` (B, 2016) float32: raw logits (sigmoid gives the palm probability; MediaPipe clips them to +-100
  and keeps detections with probability >= 0.5).
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
PALM_DEFAULT_NAME = 'mp_palm_detection_full'
INPUT_SIZE = 224  # the landmark network's
PALM_INPUT_SIZE = 192
NUM_LANDMARKS = 21
NUM_PALM_ANCHORS = 2016
PALM_REGRESSORS = 18  # box (4) + 7 keypoints (x, y)
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


def default_prefix(name: str = DEFAULT_NAME) -> Path:
    """``models/<name>`` (default ``mp_hand_landmark_full``) in the first of :func:`model_dirs` that holds it."""
    for folder in model_dirs():
        if (folder / f'{name}.safetensors').is_file():
            return folder / name
    raise FileNotFoundError(f'{name}.safetensors not found in any of {[str(d) for d in model_dirs()]}')


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


class MediaPipeGraphNet(nn.Module):
    """A converted TFLite graph executed op by op in torch (module docstring); subclasses name its outputs.

    ``forward`` of a subclass validates the batch with :meth:`_check_input` (NHWC or NCHW float RGB at the graph's
    input size) and runs it with :meth:`run_graph`, which returns the graph's outputs by role (``output_roles``).
    """

    #: output roles the graph must have
    REQUIRED_ROLES: frozenset[str] = frozenset()

    def __init__(self, graph: dict[str, Any], weights: dict[str, Tensor]) -> None:
        super().__init__()
        if graph.get('format') != GRAPH_FORMAT:
            raise ValueError(f'unsupported graph format {graph.get("format")!r}; expected {GRAPH_FORMAT!r}')
        self.tensors: list[dict[str, Any]] = graph['tensors']
        self.input_id: int = int(graph['inputs'][0])
        input_shape = [int(s) for s in self.tensors[self.input_id]['shape']]
        if len(input_shape) != 4 or input_shape[3] != 3:
            raise ValueError(f'graph input has shape {input_shape}; expected (1, H, W, 3)')
        self.input_size: tuple[int, int] = (input_shape[1], input_shape[2])
        self.roles: dict[str, int] = {role: int(v['tensor']) for role, v in graph['output_roles'].items()}
        missing_roles = self.REQUIRED_ROLES - set(self.roles)
        if missing_roles:
            raise ValueError(f'graph lacks outputs {sorted(missing_roles)}')
        self._check_roles(graph['output_roles'])
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

    def _check_roles(self, roles: dict[str, dict[str, Any]]) -> None:
        """Subclass hook: refuse a graph whose outputs do not mean what the subclass reports."""

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
            alpha = self._operand(ins[1], weights, f'{tag}_alpha', rank)
            step['operands'] = [{'id': ins[0]}, alpha]
            # one slope per channel (the usual case): F.prelu, several times faster than the elementwise form
            step['prelu_weight'] = None
            if rank == 4 and 'buffer' in alpha:
                slopes = getattr(self, alpha['buffer'])
                channels = self._shape(ins[0])[3]
                if tuple(slopes.shape) == (1, channels, 1, 1):
                    step['prelu_weight'] = self._register(f'{tag}_slopes', slopes.reshape(channels))
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
        elif kind == 'RESIZE_BILINEAR':
            out_shape, in_shape = self._shape(op['outputs'][0]), self._shape(ins[0])
            if len(out_shape) != 4 or len(in_shape) != 4:
                raise NotImplementedError('RESIZE_BILINEAR on a tensor that is not rank 4')
            size = [int(v) for v in self._const(ins[1], weights).reshape(-1).tolist()]
            if size != out_shape[1:3]:
                raise ValueError(f'RESIZE_BILINEAR op {op["index"]}: size {size} but output shape {out_shape}')
            step['size'] = (size[0], size[1])
            if opt['align_corners'] and opt['half_pixel_centers']:
                raise ValueError('RESIZE_BILINEAR with both align_corners and half_pixel_centers')
            if not opt['align_corners'] and not opt['half_pixel_centers']:
                # TF's legacy sampling (source = destination * in / out) has no torch equivalent
                raise NotImplementedError('RESIZE_BILINEAR without align_corners or half_pixel_centers')
            # half_pixel_centers is torch's align_corners=False: source = (destination + 0.5) * in / out - 0.5
            step['align_corners'] = bool(opt['align_corners'])
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
            if left or right or top or bottom:
                x = F.pad(x, (left, right, top, bottom), value=float('-inf'))
            y = F.max_pool2d(x, kernel, stride)
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
            if step['prelu_weight'] is not None:
                a = values[step['inputs'][0]]
                slopes: Tensor = getattr(self, step['prelu_weight'])
                return F.prelu(a, slopes.to(a.dtype))
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
        if kind == 'RESIZE_BILINEAR':
            return F.interpolate(x, size=step['size'], mode='bilinear', align_corners=step['align_corners'])
        raise NotImplementedError(kind)

    def run_graph(self, x: Tensor) -> dict[str, Tensor]:
        """NCHW input as the graph takes it (already validated and scaled) -> the graph's outputs by role."""
        values: dict[int, Tensor] = {self.input_id: x}
        for step in self.steps:
            values[step['output']] = self._run(step, values)
            for tid in step['free']:
                del values[tid]
        return {role: values[tid] for role, tid in self.roles.items()}

    def _check_input(self, images: Tensor) -> Tensor:
        """Validate and return the batch as NCHW float32."""
        if not isinstance(images, Tensor):
            raise ValueError(f'images must be a torch.Tensor, got {type(images).__name__}')
        if not images.is_floating_point():
            raise ValueError(f'images must be float RGB in [0, 1], got dtype {images.dtype}')
        shape = tuple(images.shape)
        height, width = self.input_size
        if images.dim() == 4 and shape[1:] == (height, width, 3):
            return images.permute(0, 3, 1, 2).float()
        if images.dim() == 4 and shape[1:] == (3, height, width):
            return images.float()
        raise ValueError(f'images must have shape (B, {height}, {width}, 3) or (B, 3, {height}, {width}), got {shape}')


class MediaPipeLandmarkNet(MediaPipeGraphNet):
    """MediaPipe's hand landmark graph; see the module docstring for inputs and outputs."""

    REQUIRED_ROLES = frozenset({'landmarks', 'presence', 'handedness', 'world_landmarks'})

    def _check_roles(self, roles: dict[str, dict[str, Any]]) -> None:
        for role in ('presence', 'handedness'):
            if roles[role]['after_dense'] != ['LOGISTIC']:
                raise ValueError(f'{role} output is not a LOGISTIC probability in this graph')

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(B, 224, 224, 3) or (B, 3, 224, 224) float RGB in [0, 1] -> dict of outputs (module docstring)."""
        x = self._check_input(images)
        out = self.run_graph(x)
        batch = x.shape[0]
        return {
            'landmarks': out['landmarks'].reshape(batch, NUM_LANDMARKS, 3).float(),
            'presence': out['presence'].reshape(batch).float(),
            'handedness': 1.0 - out['handedness'].reshape(batch).float(),
            'world_landmarks': out['world_landmarks'].reshape(batch, NUM_LANDMARKS, 3).float(),
        }


class MediaPipePalmNet(MediaPipeGraphNet):
    """MediaPipe's palm detection graph: float RGB in [0, 1] in, raw anchor outputs out (module docstring)."""

    REQUIRED_ROLES = frozenset({'regressors', 'scores'})

    def _check_roles(self, roles: dict[str, dict[str, Any]]) -> None:
        regressors = [int(s) for s in self.tensors[self.roles['regressors']]['shape']]
        scores = [int(s) for s in self.tensors[self.roles['scores']]['shape']]
        if len(regressors) != 3 or regressors[2] != PALM_REGRESSORS or scores != [*regressors[:2], 1]:
            raise ValueError(f'palm outputs have shapes {regressors} and {scores}; expected (1, N, 18) and (1, N, 1)')
        self.num_anchors: int = regressors[1]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(B, 192, 192, 3) or (B, 3, 192, 192) float RGB in [0, 1] (the graph's own range) -> ``regressors``
        (B, 2016, 18) and ``scores`` (B, 2016) raw logits, float32."""
        x = self._check_input(images)
        out = self.run_graph(x)
        batch = x.shape[0]
        return {
            'regressors': out['regressors'].reshape(batch, self.num_anchors, PALM_REGRESSORS).float(),
            'scores': out['scores'].reshape(batch, self.num_anchors).float(),
        }


def _read_files(prefix: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    graph_path = prefix.with_name(prefix.name + '.graph.json')
    weights_path = prefix.with_name(prefix.name + '.safetensors')
    for path in (graph_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(path)
    return json.loads(graph_path.read_text()), load_file(str(weights_path))


def load_landmark_model(path_prefix: str | Path | None = None) -> MediaPipeLandmarkNet:
    """Build the network from ``<prefix>.graph.json`` + ``<prefix>.safetensors`` (default: the shipped files).

    Returns the module in eval mode, float32, on the CPU.
    """
    prefix = Path(path_prefix) if path_prefix is not None else default_prefix()
    return MediaPipeLandmarkNet(*_read_files(prefix)).eval()


def load_palm_model(path_prefix: str | Path | None = None) -> MediaPipePalmNet:
    """The palm detector from ``<prefix>.graph.json`` + ``<prefix>.safetensors`` (default: the shipped
    ``models/mp_palm_detection_full.*``, found like :func:`default_prefix`).

    Returns the module in eval mode, float32, on the CPU.
    """
    prefix = Path(path_prefix) if path_prefix is not None else default_prefix(PALM_DEFAULT_NAME)
    return MediaPipePalmNet(*_read_files(prefix)).eval()


def graph_constant_keys(graph: dict[str, Any]) -> set[str]:
    """Safetensors keys of the constant tensors the graph's ops read (directly or through DEQUANTIZE)."""
    keys = {t['id']: t['constant'] for t in graph['tensors'] if 'constant' in t}
    read: Sequence[int] = [t for op in graph['ops'] for t in op['inputs'] if t >= 0]
    return {keys[t] for t in read if t in keys}
