"""Convert MediaPipe's ``hand_landmark_full.tflite`` / ``palm_detection_full.tflite`` into files the PyTorch port loads.

Reads the flatbuffer with the ``tflite`` schema package (requirements/mediapipe_landmarks.txt), never runs it, and
writes, next to each other:

* ``<prefix>.safetensors``: every constant tensor the graph reads, keyed ``t<tensor id>``. The float16 weights are
  dequantized to float32 (as the graph's DEQUANTIZE ops do) and stored back as float16, which is lossless for
  values that were float16 to begin with (checked); float32 and integer constants keep their type.
* ``<prefix>.graph.json``: the ordered op list (type, input/output tensor ids, options), every tensor's name, shape
  and dtype, the graph inputs/outputs and which output is which head.
* ``<prefix>.manifest.json``: sha256 of the two files above, the source wheel and file, licence, producing command.

It also copies the wheel's licence file to ``models/LICENSE.mediapipe``.

The graph's outputs are named by role (``output_roles``): the hand landmark graph's by the dense (FULLY_CONNECTED)
head that produces each (``landmarks``, ``world_landmarks``, ``presence``, ``handedness``); a graph without dense
heads, the palm detector, by its output shapes: (1, anchors, 1) is ``scores``, (1, anchors, K > 1) ``regressors``.

Usage (repository root), the hand landmark model (the default ``--tflite``; ``--out-prefix`` defaults to
``models/mp_<tflite stem>``)::

    .venv/bin/python -m tools.mediapipe_landmarks.convert \
        --tflite .venv-teacher/lib/python3.11/site-packages/mediapipe/modules/hand_landmark/hand_landmark_full.tflite

and the palm detector::

    .venv/bin/python -m tools.mediapipe_landmarks.convert \
        --tflite .venv-teacher/lib/python3.11/site-packages/mediapipe/modules/palm_detection/palm_detection_full.tflite \
        --out-prefix models/mp_palm_detection_full
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from email.parser import Parser
from pathlib import Path
from typing import Any

import numpy as np
import tflite
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TFLITE = (
    REPO / '.venv-teacher/lib/python3.11/site-packages/mediapipe/modules/hand_landmark/hand_landmark_full.tflite'
)
MODELS = REPO / 'models'
FORMAT = 'hand_recon_ros.tflite_graph/1'

TENSOR_TYPES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith('_')}
NUMPY_TYPES = {'FLOAT32': np.float32, 'FLOAT16': np.float16, 'INT32': np.int32, 'INT64': np.int64, 'INT8': np.int8}
PADDING = {0: 'SAME', 1: 'VALID'}
ACTIVATION = {0: 'NONE', 1: 'RELU', 2: 'RELU_N1_TO_1', 3: 'RELU6', 4: 'TANH', 5: 'SIGN_BIT'}

# op type -> (options class in the tflite package, {json key: (accessor, converter)})
_Field = tuple[str, Callable[[Any], Any]]
OPTION_FIELDS: dict[str, tuple[str, dict[str, _Field]]] = {
    'CONV_2D': (
        'Conv2DOptions',
        {
            'padding': ('Padding', PADDING.__getitem__),
            'stride_h': ('StrideH', int),
            'stride_w': ('StrideW', int),
            'dilation_h': ('DilationHFactor', int),
            'dilation_w': ('DilationWFactor', int),
            'activation': ('FusedActivationFunction', ACTIVATION.__getitem__),
        },
    ),
    'DEPTHWISE_CONV_2D': (
        'DepthwiseConv2DOptions',
        {
            'padding': ('Padding', PADDING.__getitem__),
            'stride_h': ('StrideH', int),
            'stride_w': ('StrideW', int),
            'dilation_h': ('DilationHFactor', int),
            'dilation_w': ('DilationWFactor', int),
            'depth_multiplier': ('DepthMultiplier', int),
            'activation': ('FusedActivationFunction', ACTIVATION.__getitem__),
        },
    ),
    'MAX_POOL_2D': (
        'Pool2DOptions',
        {
            'padding': ('Padding', PADDING.__getitem__),
            'stride_h': ('StrideH', int),
            'stride_w': ('StrideW', int),
            'filter_h': ('FilterHeight', int),
            'filter_w': ('FilterWidth', int),
            'activation': ('FusedActivationFunction', ACTIVATION.__getitem__),
        },
    ),
    'FULLY_CONNECTED': (
        'FullyConnectedOptions',
        {
            'activation': ('FusedActivationFunction', ACTIVATION.__getitem__),
            'weights_format': ('WeightsFormat', int),
            'keep_num_dims': ('KeepNumDims', bool),
        },
    ),
    'ADD': ('AddOptions', {'activation': ('FusedActivationFunction', ACTIVATION.__getitem__)}),
    'SUB': ('SubOptions', {'activation': ('FusedActivationFunction', ACTIVATION.__getitem__)}),
    'MUL': ('MulOptions', {'activation': ('FusedActivationFunction', ACTIVATION.__getitem__)}),
    'CONCATENATION': (
        'ConcatenationOptions',
        {'axis': ('Axis', int), 'activation': ('FusedActivationFunction', ACTIVATION.__getitem__)},
    ),
    'MEAN': ('ReducerOptions', {'keep_dims': ('KeepDims', bool)}),
    'RESHAPE': ('ReshapeOptions', {'new_shape': ('NewShapeAsNumpy', lambda v: [int(x) for x in np.atleast_1d(v)])}),
    'RESIZE_BILINEAR': (
        'ResizeBilinearOptions',
        {'align_corners': ('AlignCorners', bool), 'half_pixel_centers': ('HalfPixelCenters', bool)},
    ),
}
OPTION_FIELDS['AVERAGE_POOL_2D'] = OPTION_FIELDS['MAX_POOL_2D']
# ops whose semantics need no options (or whose parameters arrive as constant input tensors)
NO_OPTIONS = {'DEQUANTIZE', 'LOGISTIC', 'RELU', 'RELU6', 'PRELU', 'HARD_SWISH', 'TANH', 'PAD'}
# ops whose options table may be absent: their parameters then arrive as a constant input tensor (RESHAPE's shape)
OPTIONAL_OPTIONS = {'RESHAPE'}
# the model a file of the wheel holds, by its folder under mediapipe/modules/ (the manifest's attribution)
MODEL_OF_FOLDER = {
    'hand_landmark': 'MediaPipe Hands landmark model',
    'palm_detection': 'MediaPipe Hands palm detection model',
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _options(op: Any, op_type: str) -> dict[str, Any]:
    if op_type in NO_OPTIONS:
        return {}
    if op_type not in OPTION_FIELDS:
        raise NotImplementedError(f'TFLite op {op_type} is not supported by the converter')
    class_name, fields = OPTION_FIELDS[op_type]
    table = op.BuiltinOptions()
    if table is None:  # all defaults
        if op_type in OPTIONAL_OPTIONS:
            return {}
        raise ValueError(f'{op_type} has no options table')
    options = getattr(tflite, class_name)()
    options.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for key, (accessor, convert) in fields.items():
        out[key] = convert(getattr(options, accessor)())
    return out


def _wheel_of(tflite_path: Path) -> tuple[str, str, Path | None]:
    """The installed distribution that holds the file: (name, version, licence file)."""
    for parent in tflite_path.resolve().parents:
        if parent.name == 'site-packages':
            for info in sorted(parent.glob('mediapipe-*.dist-info')):
                meta = Parser().parsestr((info / 'METADATA').read_text())
                licence = next((p for p in (info / 'LICENSE', info / 'licenses' / 'LICENSE') if p.exists()), None)
                return meta['Name'], meta['Version'], licence
    return 'unknown', 'unknown', None


def _file_in_wheel(tflite_path: Path) -> str:
    """The file's path inside the installed package (``mediapipe/modules/<folder>/<file>``), else its bare name."""
    resolved = tflite_path.resolve()
    for parent in resolved.parents:
        if parent.name == 'site-packages':
            return resolved.relative_to(parent).as_posix()
    return resolved.name


