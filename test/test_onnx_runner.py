"""The onnxruntime runner of the crop stage's landmark network: same answers as PyTorch (and as MediaPipe's own
TFLite graph), an export cached per weights, and a clear refusal wherever it cannot run (the caller keeps PyTorch)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hand_recon_ros import onnx_runner
from hand_recon_ros.landmarks import load_landmark_model
from hand_recon_ros.landmarks.crop_stage import CropStage
from hand_recon_ros.onnx_runner import OnnxRunner, OnnxRunnerError, check_runtime, resolve_runtime

pytest.importorskip('onnxruntime')

REFERENCE = Path(__file__).resolve().parent / 'data' / 'mp_landmark_reference.npz'
# as test_mediapipe_landmarks.py: ~20-40x the fp32 port's distance to the original TFLite interpreter
TFLITE_TOLERANCE = {'landmarks': 5e-3, 'world_landmarks': 2e-5, 'presence': 1e-4, 'handedness': 1e-4}


class SmallNet(nn.Module):
    """A few convolutions with a dict of outputs, like the crop networks (quick to export)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.depthwise(torch.relu(self.conv(x.permute(0, 3, 1, 2)))))
        pooled = y.mean((2, 3))
        return {'points': self.head(pooled).reshape(-1, 2, 2), 'score': torch.sigmoid(pooled[:, 0])}


