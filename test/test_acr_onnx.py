"""ONNX export + onnxruntime parity, and safetensors/JSON weights (round trip, architecture checks, corrupt files)."""

import json

import pytest
import torch

from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.acr.network import ACRNet, build_acr
from hand_recon_ros.acr.onnx_model import OUTPUT_NAMES, OnnxACR, export_onnx
from hand_recon_ros.acr.weights import load_acr, load_acr_config, load_state_dict_into, save_acr

SIZE = 96


def _net(**overrides) -> ACRNet:
    torch.manual_seed(0)
    net = build_acr('acr_light', input_size=SIZE, **overrides).eval()
    with torch.no_grad():  # non-trivial fusion and BN statistics, so parity checks see every branch
        for conv in net.fusion.convs:
            conv.weight.normal_(std=0.05)
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net


def _images(batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_onnx_export_matches_torch(tmp_path):
    net = _net()
    result = export_onnx(net, tmp_path / 'acr.onnx')
    assert result.exporter in ('dynamo', 'torchscript') and result.path.is_file() and result.opset == 18
    print(f'exporter used: {result.exporter} (fallback reason: {result.fallback_reason})')
    session = OnnxACR(result.path, num_threads=1, decode_config=DecodeConfig(threshold=0.0))
    images = _images()
    ort_out = session(images)
    with torch.inference_mode():
        torch_out = net(images)
    assert set(ort_out) == set(OUTPUT_NAMES)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(ort_out[name], torch_out[name], rtol=1e-4, atol=1e-4)
    _, ort_dets = session.forward_inference(images.numpy())
    _, torch_dets = net.forward_inference(images, DecodeConfig(threshold=0.0))
    assert [(d['side'], d['y'], d['x']) for d in ort_dets.to_list()] == [
        (d['side'], d['y'], d['x']) for d in torch_dets.to_list()
    ]
    torch.testing.assert_close(ort_dets.params, torch_dets.params, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='exported for 96x96'):
        session(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match=r'\(B, 3, S, S\)'):
        session(torch.zeros(3, SIZE, SIZE))


def test_torchscript_fallback_path_peak_mode(tmp_path):
    net = _net(center_attention='peak')
    result = export_onnx(net, tmp_path / 'peak.onnx', prefer_dynamo=False)
    assert result.exporter == 'torchscript' and result.fallback_reason is None
    ort_out = OnnxACR(result.path)(_images())
    with torch.inference_mode():
        torch_out = net(_images())
    assert ort_out['params'].shape == (1, 2, 109, SIZE // 8, SIZE // 8)
    torch.testing.assert_close(ort_out['params'], torch_out['params'], rtol=1e-4, atol=1e-4)


def test_onnx_runner_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxACR(tmp_path / 'missing.onnx')
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'not an onnx model')
    with pytest.raises(ValueError, match='onnxruntime cannot load'):
        OnnxACR(bad)
    with pytest.raises(TypeError, match='ACRNet'):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / 'x.onnx')


def test_weights_round_trip(tmp_path):
    net = _net(decode=DecodeConfig(threshold=0.25))
    weights, config_path = save_acr(net, tmp_path / 'w' / 'acr.safetensors', extra={'note': 'test'})
    document = json.loads(config_path.read_text())
    assert document['config']['backbone'] == 'resnet18' and document['config']['input_size'] == SIZE
    assert document['config']['decode']['threshold'] == 0.25 and document['num_params_per_hand'] == 109
    assert document['num_parameters'] == sum(p.numel() for p in net.parameters())
    header_len = int.from_bytes(weights.read_bytes()[:8], 'little')
    assert weights.read_bytes()[8 : 8 + header_len].startswith(b'{')  # a safetensors header, not a pickle
    loaded = load_acr(weights)
    assert loaded.config == net.config and not loaded.training
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.inference_mode():
        torch.testing.assert_close(loaded(_images())['params'], net(_images())['params'])
    config_path.unlink()  # config also lives in the metadata
    assert load_acr_config(weights) == net.config


def test_weights_architecture_mismatch_is_listed(tmp_path):
    weights, _ = save_acr(_net(), tmp_path / 'acr.safetensors')
    narrow = build_acr('acr_light', input_size=SIZE, head_channels=16)
    with pytest.raises(
        ValueError,
        match=r'shape mismatch\(es\).*hand_heads\.0\.cam\.body\.0\.weight: '
        r'file \(32, 34, 3, 3\) vs model \(16, 34, 3, 3\)',
    ):
        load_state_dict_into(narrow, weights)
    other = build_acr('acr_light', input_size=SIZE, feature_dim=64)
    with pytest.raises(ValueError, match='image_feature.proj.weight'):
        load_state_dict_into(other, weights)
    hrnet_like = build_acr('acr_light', input_size=SIZE)
    state = {k: v for k, v in hrnet_like.state_dict().items() if not k.startswith('fusion.')}
    state['extra.weight'] = torch.zeros(1)
    from safetensors.torch import save_file

    partial = tmp_path / 'partial.safetensors'
    save_file(state, str(partial))
    with pytest.raises(
        ValueError, match=r'4 missing key\(s\): fusion\.convs\.0\.bias.*1 unexpected key\(s\): ' r'extra\.weight'
    ):
        load_state_dict_into(hrnet_like, partial)
    # peak and softmax modes share every parameter: weights move between them
    load_state_dict_into(build_acr('acr_light', input_size=SIZE, center_attention='peak'), weights)


def test_corrupt_and_invalid_files(tmp_path):
    weights, config_path = save_acr(_net(), tmp_path / 'acr.safetensors')
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match='corrupt or not a safetensors file'):
        load_acr(weights)
    weights.write_bytes(b'\x80\x04garbage')  # e.g. a pickle
    with pytest.raises(ValueError, match='corrupt or not a safetensors file'):
        load_state_dict_into(build_acr('acr_light', input_size=SIZE), weights)
    config_path.write_text('{not json')
    with pytest.raises(ValueError, match='not valid JSON'):
        load_acr(weights)
    config_path.write_text(json.dumps({'architecture': 'acr', 'format_version': 99, 'config': {}}))
    with pytest.raises(ValueError, match='format_version 99'):
        load_acr(weights)
    config_path.unlink()
    with pytest.raises(ValueError, match='not a readable safetensors file'):
        load_acr(weights)
    with pytest.raises(FileNotFoundError):
        load_acr(tmp_path / 'nothing.safetensors')
    with pytest.raises(ValueError, match='.safetensors'):
        save_acr(_net(), tmp_path / 'acr.pt')
    with pytest.raises(TypeError, match='ACRNet'):
        save_acr(torch.nn.Linear(1, 1), tmp_path / 'x.safetensors')
