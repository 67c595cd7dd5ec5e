"""The PyTorch port of MediaPipe's palm detector: shipped files, parity with the original, the ops new to it.

test/data/mp_palm_reference.npz holds the ORIGINAL .tflite's outputs (LiteRT interpreter, written by
``tools/mediapipe_landmarks/parity.py --model palm --write-reference``) for two seeded inputs: all 2016 score logits
and the regressors of 48 anchors (each input's best ones and an even spread). The fp32 port measured against that
interpreter on those two inputs differs by at most 1.9e-4 px in the regressors and 2.9e-5 in the logits (on 40 real
letterboxed photos, with larger values: 1.0e-3 px and 2.4e-4, about 7e-6 of the largest value). The tolerances below
are about 25-35x the reference inputs' figures: any wrong op, weight, layout or input scaling misses by orders of
magnitude, other CPUs' float32 summation order does not.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hand_recon_ros.landmarks import PALM_INPUT_SIZE, MediaPipeLandmarkNet, MediaPipePalmNet, load_palm_model
from hand_recon_ros.landmarks.mediapipe_port import PALM_DEFAULT_NAME, default_prefix, graph_constant_keys

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / 'models'
PREFIX = MODELS / 'mp_palm_detection_full'
REFERENCE = Path(__file__).resolve().parent / 'data' / 'mp_palm_reference.npz'
TOLERANCE = {'regressors': 5e-3, 'scores': 1e-3}


@pytest.fixture(scope='module')
def model() -> MediaPipePalmNet:
    return load_palm_model()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    graph = json.loads(PREFIX.with_name(PREFIX.name + '.graph.json').read_text())
    return graph, load_file(str(PREFIX.with_name(PREFIX.name + '.safetensors')))


def _run(net: torch.nn.Module, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    with torch.inference_mode():
        return {k: v.numpy() for k, v in net(x).items()}


def test_default_files_are_the_shipped_ones_and_match_the_manifest():
    assert default_prefix(PALM_DEFAULT_NAME) == PREFIX
    manifest = json.loads(PREFIX.with_name(PREFIX.name + '.manifest.json').read_text())
    for suffix in ('.safetensors', '.graph.json'):
        path = PREFIX.with_name(PREFIX.name + suffix)
        assert manifest['files'][path.name]['sha256'] == _sha256(path), f'{path.name} differs from its manifest'
        assert manifest['files'][path.name]['bytes'] == path.stat().st_size
    source = manifest['source']
    assert source['wheel'] == 'mediapipe' and source['version'] == '0.10.21'
    assert source['file'] == 'mediapipe/modules/palm_detection/palm_detection_full.tflite'
    assert manifest['licence'] == 'Apache-2.0'
    assert manifest['attribution'] == 'MediaPipe Hands palm detection model, Google LLC, Apache-2.0'
    assert manifest['command'].startswith('.venv/bin/python -m tools.mediapipe_landmarks.convert --tflite ')
    assert manifest['command'].endswith('palm_detection_full.tflite --out-prefix models/mp_palm_detection_full')
    licence = MODELS / manifest['licence_file']['path']
    assert _sha256(licence) == manifest['licence_file']['sha256']
    assert 1_050_000 < manifest['parameters'] < 1_200_000


def test_every_weight_is_used_and_none_is_missing(model):
    graph, weights = _files()
    assert graph_constant_keys(graph) == set(weights)
    assert model.used_keys == set(weights)
    types = {op['type'] for op in graph['ops']}
    assert types == {
        'DEQUANTIZE',
        'CONV_2D',
        'PRELU',
        'ADD',
        'DEPTHWISE_CONV_2D',
        'MAX_POOL_2D',
        'RESHAPE',
        'PAD',
        'RESIZE_BILINEAR',
        'CONCATENATION',
    }
    assert model.input_size == (PALM_INPUT_SIZE, PALM_INPUT_SIZE) and model.num_anchors == 2016
    roles = graph['output_roles']
    assert (roles['regressors']['name'], roles['regressors']['shape']) == ('Identity', [1, 2016, 18])
    assert (roles['scores']['name'], roles['scores']['shape']) == ('Identity_1', [1, 2016, 1])


def test_an_unused_or_missing_weight_or_the_wrong_graph_is_refused():
    graph, weights = _files()
    with pytest.raises(ValueError, match='not used by the graph'):
        MediaPipePalmNet(graph, {**weights, 'extra': torch.zeros(1)})
    first = sorted(weights)[0]
    with pytest.raises(ValueError, match=f'lacks {first}'):
        MediaPipePalmNet(graph, {k: v for k, v in weights.items() if k != first})
    with pytest.raises(ValueError, match='graph lacks outputs'):
        MediaPipeLandmarkNet(graph, weights)


def test_matches_the_original_tflite_outputs(model):
    with np.load(REFERENCE) as data:
        ref = {k: data[k] for k in data.files}
    cell = PALM_INPUT_SIZE // ref['patterns'].shape[1]
    images = np.repeat(np.repeat(ref['patterns'], cell, axis=1), cell, axis=2).astype(np.float32) / 255.0
    out = _run(model, images)
    assert out['regressors'].shape == (2, 2016, 18) and out['scores'].shape == (2, 2016)
    assert out['regressors'].dtype == np.float32 and out['scores'].dtype == np.float32
    np.testing.assert_allclose(out['scores'], ref['scores'], rtol=0, atol=TOLERANCE['scores'])
    picked = out['regressors'][:, ref['anchors']]
    np.testing.assert_allclose(picked, ref['regressors'], rtol=0, atol=TOLERANCE['regressors'])


def test_batch_of_two_equals_two_single_runs_and_both_layouts_agree(model):
    images = torch.rand(2, PALM_INPUT_SIZE, PALM_INPUT_SIZE, 3, generator=torch.Generator().manual_seed(5))
    both = _run(model, images)
    for i in range(2):
        one = _run(model, images[i : i + 1])
        for key, value in one.items():
            np.testing.assert_allclose(both[key][i : i + 1], value, rtol=0, atol=TOLERANCE[key] / 10, err_msg=key)
    nchw = _run(model, images.permute(0, 3, 1, 2))
    for key, value in both.items():
        np.testing.assert_allclose(nchw[key], value, rtol=0, atol=TOLERANCE[key] / 10, err_msg=key)


@pytest.mark.parametrize(
    'shape, dtype, message',
    [
        ((192, 192, 3), torch.float32, 'must have shape'),
        ((1, 193, 192, 3), torch.float32, 'must have shape'),
        ((1, 224, 224, 3), torch.float32, 'must have shape'),  # the landmark network's size
        ((1, 192, 192, 4), torch.float32, 'must have shape'),
        ((1, 4, 192, 192), torch.float32, 'must have shape'),
        ((1, 192, 192, 3), torch.uint8, 'float RGB'),
    ],
)
def test_bad_inputs_raise_value_error(model, shape, dtype, message):
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape, dtype=dtype))


def test_not_a_tensor_and_missing_files_are_refused(model, tmp_path):
    with pytest.raises(ValueError, match='torch.Tensor'):
        model(np.zeros((1, 192, 192, 3), dtype=np.float32))
    with pytest.raises(FileNotFoundError):
        load_palm_model(tmp_path / 'nothing')


def test_the_converter_names_the_shipped_outputs_and_source():
    pytest.importorskip('tflite')
    from tools.mediapipe_landmarks import convert

    for name in ('mp_palm_detection_full', 'mp_hand_landmark_full'):
        graph = json.loads((MODELS / f'{name}.graph.json').read_text())
        assert convert._output_roles(graph) == graph['output_roles'], name
    wheel = Path('/x/lib/python3.11/site-packages/mediapipe/modules/palm_detection/palm_detection_full.tflite')
    assert convert._file_in_wheel(wheel) == 'mediapipe/modules/palm_detection/palm_detection_full.tflite'
    assert 'palm detection' in convert._attribution(convert._file_in_wheel(wheel))


# ------------------------------------------------------------------------------------------------------------------
# RESIZE_BILINEAR (both sampling rules) and PRELU (per-channel fast path and the general broadcast) on a small
# synthetic detector graph, against straightforward NHWC numpy implementations of TFLite's semantics.


def _resize_matrix(size_in: int, size_out: int, align_corners: bool) -> np.ndarray:
    """(out, in) weights of TFLite's 1-D bilinear sampling."""
    matrix = np.zeros((size_out, size_in))
    for o in range(size_out):
        if align_corners:
            src = o * (size_in - 1) / (size_out - 1)
        else:  # half-pixel centres
            src = (o + 0.5) * size_in / size_out - 0.5
        low = int(np.floor(src))
        frac = src - low
        matrix[o, min(max(low, 0), size_in - 1)] += 1 - frac
        matrix[o, min(max(low + 1, 0), size_in - 1)] += frac
    return matrix


