"""The network as frozen TorchScript graphs (acr/traced.py): same maps as eager PyTorch, one graph per input
shape, and eager PyTorch whenever a graph cannot be trusted."""

import numpy as np
import pytest
import torch
from torch import nn

from hand_recon_ros.acr.factory import create_model
from hand_recon_ros.acr.traced import TracedNetwork, check_graph_outputs
from hand_recon_ros.pipeline import create_reconstructor

from conftest import small_untrained_config


@pytest.fixture(scope='module')
def network():
    torch.set_num_threads(1)
    model = create_model('efficientnet_lite0', seed=3, input_size=64).eval()
    return model.to(memory_format=torch.channels_last)


def frame(seed, batch=1, size=64):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last)


def assert_maps_close(got, want, atol, rtol):
    assert set(got) == set(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        torch.testing.assert_close(got[key].float(), want[key].float(), atol=atol, rtol=rtol, msg=key)


@torch.inference_mode()
def test_float32_graph_gives_the_eager_maps_on_a_new_input(network):
    runner = TracedNetwork(network, None)
    runner(frame(0))  # traces on its own seeded inputs, not on this frame
    assert runner.mode == 'traced' and runner.graphs_traced == 1 and runner.fallback_reason == ''
    x = frame(11)
    assert_maps_close(runner(x), network(x), atol=1e-4, rtol=1e-4)
    assert runner.graphs_traced == 1  # the same shape reuses its graph


@torch.inference_mode()
def test_bf16_graph_keeps_the_autocast_precision(network):
    runner = TracedNetwork(network, torch.bfloat16)
    x = frame(5)
    got = runner(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        want = network(x)
    assert runner.mode == 'traced'
    assert got['center_maps'].dtype == want['center_maps'].dtype == torch.bfloat16
    for key in want:
        scale = float(want[key].float().abs().max()) + 1.0
        assert float((got[key].float() - want[key].float()).abs().max()) <= 0.05 * scale, key


@torch.inference_mode()
def test_one_graph_per_input_shape_and_the_oldest_dropped(network):
    runner = TracedNetwork(network, None, max_graphs=2)
    for batch, size in ((1, 64), (2, 64), (1, 96)):
        x = frame(batch, batch, size)
        assert_maps_close(runner(x), network(x), atol=1e-4, rtol=1e-4)
    assert runner.graphs_traced == 3
    assert [key[:4] for key in runner.cached_shapes] == [(2, 3, 64, 64), (1, 3, 96, 96)]


@torch.inference_mode()
def test_disabled_runs_eager_pytorch(network):
    runner = TracedNetwork(network, None, enabled=False)
    x = frame(2)
    out = runner(x)
    assert runner.mode == 'eager' and runner.graphs_traced == 0 and runner.cached_shapes == []
    for key, value in network(x).items():
        assert torch.equal(out[key], value)


@torch.inference_mode()
def test_a_failing_trace_falls_back_to_eager(network, monkeypatch):
    def broken_trace(*args, **kwargs):
        raise RuntimeError('tracer exploded')

    monkeypatch.setattr(torch.jit, 'trace', broken_trace)
    runner = TracedNetwork(network, None)
    x = frame(4)
    out = runner(x)
    assert runner.mode == 'eager' and 'tracer exploded' in runner.fallback_reason
    for key, value in network(x).items():
        assert torch.equal(out[key], value)


class BakesAValue(nn.Module):
    """Reads a number out of its input in Python: a trace keeps the first input's number as a constant."""

    def forward(self, images):
        scale = float(images.abs().max())
        return {'center_maps': images * scale}


@torch.inference_mode()
def test_a_graph_that_baked_in_an_input_value_is_caught_and_not_used():
    module = BakesAValue().eval()
    runner = TracedNetwork(module, None)
    x = frame(8)
    out = runner(x)
    assert runner.mode == 'eager' and 'does not match eager' in runner.fallback_reason
    assert torch.equal(out['center_maps'], module(x)['center_maps'])


def test_check_graph_outputs_names_what_differs():
    want = {'a': torch.ones(2, 3), 'b': torch.zeros(4)}
    assert check_graph_outputs({'a': torch.ones(2, 3) + 1e-4, 'b': torch.zeros(4)}, want, 1e-3) is None
    assert "'b'" in check_graph_outputs({'a': torch.ones(2, 3)}, want, 1e-3)
    assert 'shape' in check_graph_outputs({'a': torch.ones(3, 2), 'b': torch.zeros(4)}, want, 1e-3)
    assert 'differs' in check_graph_outputs({'a': torch.ones(2, 3) * 1.1, 'b': torch.zeros(4)}, want, 1e-3)
    nan = {'a': torch.full((2, 3), float('nan')), 'b': torch.zeros(4)}
    assert 'not finite' in check_graph_outputs(nan, want, 1e-3)


def test_pipeline_hands_match_with_and_without_the_graph():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    results = {}
    for trace in (True, False):
        config = small_untrained_config(detection_threshold=0.0, trace_network=trace)
        reconstructor = create_reconstructor(config)
        assert reconstructor.info()['network_runner'] == ('traced' if trace else 'eager')
        results[trace] = reconstructor.reconstruct(image)
        if trace:  # traced at start-up for one camera: the frame reused that graph
            assert reconstructor.network_runner.graphs_traced == 1
    traced, eager = results[True].hands, results[False].hands
    assert len(traced) == len(eager) > 0
    for a, b in zip(traced, eager):
        assert a.handedness == b.handedness and a.score == pytest.approx(b.score, abs=1e-4)
        assert np.abs(a.joints_3d - b.joints_3d).max() < 1e-4
        assert np.abs(a.keypoints_2d - b.keypoints_2d).max() < 1e-2
