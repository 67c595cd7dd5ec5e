"""The PyTorch port of MediaPipe's hand landmark network: shipped files, parity with the original, op semantics.

test/data/mp_landmark_reference.npz holds the ORIGINAL .tflite's outputs (LiteRT interpreter, written by
``tools/mediapipe_landmarks/parity.py --write-reference``) for two seeded inputs. The fp32 port measured against that
interpreter on 18 inputs (random, real hand crops, these two) differs by at most 1.4e-4 px in x/y, 1.3e-4 px in z,
4.6e-4 mm in world landmarks and 3.5e-6 in the probabilities. The tolerances below are about 20-40x those figures:
tight enough that any wrong op, weight or layout fails by orders of magnitude (a flipped padding side moves landmarks
by pixels), loose enough for other CPUs' float32 summation order.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hand_recon_ros.landmarks import HANDEDNESS_MEANING, MediaPipeLandmarkNet, load_landmark_model
from hand_recon_ros.landmarks.mediapipe_port import default_prefix, graph_constant_keys

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / 'models'
PREFIX = MODELS / 'mp_hand_landmark_full'
REFERENCE = Path(__file__).resolve().parent / 'data' / 'mp_landmark_reference.npz'
TOLERANCE = {'landmarks': 5e-3, 'world_landmarks': 2e-5, 'presence': 1e-4, 'handedness': 1e-4}


@pytest.fixture(scope='module')
def model() -> MediaPipeLandmarkNet:
    torch.manual_seed(0)
    return load_landmark_model()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(net: torch.nn.Module, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    with torch.inference_mode():
        return {k: v.numpy() for k, v in net(x).items()}


def test_default_files_are_the_shipped_ones_and_match_the_manifest():
    assert default_prefix() == PREFIX
    manifest = json.loads(PREFIX.with_name(PREFIX.name + '.manifest.json').read_text())
    for suffix in ('.safetensors', '.graph.json'):
        path = PREFIX.with_name(PREFIX.name + suffix)
        assert manifest['files'][path.name]['sha256'] == _sha256(path), f'{path.name} differs from its manifest'
        assert manifest['files'][path.name]['bytes'] == path.stat().st_size
    assert manifest['source']['wheel'] == 'mediapipe' and manifest['source']['version'] == '0.10.21'
    assert manifest['licence'] == 'Apache-2.0'
    assert 'Google LLC' in manifest['attribution']
    assert manifest['command'].startswith('.venv/bin/python -m tools.mediapipe_landmarks.convert')
    licence = MODELS / manifest['licence_file']['path']
    assert _sha256(licence) == manifest['licence_file']['sha256']
    assert 'Apache License' in licence.read_text()
    assert 2_600_000 < manifest['parameters'] < 2_800_000


def test_every_weight_is_used_and_none_is_missing(model):
    graph = json.loads(PREFIX.with_name(PREFIX.name + '.graph.json').read_text())
    stored = set(load_file(str(PREFIX.with_name(PREFIX.name + '.safetensors'))))
    assert graph_constant_keys(graph) == stored
    assert model.used_keys == stored
    types = {op['type'] for op in graph['ops']}
    assert types == {'DEQUANTIZE', 'CONV_2D', 'DEPTHWISE_CONV_2D', 'ADD', 'MEAN', 'FULLY_CONNECTED', 'LOGISTIC'}


def test_an_unused_or_missing_weight_is_refused():
    graph = json.loads(PREFIX.with_name(PREFIX.name + '.graph.json').read_text())
    weights = load_file(str(PREFIX.with_name(PREFIX.name + '.safetensors')))
    with pytest.raises(ValueError, match='not used by the graph'):
        MediaPipeLandmarkNet(graph, {**weights, 'extra': torch.zeros(1)})
    first = sorted(weights)[0]
    with pytest.raises(ValueError, match=f'lacks {first}'):
        MediaPipeLandmarkNet(graph, {k: v for k, v in weights.items() if k != first})


def test_matches_the_original_tflite_outputs(model):
    with np.load(REFERENCE) as data:
        ref = {k: data[k] for k in data.files}
    cell = 224 // ref['patterns'].shape[1]
    images = np.repeat(np.repeat(ref['patterns'], cell, axis=1), cell, axis=2).astype(np.float32) / 255.0
    out = _run(model, images)
    for key, tol in TOLERANCE.items():
        assert out[key].shape == ref[key].shape, key
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=tol, err_msg=key)
    np.testing.assert_allclose(out['handedness'], 1.0 - ref['handedness_raw'], rtol=0, atol=1e-4)
    assert 'Right' in HANDEDNESS_MEANING and '1 - the raw' in HANDEDNESS_MEANING


def test_batch_of_two_equals_two_single_runs_and_both_layouts_agree(model):
    images = torch.rand(2, 224, 224, 3, generator=torch.Generator().manual_seed(5))
    both = _run(model, images)
    for i in range(2):
        one = _run(model, images[i : i + 1])
        for key, value in one.items():
            np.testing.assert_allclose(both[key][i : i + 1], value, rtol=0, atol=TOLERANCE[key] / 10, err_msg=key)
    nchw = _run(model, images.permute(0, 3, 1, 2))
    for key, value in both.items():
        np.testing.assert_allclose(nchw[key], value, rtol=0, atol=TOLERANCE[key] / 10, err_msg=key)
    assert both['landmarks'].shape == (2, 21, 3) and both['world_landmarks'].shape == (2, 21, 3)
    assert both['presence'].shape == (2,) and both['handedness'].shape == (2,)
    assert ((both['presence'] >= 0) & (both['presence'] <= 1)).all()


@pytest.mark.parametrize(
    'shape, dtype, message',
    [
        ((224, 224, 3), torch.float32, 'must have shape'),
        ((1, 225, 224, 3), torch.float32, 'must have shape'),
        ((1, 224, 224, 4), torch.float32, 'must have shape'),
        ((1, 4, 224, 224), torch.float32, 'must have shape'),
        ((1, 224, 224, 3), torch.uint8, 'float RGB'),
    ],
)
def test_bad_inputs_raise_value_error(model, shape, dtype, message):
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape, dtype=dtype))


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_landmark_model(tmp_path / 'nothing')


# ------------------------------------------------------------------------------------------------------------------
# Ops the shipped graph does not use (PAD, pools, MUL, depth multiplier, CONCATENATION, HARD_SWISH, RESHAPE) on a
# small synthetic graph, against straightforward NHWC numpy implementations of TFLite's semantics.


def _same(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, k: int, s: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """SAME-padded sliding windows of an NHWC array: (values (N, Ho, Wo, k*k, C), valid mask (Ho, Wo, k*k, 1))."""
    (t, b), (le, r) = _same(x.shape[1], k, s), _same(x.shape[2], k, s)
    padded = np.pad(x, ((0, 0), (t, b), (le, r), (0, 0)), constant_values=fill)
    valid = np.pad(np.ones(x.shape[1:3]), ((t, b), (le, r)))
    ho, wo = -(-x.shape[1] // s), -(-x.shape[2] // s)
    vals = [padded[:, i : i + s * ho : s, j : j + s * wo : s] for i in range(k) for j in range(k)]
    mask = [valid[i : i + s * ho : s, j : j + s * wo : s] for i in range(k) for j in range(k)]
    return np.stack(vals, axis=3), np.stack(mask, axis=2)[..., None]


def _np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, s: int) -> np.ndarray:
    vals, _ = _windows(x, w.shape[1], s, 0.0)  # (N, Ho, Wo, k*k, I)
    return np.einsum('nhwki,oki->nhwo', vals, w.reshape(w.shape[0], -1, w.shape[3])) + b


def _np_depthwise(x: np.ndarray, w: np.ndarray, b: np.ndarray, multiplier: int) -> np.ndarray:
    vals, _ = _windows(np.repeat(x, multiplier, axis=-1), w.shape[1], 1, 0.0)
    return np.einsum('nhwkc,kc->nhwc', vals, w.reshape(-1, w.shape[3])) + b


def _synthetic() -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    consts: dict[int, np.ndarray] = {
        1: rng.normal(0, 0.3, (4, 3, 3, 3)),
        2: rng.normal(0, 0.1, 4),
        4: np.array([[0, 0], [1, 2], [0, 1], [0, 0]], dtype=np.int32),
        8: rng.normal(1, 0.5, 4),
        10: rng.normal(0, 0.3, (1, 3, 3, 8)),
        11: rng.normal(0, 0.1, 8),
        16: np.array([1, -1], dtype=np.int32),
    }
    flat = 29 * 29 * 12
    heads = {'landmarks': (17, 63), 'world_landmarks': (20, 63), 'presence': (23, 1), 'handedness': (27, 1)}
    for tid, rows in heads.values():
        consts[tid] = rng.normal(0, 0.01, (rows, flat))
        consts[tid + 1] = rng.normal(0, 0.1, rows)
    shapes = {0: [1, 224, 224, 3], 3: [1, 112, 112, 4], 5: [1, 115, 113, 4], 6: [1, 58, 57, 4], 7: [1, 29, 29, 4]}
    shapes |= {9: [1, 29, 29, 4], 12: [1, 29, 29, 8], 13: [1, 29, 29, 12], 14: [1, 29, 29, 12], 15: [1, flat]}
    shapes |= {19: [1, 63], 22: [1, 63], 25: [1, 1], 26: [1, 1], 29: [1, 1], 30: [1, 1]}
    tensors = []
    for tid in range(31):
        entry: dict[str, Any] = {
            'id': tid,
            'name': f't{tid}',
            'shape': list(consts[tid].shape) if tid in consts else [],
        }
        if tid in shapes:
            entry['shape'] = shapes[tid]
        if tid in consts:
            entry['constant'] = f'k{tid:02d}'
        tensors.append(entry)
    conv = {'padding': 'SAME', 'dilation_h': 1, 'dilation_w': 1}
    pool = {'padding': 'SAME', 'stride_h': 2, 'stride_w': 2, 'filter_h': 3, 'filter_w': 3, 'activation': 'NONE'}
    ops = [
        ('CONV_2D', [0, 1, 2], 3, {**conv, 'stride_h': 2, 'stride_w': 2, 'activation': 'RELU6'}),
        ('PAD', [3, 4], 5, {}),
        ('MAX_POOL_2D', [5], 6, pool),
        ('AVERAGE_POOL_2D', [6], 7, pool),
        ('MUL', [7, 8], 9, {'activation': 'NONE'}),
        ('DEPTHWISE_CONV_2D', [9, 10, 11], 12, {**conv, 'stride_h': 1, 'stride_w': 1, 'activation': 'RELU'}),
        ('CONCATENATION', [12, 9], 13, {'axis': -1, 'activation': 'NONE'}),
        ('HARD_SWISH', [13], 14, {}),
        ('RESHAPE', [14, 16], 15, {'new_shape': [1, -1]}),
    ]
    for tid, _ in heads.values():
        ops.append(('FULLY_CONNECTED', [15, tid, tid + 1], tid + 2, {'activation': 'NONE'}))
    ops += [('LOGISTIC', [25], 26, {}), ('LOGISTIC', [29], 30, {})]
    graph = {
        'format': 'hand_recon_ros.tflite_graph/1',
        'inputs': [0],
        'outputs': [19, 26, 30, 22],
        'tensors': tensors,
        'ops': [
            {'index': i, 'type': t, 'inputs': a, 'outputs': [o], 'options': p} for i, (t, a, o, p) in enumerate(ops)
        ],
        'output_roles': {
            'landmarks': {'tensor': 19, 'after_dense': []},
            'world_landmarks': {'tensor': 22, 'after_dense': []},
            'presence': {'tensor': 26, 'after_dense': ['LOGISTIC']},
            'handedness': {'tensor': 30, 'after_dense': ['LOGISTIC']},
        },
    }
    weights = {
        f'k{t:02d}': torch.from_numpy(v.astype(np.float32) if v.dtype.kind == 'f' else v) for t, v in consts.items()
    }
    return graph, weights, {f'{t}': v.astype(np.float64) for t, v in consts.items()}


def _np_synthetic(x: np.ndarray, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    y = np.clip(_np_conv(x, c['1'], c['2'], 2), 0, 6)
    y = np.pad(y, c['4'].astype(int))
    vals, _ = _windows(y, 3, 2, -np.inf)
    y = vals.max(axis=3)
    vals, mask = _windows(y, 3, 2, 0.0)
    y = vals.sum(axis=3) / mask.sum(axis=2)
    y = y * c['8']
    z = np.maximum(_np_depthwise(y, c['10'], c['11'], 2), 0)
    y = np.concatenate([z, y], axis=-1)
    y = y * np.clip(y + 3, 0, 6) / 6
    flat = y.reshape(y.shape[0], -1)
    dense = {tid: flat @ c[str(tid)].T + c[str(tid + 1)] for tid in (17, 20, 23, 27)}
    return {
        'landmarks': dense[17].reshape(-1, 21, 3),
        'world_landmarks': dense[20].reshape(-1, 21, 3),
        'presence': 1 / (1 + np.exp(-dense[23][:, 0])),
        'handedness': 1 - 1 / (1 + np.exp(-dense[27][:, 0])),
    }


def test_ops_outside_the_shipped_graph_follow_tflite_semantics():
    graph, weights, consts = _synthetic()
    net = MediaPipeLandmarkNet(graph, weights).eval()
    images = np.random.default_rng(1).random((2, 224, 224, 3)).astype(np.float32)
    out = _run(net, images)
    expected = _np_synthetic(images.astype(np.float64), consts)
    for key, value in expected.items():
        np.testing.assert_allclose(out[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