class CountingNet(SmallNet):
    """Scales its output by how often Python called it: an export bakes one call's count in, so it cannot match."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = super().forward(x)
        return {k: v * self.calls for k, v in out.items()}


class Zeta(SmallNet):
    """Uses an operator ONNX has no counterpart for."""

    def forward(self, x):
        out = super().forward(x)
        return {'points': torch.special.zeta(out['points'].abs() + 2.0, torch.tensor(1.0)), 'score': out['score']}


@pytest.fixture(scope='module')
def landmark_net():
    return load_landmark_model()


@pytest.fixture(scope='module')
def landmark_runner(landmark_net):
    # the user cache, as the node uses it: exported once per machine (the cache itself is tested below)
    return OnnxRunner(landmark_net, (224, 224, 3), num_threads=1)


def test_the_landmark_network_under_onnxruntime_matches_the_original_tflite(landmark_runner):
    with np.load(REFERENCE) as data:
        ref = {k: data[k] for k in data.files}
    cell = 224 // ref['patterns'].shape[1]
    images = np.repeat(np.repeat(ref['patterns'], cell, axis=1), cell, axis=2).astype(np.float32) / 255.0
    out = {k: v.numpy() for k, v in landmark_runner(torch.from_numpy(images)).items()}
    for key, tol in TFLITE_TOLERANCE.items():
        assert out[key].shape == ref[key].shape, key
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=tol, err_msg=key)


def test_a_batch_runs_item_by_item_with_pytorchs_answers(landmark_net, landmark_runner):
    crops = torch.rand(3, 224, 224, 3, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = landmark_net(crops)
    got = landmark_runner(crops)
    assert set(got) == set(ref)
    for key in ref:
        assert got[key].dtype == torch.float32 and got[key].shape == ref[key].shape
        np.testing.assert_allclose(got[key].numpy(), ref[key].numpy(), rtol=0, atol=1e-3, err_msg=key)
    empty = landmark_runner(torch.zeros(0, 224, 224, 3))
    assert {k: tuple(v.shape) for k, v in empty.items()} == {k: (0, *v.shape[1:]) for k, v in ref.items()}
    with pytest.raises(ValueError, match=r'\(B, 224, 224, 3\)'):
        landmark_runner(torch.zeros(1, 3, 224, 224))


def test_the_export_is_cached_per_weights_and_a_corrupt_file_is_exported_again(tmp_path):
    x = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    first = OnnxRunner(SmallNet(), (32, 32, 3), cache=tmp_path)
    assert first.source == 'export' and first.path is not None and first.path.is_file() and first.cache_note == ''
    again = OnnxRunner(SmallNet(), (32, 32, 3), cache=tmp_path)
    assert again.source == 'cache' and again.path == first.path
    for key, value in first(x).items():
        assert torch.equal(again(x)[key], value)
    other = OnnxRunner(SmallNet(seed=1), (32, 32, 3), cache=tmp_path)  # other weights: their own graph
    assert other.source == 'export' and other.path != first.path
    first.path.write_bytes(b'not an onnx graph')
    repaired = OnnxRunner(SmallNet(), (32, 32, 3), cache=tmp_path)
    assert repaired.source == 'export'
    assert OnnxRunner(SmallNet(), (32, 32, 3), cache=tmp_path).source == 'cache'  # the file was written again


def test_no_cache_directory_still_runs(tmp_path):
    runner = OnnxRunner(SmallNet(), (32, 32, 3), cache=False)
    assert runner.source == 'export' and runner.path is None and runner.cache_note == 'no cache directory'
    assert list(tmp_path.iterdir()) == []
    unwritable = tmp_path / 'file'
    unwritable.write_text('a file where the cache folder would be')
    runner = OnnxRunner(SmallNet(), (32, 32, 3), cache=unwritable)
    assert runner.source == 'export' and runner.cache_note.startswith('not cached:')


def test_a_graph_that_does_not_match_pytorch_is_refused(tmp_path):
    with pytest.raises(OnnxRunnerError, match="output 'points' differs from PyTorch"):
        OnnxRunner(CountingNet(), (32, 32, 3), cache=tmp_path)


def test_a_module_the_exporter_cannot_record_is_refused_with_the_reason(tmp_path):
    with pytest.raises(OnnxRunnerError, match='export failed: ConversionError') as refused:
        OnnxRunner(Zeta(), (32, 32, 3), cache=tmp_path)
    assert '\x1b' not in str(refused.value)  # the exporter's terminal colours are not in a log line
    assert list(tmp_path.iterdir()) == []


def test_auto_picks_onnxruntime_only_where_the_network_runs_fp32_on_the_cpu(monkeypatch):
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert resolve_runtime('auto', cpu, None) == 'onnxruntime'
    assert resolve_runtime('auto', cpu, torch.bfloat16) == 'torch'  # native bf16: PyTorch's ground
    assert resolve_runtime('auto', cuda, None) == 'torch'
    assert resolve_runtime('torch', cpu, None) == 'torch'
    assert resolve_runtime('onnxruntime', cuda, None) == 'onnxruntime'  # asked for: runs on the CPU
    monkeypatch.setattr(onnx_runner, 'onnxruntime_available', lambda: False)
    assert resolve_runtime('auto', cpu, None) == 'torch'
    with pytest.raises(ValueError, match='auto, torch, onnxruntime'):
        check_runtime('tensorrt')


def test_the_crop_stage_reads_the_same_hands_under_onnxruntime(landmark_net, landmark_runner):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    wrist, tip = np.array([160.0, 200.0]), np.array([160.0, 150.0])
    hand = wrist + (tip - wrist) * np.linspace(0.0, 1.0, 21)[:, None] + rng.normal(0.0, 4.0, (21, 2))
    torch_stage, onnx_stage = CropStage(landmark_net), CropStage(landmark_net, runner=landmark_runner)
    torch_answer, onnx_answer = torch_stage.run(image, [hand])[0], onnx_stage.run(image, [hand])[0]
    assert onnx_stage.crops_run == torch_stage.crops_run > 1  # noise: the turned retries ran too
    assert abs(onnx_answer.presence - torch_answer.presence) < 1e-4
    np.testing.assert_allclose(onnx_answer.keypoints_2d, torch_answer.keypoints_2d, atol=0.05)
    np.testing.assert_allclose(onnx_answer.world_landmarks, torch_answer.world_landmarks, atol=1e-4)


def test_the_pipeline_keeps_pytorch_where_onnxruntime_fails(monkeypatch, caplog):
    import dataclasses
    import logging

    from hand_recon_ros import pipeline
    from hand_recon_ros.pipeline import create_reconstructor

    from conftest import small_untrained_config

    def refuse(*args, **kwargs):
        raise OnnxRunnerError('export failed: refused by this test')

    config = small_untrained_config(
        trace_network=False, landmarks=True, landmark_palms=False, landmark_runtime='onnxruntime'
    )
    monkeypatch.setattr(pipeline, 'OnnxRunner', refuse)
    with caplog.at_level(logging.WARNING, logger=pipeline.LOG.name):
        refused = create_reconstructor(config)
    assert refused.info()['landmark_runner'] == 'torch' and refused.landmark_stage().runner is None
    assert 'the landmark network runs in PyTorch: export failed: refused by this test' in caplog.text
    monkeypatch.undo()
    asked = create_reconstructor(config)
    assert asked.info()['landmark_runner'] == 'onnxruntime' and isinstance(asked.landmark_stage().runner, OnnxRunner)
    torch_only = create_reconstructor(dataclasses.replace(config, landmark_runtime='torch'))
    assert torch_only.info()['landmark_runner'] == 'torch' and torch_only.landmark_runner_note == ''
    with pytest.raises(ValueError, match='runtime must be one of'):
        create_reconstructor(dataclasses.replace(config, landmark_runtime='tensorrt'))
