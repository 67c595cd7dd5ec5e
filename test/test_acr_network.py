"""ACR network: backbones, heads, aggregator, fusion, forward_inference, and the letterbox pre-processing."""

import math

import numpy as np
import pytest
import torch

from hand_recon_ros.acr.aggregator import (
    FusionLayer,
    LocallyConnected,
    PartAggregator,
    center_attention,
    spatial_softmax_pool,
)
from hand_recon_ros.acr.backbones import create_backbone, list_backbones, map_pretrained_state_dict
from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.acr.heads import coord_maps
from hand_recon_ros.acr.network import ACRConfig, build_acr
from hand_recon_ros.acr.preprocess import IMAGENET_MEAN, IMAGENET_STD, letterbox

SIZE = 128


@pytest.fixture(scope='module')
def light_net():
    torch.manual_seed(0)
    return build_acr('acr_light', input_size=SIZE).eval()


def _images(batch: int, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------ backbones


def test_registry_and_feature_interface():
    assert {'hrnet_w32', 'resnet50', 'resnet18'} <= set(list_backbones())
    with pytest.raises(ValueError, match='unknown backbone'):
        create_backbone('vit_huge')
    torch.manual_seed(0)
    net = create_backbone('resnet18').eval()
    with torch.inference_mode():
        feats = net(torch.zeros(1, 3, 96, 160))
    assert feats.shape == (1, net.out_channels, 24, 40) and net.stride == 4


def test_resnet_trunk_matches_torchvision_layout():
    torch.manual_seed(0)
    r18, r50 = create_backbone('resnet18'), create_backbone('resnet50')
    # torchvision ResNet parameter counts minus the 1000-class fc (11,689,512 and 25,557,032)
    assert sum(p.numel() for p in r18.trunk.parameters()) == 11_689_512 - 513_000
    assert sum(p.numel() for p in r50.trunk.parameters()) == 25_557_032 - 2_049_000
    tv_style = {k[len('trunk.') :]: v for k, v in r18.state_dict().items() if k.startswith('trunk.')}
    assert tv_style['conv1.weight'].shape == (64, 3, 7, 7)
    assert tv_style['layer2.0.downsample.0.weight'].shape == (128, 64, 1, 1)
    assert tv_style['layer4.1.bn2.running_var'].shape == (512,)
    tv_style['fc.weight'], tv_style['fc.bias'] = torch.zeros(1000, 512), torch.zeros(1000)
    tv_style['layer1.0.conv1.weight'] = torch.full((64, 64, 3, 3), 0.5)
    mapped = map_pretrained_state_dict('resnet18', tv_style)
    result = r18.load_state_dict(mapped, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith(('lateral.', 'smooth.')) for k in result.missing_keys)
    assert torch.equal(r18.trunk.layer1[0].conv1.weight, torch.full((64, 64, 3, 3), 0.5))


def test_hrnet_and_resnet50_full_network_shapes():
    torch.manual_seed(0)
    for preset, channels in (('acr_hrnet_w32', 32), ('acr_resnet50', 64)):
        net = build_acr(preset, input_size=SIZE).eval()
        assert net.backbone.out_channels == channels
        with torch.inference_mode():
            out = net(_images(1))
        assert out['center_maps'].shape == (1, 2, 16, 16)
        assert out['segmentation'].shape == (1, 33, 64, 64)
        assert out['global_params'].shape == (1, 2, 109, 16, 16)
        assert out['params'].shape == (1, 2, 109)
        assert torch.isfinite(out['params']).all()
        if preset == 'acr_hrnet_w32':
            keys = net.backbone.state_dict()
            # timm hrnet_w32 names and shapes
            assert keys['transition1.1.0.0.weight'].shape == (64, 256, 3, 3)
            assert keys['transition3.3.0.0.weight'].shape == (256, 128, 3, 3)
            assert keys['stage2.0.fuse_layers.1.0.0.0.weight'].shape == (64, 32, 3, 3)
            assert keys['stage4.2.fuse_layers.0.3.0.weight'].shape == (32, 256, 1, 1)
            assert 'stage4.2.fuse_layers.1.0.0.0.weight' not in keys  # only the 1/4 branch is fused
            assert map_pretrained_state_dict(
                'hrnet_w32',
                {
                    'stage4.2.fuse_layers.1.0.0.0.weight': torch.zeros(1),
                    'incre_modules.0.conv1.weight': torch.zeros(1),
                    'conv1.weight': torch.zeros(1),
                },
            ) == {'conv1.weight': torch.zeros(1)}
            # released ACR: 30.25 M parameters with an unused 87,585-parameter head; we add the image feature
            n = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in net.image_feature.parameters())
            assert abs(n + 87_585 - 30_250_000) < 5_000