def _attribution(file_in_wheel: str) -> str:
    parts = file_in_wheel.split('/')
    folder = parts[-2] if len(parts) >= 2 else ''
    model = MODEL_OF_FOLDER.get(folder, f'MediaPipe model {parts[-1]}')
    return f'{model}, Google LLC, Apache-2.0'


def read_graph(buf: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse the flatbuffer: the JSON-able graph description and the constant tensors (float16 dequantized)."""
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError(f'expected one subgraph, found {model.SubgraphsLength()}')
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            raise NotImplementedError(f'custom op {code.CustomCode()!r}')
        codes.append(tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode())))

    tensors: list[dict[str, Any]] = []
    constants: dict[str, np.ndarray] = {}
    for tid in range(graph.TensorsLength()):
        tensor = graph.Tensors(tid)
        dtype = TENSOR_TYPES[tensor.Type()]
        shape = [int(s) for s in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
        data = model.Buffers(tensor.Buffer()).DataAsNumpy() if tensor.Buffer() > 0 else 0
        entry: dict[str, Any] = {'id': tid, 'name': tensor.Name().decode(), 'shape': shape, 'dtype': dtype}
        if isinstance(data, np.ndarray) and data.size:
            array = np.frombuffer(data.tobytes(), dtype=NUMPY_TYPES[dtype]).reshape(shape)
            if dtype == 'FLOAT16':
                wide = array.astype(np.float32)  # what DEQUANTIZE computes
                back = wide.astype(np.float16)
                if not np.array_equal(back.view(np.uint16), array.view(np.uint16)):
                    raise AssertionError(f'tensor {tid}: float16 round trip is not lossless')
                array = back
            entry['constant'] = f't{tid:03d}'
            constants[entry['constant']] = np.ascontiguousarray(array)
        tensors.append(entry)

    ops: list[dict[str, Any]] = []
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        op_type = codes[op.OpcodeIndex()]
        ops.append(
            {
                'index': index,
                'type': op_type,
                'inputs': [int(t) for t in op.InputsAsNumpy()],
                'outputs': [int(t) for t in op.OutputsAsNumpy()],
                'options': _options(op, op_type),
            }
        )
    description: dict[str, Any] = {
        'format': FORMAT,
        'layout': 'NHWC',
        'inputs': [int(t) for t in graph.InputsAsNumpy()],
        'outputs': [int(t) for t in graph.OutputsAsNumpy()],
        'tensors': tensors,
        'ops': ops,
    }
    description['output_roles'] = _output_roles(description)
    return description, constants


ROLE_OF_HEAD = {
    'conv_landmarks': 'landmarks',
    'conv_world_landmarks': 'world_landmarks',
    'conv_handflag': 'presence',
    'conv_handedness': 'handedness',
}


def _dense_head(producer: dict[int, dict[str, Any]], out: int) -> tuple[dict[str, Any] | None, list[str]]:
    """The FULLY_CONNECTED op an output comes from through single-input ops (first inputs), and the ops after it."""
    chain: list[str] = []
    op = producer.get(out)
    while op is not None and op['type'] != 'FULLY_CONNECTED':
        chain.append(op['type'])
        op = producer.get(op['inputs'][0])
    return op, chain


def _output_roles(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name each graph output: by its dense head if the graph has them, else by its shape (a detector's outputs)."""
    producer = {t: op for op in description['ops'] for t in op['outputs']}
    if all(_dense_head(producer, out)[0] is None for out in description['outputs']):
        return _detector_roles(description, producer)
    return _dense_roles(description, producer)


def _dense_roles(description: dict[str, Any], producer: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Name each graph output by the dense head that produces it (the weight tensor's Keras layer name)."""
    tensors = description['tensors']
    roles: dict[str, dict[str, Any]] = {}
    for out in description['outputs']:
        op, chain = _dense_head(producer, out)
        if op is None:
            raise ValueError(f'output {tensors[out]["name"]} does not come from a FULLY_CONNECTED head')
        weight_name = tensors[op['inputs'][1]]['name']
        layer = weight_name.split('/')[2]  # model_1/model/<layer>/MatMul...
        role = ROLE_OF_HEAD[layer]
        roles[role] = {'tensor': out, 'name': tensors[out]['name'], 'layer': layer, 'after_dense': chain}
    return roles


def _detector_roles(description: dict[str, Any], producer: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """An anchor detector's outputs by shape: (1, anchors, 1) ``scores``, (1, anchors, K > 1) ``regressors``.

    Each entry also lists the convolution layers (Keras names, one per feature map) whose outputs are reshaped to
    anchors and concatenated into it, in concatenation order.
    """
    tensors = description['tensors']
    roles: dict[str, dict[str, Any]] = {}
    anchors = set()
    for out in description['outputs']:
        shape = tensors[out]['shape']
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f'output {tensors[out]["name"]} has shape {shape}, not (1, anchors, K)')
        anchors.add(shape[1])
        role = 'scores' if shape[2] == 1 else 'regressors'
        if role in roles:
            raise ValueError(f'two outputs would be {role!r}: {roles[role]["name"]} and {tensors[out]["name"]}')
        layers = []
        op = producer[out]
        for part in op['inputs'] if op['type'] == 'CONCATENATION' else [out]:
            source = producer[part]
            while source['type'] == 'RESHAPE':
                source = producer[source['inputs'][0]]
            # a fused conv's output is named '<model>/<model>/<layer>/BiasAdd;...'
            name_parts = tensors[source['outputs'][0]]['name'].split(';')[0].split('/')
            layers.append(name_parts[2] if len(name_parts) > 3 else name_parts[-1])
        roles[role] = {'tensor': out, 'name': tensors[out]['name'], 'shape': shape, 'layers': layers}
    if set(roles) != {'scores', 'regressors'} or len(anchors) != 1:
        raise ValueError(f'expected one scores and one regressors output over the same anchors, got {roles}')
    return dict(sorted(roles.items()))


def convert(tflite_path: Path, prefix: Path, licence_out: Path | None, command: str) -> dict[str, Any]:
    buf = tflite_path.read_bytes()
    description, constants = read_graph(buf)
    used = {t for op in description['ops'] for t in op['inputs'] if t >= 0}
    keyed = {t['constant']: t['id'] for t in description['tensors'] if 'constant' in t}
    unused = sorted(k for k, tid in keyed.items() if tid not in used)
    if unused:
        raise AssertionError(f'constants no op reads: {unused}')
    wheel, version, licence = _wheel_of(tflite_path)

    prefix.parent.mkdir(parents=True, exist_ok=True)
    weights = prefix.with_name(prefix.name + '.safetensors')
    graph = prefix.with_name(prefix.name + '.graph.json')
    manifest_path = prefix.with_name(prefix.name + '.manifest.json')
    source_sha = hashlib.sha256(buf).hexdigest()
    file_in_wheel = _file_in_wheel(tflite_path)
    save_file(
        dict(sorted(constants.items())),
        str(weights),
        # one metadata key: safetensors writes several in random order, and the file must be byte-reproducible
        metadata={'source': json.dumps({'file': tflite_path.name, 'sha256': source_sha, 'graph': graph.name})},
    )
    weights.chmod(0o644)  # safetensors writes 0600
    graph.write_text(json.dumps(description, indent=1) + '\n')
    manifest: dict[str, Any] = {
        'files': {
            weights.name: {'sha256': _sha256(weights), 'bytes': weights.stat().st_size},
            graph.name: {'sha256': _sha256(graph), 'bytes': graph.stat().st_size},
        },
        'source': {
            'wheel': wheel,
            'version': version,
            'file': file_in_wheel,
            'sha256': source_sha,
        },
        'licence': 'Apache-2.0',
        'attribution': _attribution(file_in_wheel),
        'parameters': int(sum(a.size for a in constants.values() if a.dtype.kind == 'f')),
        'command': command,
    }
    if licence_out is not None and licence is not None:
        shutil.copyfile(licence, licence_out)
        manifest['licence_file'] = {'path': licence_out.name, 'sha256': _sha256(licence_out)}
    manifest_path.write_text(json.dumps(manifest, indent=1) + '\n')
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tflite', type=Path, default=DEFAULT_TFLITE)
    parser.add_argument('--out-prefix', type=Path, help='default: models/mp_<tflite stem>')
    parser.add_argument('--licence-out', type=Path, default=MODELS / 'LICENSE.mediapipe')
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    shown = [
        str(Path(a).relative_to(REPO)) if Path(a).is_absolute() and Path(a).is_relative_to(REPO) else a for a in given
    ]
    command = '.venv/bin/python -m tools.mediapipe_landmarks.convert ' + shlex.join(shown)
    prefix = args.out_prefix if args.out_prefix is not None else MODELS / f'mp_{args.tflite.stem}'
    manifest = convert(args.tflite, prefix, args.licence_out, command.strip())
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