def _np_resize(x: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    rows = _resize_matrix(x.shape[1], size, align_corners)
    cols = _resize_matrix(x.shape[2], size, align_corners)
    return np.einsum('oh,nhwc,pw->nopc', rows, x, cols)


def _synthetic_palm() -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[int, np.ndarray]]:
    rng = np.random.default_rng(3)
    consts: dict[int, np.ndarray] = {
        1: rng.normal(0, 0.1, (4, 16, 16, 3)),  # 16x16 stride 16 VALID: 192 -> 12
        2: rng.normal(0, 0.1, 4),
        4: rng.normal(0, 0.5, (1, 1, 4)),  # per-channel PReLU slopes
        6: np.array([24, 24], dtype=np.int32),
        8: np.array([24, 24], dtype=np.int32),
        10: rng.normal(0, 0.5, (24, 24, 4)),  # per-pixel slopes: the general form
        13: rng.normal(0, 0.5, (36, 1, 1, 4)),
        14: rng.normal(0, 0.1, 36),
        16: np.array([1, -1, 18], dtype=np.int32),
        18: rng.normal(0, 0.5, (2, 1, 1, 4)),
        19: rng.normal(0, 0.1, 2),
        21: np.array([1, -1, 1], dtype=np.int32),
    }
    shapes = {0: [1, 192, 192, 3], 3: [1, 12, 12, 4], 5: [1, 12, 12, 4], 7: [1, 24, 24, 4], 9: [1, 24, 24, 4]}
    shapes |= {11: [1, 24, 24, 4], 12: [1, 24, 24, 4], 15: [1, 24, 24, 36], 17: [1, 1152, 18]}
    shapes |= {20: [1, 24, 24, 2], 22: [1, 1152, 1]}
    tensors = []
    for tid in range(23):
        entry: dict[str, Any] = {'id': tid, 'name': f't{tid}', 'shape': shapes.get(tid, [])}
        if tid in consts:
            entry['shape'] = list(consts[tid].shape)
            entry['constant'] = f'k{tid:02d}'
        tensors.append(entry)
    conv = {'dilation_h': 1, 'dilation_w': 1, 'activation': 'NONE'}
    ops = [
        ('CONV_2D', [0, 1, 2], 3, {**conv, 'padding': 'VALID', 'stride_h': 16, 'stride_w': 16}),
        ('PRELU', [3, 4], 5, {}),
        ('RESIZE_BILINEAR', [5, 6], 7, {'align_corners': False, 'half_pixel_centers': True}),
        ('RESIZE_BILINEAR', [5, 8], 9, {'align_corners': True, 'half_pixel_centers': False}),
        ('PRELU', [9, 10], 11, {}),
        ('ADD', [7, 11], 12, {'activation': 'NONE'}),
        ('CONV_2D', [12, 13, 14], 15, {**conv, 'padding': 'SAME', 'stride_h': 1, 'stride_w': 1}),
        ('RESHAPE', [15, 16], 17, {}),
        ('CONV_2D', [12, 18, 19], 20, {**conv, 'padding': 'SAME', 'stride_h': 1, 'stride_w': 1}),
        ('RESHAPE', [20, 21], 22, {}),
    ]
    graph = {
        'format': 'hand_recon_ros.tflite_graph/1',
        'inputs': [0],
        'outputs': [17, 22],
        'tensors': tensors,
        'ops': [
            {'index': i, 'type': t, 'inputs': a, 'outputs': [o], 'options': p} for i, (t, a, o, p) in enumerate(ops)
        ],
        'output_roles': {'regressors': {'tensor': 17}, 'scores': {'tensor': 22}},
    }
    weights = {
        f'k{t:02d}': torch.from_numpy(v.astype(np.float32) if v.dtype.kind == 'f' else v) for t, v in consts.items()
    }
    return graph, weights, consts