# -------------------------------------------------------------------------------- heads/aggregator


def test_coord_maps_values():
    grid = coord_maps(2, 3, 5, torch.zeros(1))
    assert grid.shape == (2, 2, 3, 5)
    torch.testing.assert_close(grid[1, 0, 2], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(grid[0, 1, :, 4], torch.tensor([-1.0, 0.0, 1.0]))


def test_spatial_softmax_pool_and_center_attention():
    features = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    logits = torch.zeros(1, 3, 3, 4)
    logits[0, 0, 1, 2] = 100.0  # one-hot attention -> the feature at (1, 2)
    logits[0, 2, 0, 0] = math.log(3.0)  # weight 3 at (0,0), 1 elsewhere -> (3 f00 + sum others)/14
    pooled = spatial_softmax_pool(logits, features)
    assert pooled.shape == (1, 3, 2)
    torch.testing.assert_close(pooled[0, 0], features[0, :, 1, 2])
    torch.testing.assert_close(pooled[0, 1], features[0].mean(dim=(1, 2)))
    torch.testing.assert_close(pooled[0, 2], (features[0].sum(dim=(1, 2)) + 2 * features[0, :, 0, 0]) / 14)
    maps = torch.randn(1, 2, 5, 3, 4, generator=torch.Generator().manual_seed(0))
    center = torch.zeros(1, 2, 3, 4)
    center[0, 0, 2, 3] = 100.0
    attended = center_attention(center, maps)
    torch.testing.assert_close(attended[0, 0], maps[0, 0, :, 2, 3])
    torch.testing.assert_close(attended[0, 1], maps[0, 1].mean(dim=(1, 2)))
    with pytest.raises(ValueError, match='share'):
        spatial_softmax_pool(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 4))


def test_locally_connected_is_one_linear_per_part():
    torch.manual_seed(0)
    layer = LocallyConnected(4, 5, 6)
    x = torch.randn(3, 4, 5)
    expected = torch.stack([x[:, j] @ layer.weight[j] for j in range(4)], dim=1)
    torch.testing.assert_close(layer(x), expected)


def test_part_aggregator_side_mapping():
    torch.manual_seed(0)
    agg = PartAggregator(in_ch=6, pose_channels=8, shape_channels=4).eval()
    head_input = torch.randn(1, 6, 8, 8)
    seg = torch.randn(1, 33, 16, 16)
    with torch.inference_mode():
        base = agg(head_input, seg)['part_params']
        left_changed = seg.clone()
        left_changed[:, 17:] += torch.randn(1, 16, 16, 16)  # classes 17-32 = left-hand parts
        out = agg(head_input, left_changed)['part_params']
        bg_changed = seg.clone()
        bg_changed[:, 0] += 5.0  # background is not a part
        out_bg = agg(head_input, bg_changed)['part_params']
    assert base.shape == (1, 2, 106)
    torch.testing.assert_close(out[:, 1], base[:, 1])  # right unchanged
    assert (out[:, 0] - base[:, 0]).abs().max() > 1e-4  # left changed
    torch.testing.assert_close(out_bg, base)


def test_fusion_map_and_vector_modes_share_weights():
    torch.manual_seed(0)
    fusion = FusionLayer()
    global_map = torch.randn(2, 2, 109, 4, 5)
    part = torch.randn(2, 2, 106)
    torch.testing.assert_close(fusion(global_map, part), global_map)  # identity at init
    with torch.no_grad():
        for conv in fusion.convs:
            conv.weight.normal_()
            conv.bias.normal_()
    fused_map = fusion(global_map, part)
    fused_vec = fusion(global_map[..., 3, 1], part)
    torch.testing.assert_close(fused_map[..., 3, 1], fused_vec, rtol=1e-5, atol=1e-4)


def test_cam_scale_goes_through_1_1_power(light_net):
    net = build_acr('acr_light', input_size=SIZE).eval()
    net.load_state_dict(light_net.state_dict())
    with torch.no_grad():
        for heads in net.hand_heads:
            heads.cam.out.weight.zero_()
            heads.cam.out.bias.copy_(torch.tensor([2.0, 0.5, -0.5]))
    with torch.inference_mode():
        out = net(_images(1))
    cam = out['global_params'][:, :, :3]
    torch.testing.assert_close(cam[:, :, 0], torch.full_like(cam[:, :, 0], 1.1**2))
    torch.testing.assert_close(
        cam[:, :, 1:], torch.tensor([0.5, -0.5])[None, None, :, None, None].expand_as(cam[:, :, 1:])
    )


# ------------------------------------------------------------------------------------- network


def test_output_shapes_softmax_and_peak_modes(light_net):
    with torch.inference_mode():
        out = light_net(_images(2))
    expected = {
        'center_maps': (2, 2, 16, 16),
        'segmentation': (2, 33, 64, 64),
        'global_params': (2, 2, 109, 16, 16),
        'prior_maps': (2, 2, 106, 16, 16),
        'params': (2, 2, 109),
        'prior': (2, 2, 106),
        'image_feature': (2, 1024),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    # fusion starts as identity on the global half: fused == centre-attended global params
    torch.testing.assert_close(out['params'], center_attention(out['center_maps'], out['global_params']))
    torch.testing.assert_close(out['prior'], center_attention(out['center_maps'].flip(1), out['prior_maps']))
    peak_net = build_acr('acr_light', input_size=SIZE, center_attention='peak', feature_dim=256).eval()
    with torch.inference_mode():
        peak = peak_net(_images(2))
    assert peak['params'].shape == (2, 2, 109, 16, 16) and peak['image_feature'].shape == (2, 256)
    torch.testing.assert_close(peak['params'], peak['global_params'])


def test_batch_elements_are_independent(light_net):
    images = _images(3)
    with torch.inference_mode():
        batch = light_net(images)
        single = light_net(images[2:3])
    for key in ('center_maps', 'params', 'segmentation', 'image_feature'):
        torch.testing.assert_close(batch[key][2:3], single[key], rtol=1e-4, atol=1e-4)


def test_forward_inference_decodes_at_peaks(light_net):
    images = _images(2)
    out, dets = light_net.forward_inference(images, DecodeConfig(threshold=0.0, prior_gate='off'))
    assert len(dets) == 4 and dets.batch_index.tolist() == [0, 0, 1, 1] and dets.side.tolist() == [0, 1, 0, 1]
    for i in range(4):
        b, s = int(dets.batch_index[i]), int(dets.side[i])
        flat = int(out['center_maps'][b, s].argmax())
        assert (int(dets.y[i]), int(dets.x[i])) == divmod(flat, 16)
        torch.testing.assert_close(dets.params[i], out['params'][b, s])
        assert float(dets.score[i]) == pytest.approx(float(torch.sigmoid(out['center_maps'][b, s].max())))
    # untrained centre maps start at sigmoid 0.1: nothing passes the default threshold
    assert len(light_net.forward_inference(images)[1]) == 0


def test_bad_inputs_and_configs(light_net):
    with pytest.raises(ValueError, match=r'\(B, 3, S, S\)'):
        light_net(torch.zeros(1, 4, SIZE, SIZE))
    with pytest.raises(TypeError, match='floating'):
        light_net(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(ValueError, match='multiples of 32'):
        light_net(torch.zeros(1, 3, 100, 100))
    with pytest.raises(TypeError, match='torch.Tensor'):
        light_net(np.zeros((1, 3, SIZE, SIZE), dtype=np.float32))
    with pytest.raises(ValueError, match='unknown backbone'):
        ACRConfig(backbone='alexnet')
    with pytest.raises(ValueError, match='input_size'):
        ACRConfig(input_size=100)
    with pytest.raises(ValueError, match='center_attention'):
        ACRConfig(center_attention='max')
    with pytest.raises(ValueError, match='unknown ACRConfig keys'):
        ACRConfig.from_dict({'backbone': 'resnet18', 'colour': 'red'})
    with pytest.raises(ValueError, match='unknown preset'):
        build_acr('acr_huge')
    config = ACRConfig(backbone='resnet18', input_size=256, decode=DecodeConfig(threshold=0.25))
    assert ACRConfig.from_dict(config.to_dict()) == config


# ----------------------------------------------------------------------------------- preprocess


def _uniform(h: int, w: int, bgr=(10, 20, 200)) -> np.ndarray:
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = bgr
    return image


def test_letterbox_landscape_pads_top_and_bottom():
    tensor, info = letterbox(_uniform(480, 640), 256)
    assert tensor.shape == (1, 3, 256, 256) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert (info.scale, info.pad_left, info.pad_top, info.padded_side) == (0.4, 0, 80, 640)
    # padding rows: 80 * 0.4 = 32 at the top and the bottom are pure black (-1)
    assert torch.all(tensor[0, :, :32] == -1.0) and torch.all(tensor[0, :, 224:] == -1.0)
    rgb = torch.tensor([200, 20, 10], dtype=torch.float32) / 255 * 2 - 1
    torch.testing.assert_close(tensor[0, :, 33:223].mean(dim=(1, 2)), rgb)
    np.testing.assert_allclose(info.to_network([320, 240]), [128, 128])


def test_letterbox_portrait_and_odd_sizes():
    tensor, info = letterbox(_uniform(640, 480), 256, bgr=False)
    assert (info.pad_left, info.pad_top) == (80, 0)
    assert torch.all(tensor[0, :, :, :32] == -1.0) and torch.all(tensor[0, :, :, 224:] == -1.0)
    torch.testing.assert_close(
        tensor[0, :, :, 40:200].mean(dim=(1, 2)), torch.tensor([10, 20, 200], dtype=torch.float32) / 255 * 2 - 1
    )
    odd, info = letterbox(_uniform(101, 50), 96)
    assert (info.pad_left, info.pad_top, info.padded_side) == (25, 0, 101) and odd.shape == (1, 3, 96, 96)
    np.testing.assert_allclose(info.to_original(info.to_network([[3.5, 7.25], [0, 0]])), [[3.5, 7.25], [0, 0]])


def test_letterbox_geometry_of_a_bright_square():
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[200:220, 300:320] = 255  # centre (310, 210) in corner coords
    for interpolation in ('linear', 'cubic'):
        tensor, info = letterbox(image, 256, interpolation=interpolation)
        weight = (tensor[0, 0] + 1).clamp(min=0).numpy()
        ys, xs = np.mgrid[0:256, 0:256] + 0.5  # pixel centres, corner origin
        centroid = [(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()]
        np.testing.assert_allclose(centroid, info.to_network([310, 210]), atol=0.05)
        np.testing.assert_allclose(info.to_network([310, 210]), [124, 116])


def test_letterbox_normalisation_options_and_errors():
    image = _uniform(64, 64, bgr=(0, 128, 255))
    tensor, _ = letterbox(image, 32, normalization='imagenet', channels_last=True)
    assert tensor.is_contiguous(memory_format=torch.channels_last)
    expected = (np.array([255, 128, 0]) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(tensor[0, :, 16, 16].numpy(), expected, rtol=1e-5)
    with pytest.raises(TypeError, match='uint8'):
        letterbox(image.astype(np.float32), 32)
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        letterbox(image[..., 0], 32)
    with pytest.raises(ValueError, match='size'):
        letterbox(image, 0)
    with pytest.raises(ValueError, match='normalization'):
        letterbox(image, 32, normalization='zscore')
    with pytest.raises(ValueError, match='interpolation'):
        letterbox(image, 32, interpolation='lanczos')
    with pytest.raises(TypeError, match='numpy'):
        letterbox([[1, 2, 3]], 32)