def _np_synthetic_palm(x: np.ndarray, c: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    patches = x.reshape(x.shape[0], 12, 16, 12, 16, 3)
    y = np.einsum('nhiwjc,oijc->nhwo', patches, c[1]) + c[2]
    y = np.where(y >= 0, y, y * c[4])
    half = _np_resize(y, 24, align_corners=False)
    corners = _np_resize(y, 24, align_corners=True)
    y = half + np.where(corners >= 0, corners, corners * c[10])
    regressors = np.einsum('nhwc,oc->nhwo', y, c[13][:, 0, 0]) + c[14]
    scores = np.einsum('nhwc,oc->nhwo', y, c[18][:, 0, 0]) + c[19]
    return {'regressors': regressors.reshape(x.shape[0], -1, 18), 'scores': scores.reshape(x.shape[0], -1)}


def test_resize_bilinear_and_prelu_follow_tflite_semantics():
    graph, weights, consts = _synthetic_palm()
    net = MediaPipePalmNet(graph, weights).eval()
    assert net.num_anchors == 1152
    fast = [s['prelu_weight'] is not None for s in net.steps if s['type'] == 'PRELU']
    assert fast == [True, False]
    images = np.random.default_rng(1).random((2, 192, 192, 3)).astype(np.float32)
    out = _run(net, images)
    expected = _np_synthetic_palm(images.astype(np.float64), {k: v.astype(np.float64) for k, v in consts.items()})
    for key, value in expected.items():
        np.testing.assert_allclose(out[key], value, rtol=1e-4, atol=1e-4, err_msg=key)


@pytest.mark.parametrize(
    'change, error, message',
    [
        ({'align_corners': False, 'half_pixel_centers': False}, NotImplementedError, 'without align_corners'),
        ({'align_corners': True, 'half_pixel_centers': True}, ValueError, 'both align_corners'),
    ],
)
def test_unsupported_resize_rules_are_refused(change, error, message):
    graph, weights, _ = _synthetic_palm()
    graph['ops'][2]['options'] = change
    with pytest.raises(error, match=message):
        MediaPipePalmNet(graph, weights)


def test_a_resize_whose_size_disagrees_with_its_output_is_refused():
    graph, weights, _ = _synthetic_palm()
    weights['k06'] = torch.tensor([24, 23], dtype=torch.int32)
    with pytest.raises(ValueError, match='size'):
        MediaPipePalmNet(graph, weights)
