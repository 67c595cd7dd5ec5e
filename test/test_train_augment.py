"""Training augmentation: every label moves with the image (flip, roll, zoom), colour keeps the bars black."""

import math

import numpy as np
import pytest
import torch

from hand_recon_ros.acr.preprocess import normalize_rgb
from hand_recon_ros.conventions import ROOT_MIDDLE_MCP, SIDES
from hand_recon_ros.geometry import rotations
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_ros.hand_model.parts import NUM_PARTS
from hand_recon_train.augment import AugmentConfig, AugmentedDataset, augment_sample, camera_transform
from hand_recon_train.datasets.common import SEG_IGNORE, make_sample
from hand_recon_train.synth import SynthConfig, SynthDataset

GEOMETRY_ONLY = dict(enabled=True, colour_prob=0.0, motion_blur_prob=0.0)


@pytest.fixture(scope='module')
def hand_model():
    return load_hand_model()


@pytest.fixture(scope='module')
def synth():
    return SynthDataset(SynthConfig.from_dict({'image_size': 128}), seed=11, length=12)


def _project_norm(points, K, size):
    uvh = points.double() @ K.double().T
    return uvh[..., :2] / uvh[..., 2:3] / (size / 2.0) - 1.0


def _root_relative(j):
    return j - j[..., ROOT_MIDDLE_MCP : ROOT_MIDDLE_MCP + 1, :]


@pytest.mark.parametrize('flip,any_rotation', [(True, False), (False, False), (False, True)])
def test_geometric_augmentation_keeps_3d_2d_and_mano_consistent(hand_model, synth, flip, any_rotation):
    cfg = AugmentConfig(
        **GEOMETRY_ONLY,
        flip_prob=1.0 if flip else 0.0,
        rotation_prob=1.0,
        rotation_deg=40.0,
        any_rotation_prob=1.0 if any_rotation else 0.0,
        scale_range=(0.7, 1.3),
    )
    checked = 0
    for index in range(6):
        item = synth[index]
        out = augment_sample(item, np.random.default_rng(index), cfg, synth.normalization)
        if flip:  # sides swap with the mirror
            assert torch.equal(out['valid'] | item['valid'].flip(0), item['valid'].flip(0))
        for s, side in enumerate(SIDES):
            if not out['valid'][s]:
                continue
            mano = hand_model(side, out['global_orient'][s][None], out['hand_pose'][s][None], out['betas'][s][None])
            # the MANO parameters still produce the (moved) 3D labels: mesh and joints
            joint_err = (_root_relative(mano['joints'][0]) - _root_relative(out['joints_3d'][s])).norm(dim=-1)
            assert joint_err.max() < 1e-4
            mesh_shift = out['joints_3d'][s, 0] - mano['joints'][0, 0]
            assert (mano['vertices'][0] + mesh_shift - out['vertices'][s]).norm(dim=-1).max() < 1e-4
            # 2D labels are the projection of the 3D labels with the new intrinsics
            proj = _project_norm(out['joints_3d'][s], out['K'], 128)
            assert (proj - out['joints_2d'][s].double()).abs().max() * 64 < 1e-3
            # the refitted weak camera still explains the 2D labels
            cam = out['cam'][s]
            weak = cam[0] * _root_relative(out['joints_3d'][s])[:, :2] + cam[1:]
            assert (weak - out['joints_2d'][s]).norm(dim=-1).mean() * 64 < 4.0
            # a centre target with an exact peak where the keypoint box centre is
            peak = torch.nonzero(out['center_maps'][s] == 1.0)
            assert len(peak) >= 1
            checked += 1
    assert checked >= 6


def test_image_and_part_labels_move_with_the_keypoints(synth):
    cfg = AugmentConfig(**GEOMETRY_ONLY, flip_prob=1.0, rotation_prob=1.0, rotation_deg=25.0, scale_range=(1.1, 1.1))
    item = synth[3]
    out = augment_sample(item, np.random.default_rng(0), cfg, synth.normalization)
    seg_in, seg_out = item['seg'].numpy(), out['seg'].numpy()
    # flipped: right-hand part pixels (1..16) become left-hand classes (17..32) and the other way round
    right_in = ((seg_in >= 1) & (seg_in <= NUM_PARTS)).sum()
    left_out = (seg_out > NUM_PARTS).sum()
    assert right_in > 20 and abs(int(left_out) - int(right_in) * 1.21) < 0.25 * right_in
    # a fully visible wrist keypoint of the output lands on a hand pixel of the output's part map
    for s in range(2):
        if out['valid'][s] and out['joints_vis'][s, 0]:
            u, v = ((out['joints_2d'][s, 0] + 1.0) * 32.0).long().tolist()  # seg is S/2 = 64
            window = seg_out[max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2]
            assert (window > 0).any()


def test_known_pixel_goes_where_the_camera_map_says():
    S = 64
    image = np.zeros((S, S, 3), np.uint8)
    image[8:56, 8:56] = 40  # content, with a bright marker pixel
    image[20, 12] = 255
    tensor = torch.from_numpy(normalize_rgb(image[..., ::-1].copy(), 'pm1')).permute(2, 0, 1)
    K = torch.tensor([[60.0, 0.0, 30.0], [0.0, 60.0, 34.0], [0.0, 0.0, 1.0]])
    item = {
        'image': tensor,
        'K': K,
        'seg': torch.zeros(S // 2, S // 2, dtype=torch.int64),
        'center_maps': torch.zeros(2, 8, 8),
        'valid': torch.zeros(2, dtype=torch.bool),
        'global_orient': torch.zeros(2, 3),
        'hand_pose': torch.zeros(2, 45),
        'betas': torch.zeros(2, 10),
        'cam': torch.zeros(2, 3),
        'joints_3d': torch.zeros(2, 21, 3),
        'vertices': torch.zeros(2, 5, 3),
        'joints_2d': torch.zeros(2, 21, 2),
        'joints_vis': torch.zeros(2, 21, dtype=torch.bool),
    }
    cfg = AugmentConfig(**GEOMETRY_ONLY, flip_prob=1.0, rotation_prob=1.0, rotation_deg=30.0, scale_range=(1.2, 1.2))
    rng = np.random.default_rng(5)
    out = augment_sample(item, rng, cfg, 'pm1')
    _, _, A = camera_transform(K.numpy().astype(np.float64), S, True, 0.0, 1.0)  # shape of the map only
    brightest = np.unravel_index(out['image'][0].numpy().argmax(), (S, S))  # (row, col)
    # recompute the draw: same rng sequence as augment_sample
    rng = np.random.default_rng(5)
    rng.uniform()
    theta = math.radians(rng.uniform(-30.0, 30.0)) if rng.uniform() < 1.0 else 0.0
    _, K_new, A = camera_transform(K.numpy().astype(np.float64), S, True, theta, 1.2)
    target = A @ np.array([12.5, 20.5, 1.0])
    assert abs(brightest[1] + 0.5 - target[0]) <= 1.0 and abs(brightest[0] + 0.5 - target[1]) <= 1.0
    assert K_new[0, 2] == pytest.approx(S - 30.0) and K_new[0, 0] == pytest.approx(72.0)
    assert torch.allclose(out['K'], torch.from_numpy(K_new).float())


def test_colour_and_blur_keep_the_bars_black_and_labels_untouched(synth):
    item = synth[0]
    cfg = AugmentConfig(
        enabled=True, flip_prob=0.0, rotation_prob=0.0, scale_range=(1.0, 1.0), colour_prob=1.0, motion_blur_prob=1.0
    )
    out = augment_sample(item, np.random.default_rng(1), cfg, synth.normalization)
    black = torch.from_numpy(normalize_rgb(np.zeros((1, 1, 3), np.uint8), synth.normalization)[0, 0])
    bars_in = (item['image'] == black[:, None, None]).all(0)
    bars_out = (out['image'] == black[:, None, None]).all(0)
    assert bars_in.sum() > 100 and bool((bars_out | ~bars_in).all())  # every bar pixel stays black
    assert not torch.allclose(out['image'][:, ~bars_in], item['image'][:, ~bars_in], atol=0.05)
    for key in ('seg', 'center_maps', 'joints_3d', 'joints_2d', 'K', 'global_orient'):
        assert torch.equal(out[key], item[key])


def test_grayscale_gives_equal_channels_and_keeps_labels_and_other_draws(synth):
    item = synth[0]
    cfg = AugmentConfig(
        enabled=True, flip_prob=0.0, rotation_prob=0.0, scale_range=(1.0, 1.0), colour_prob=0.0, grayscale_prob=1.0
    )
    out = augment_sample(item, np.random.default_rng(1), cfg, synth.normalization)
    # back to pixels: the three channels are one luminance image, not the input
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    rgb = out['image'] * std + mean
    assert torch.allclose(rgb[0], rgb[1], atol=1e-4) and torch.allclose(rgb[1], rgb[2], atol=1e-4)
    assert not torch.allclose(out['image'], item['image'], atol=0.05)
    for key in ('seg', 'center_maps', 'joints_3d', 'joints_2d', 'K'):
        assert torch.equal(out[key], item[key])
    # grayscale_prob 0 draws nothing: a config without it keeps its earlier random draws
    plain = AugmentConfig(enabled=True)
    a = augment_sample(item, np.random.default_rng(5), plain, synth.normalization)
    b = augment_sample(
        item, np.random.default_rng(5), AugmentConfig(enabled=True, grayscale_prob=0.0), synth.normalization
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match='probability'):
        AugmentConfig(grayscale_prob=2.0)


def test_any_rotation_turns_hands_all_the_way_round_and_keeps_other_configs_draws(synth):
    item = synth[2]
    cfg = AugmentConfig(**GEOMETRY_ONLY, flip_prob=0.0, rotation_prob=0.0, any_rotation_prob=1.0, scale_range=(1, 1))
    angles = []
    for seed in range(12):
        out = augment_sample(item, np.random.default_rng(seed), cfg, synth.normalization)
        # the roll turns every hand's global orientation about the optical axis
        s = int(torch.nonzero(item['valid'])[0])
        before, after = (rotations.axis_angle_to_matrix(x['global_orient'][s].double()) for x in (item, out))
        R = after @ before.T
        assert abs(float(R[2, 2]) - 1.0) < 1e-5
        angles.append(math.degrees(math.atan2(float(R[1, 0]), float(R[0, 0]))))
    assert max(abs(a) for a in angles) > 90.0  # upside-down and sideways hands, not only +-30 degrees
    # any_rotation_prob 0 draws nothing: earlier configs keep their random draws
    a = augment_sample(item, np.random.default_rng(5), AugmentConfig(enabled=True), synth.normalization)
    b = augment_sample(
        item, np.random.default_rng(5), AugmentConfig(enabled=True, any_rotation_prob=0.0), synth.normalization
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match='probability'):
        AugmentConfig(any_rotation_prob=-0.1)


def test_disabled_is_identity_and_draws_are_deterministic(synth):
    item = synth[1]
    assert augment_sample(item, np.random.default_rng(0), AugmentConfig(), synth.normalization) is item
    data = AugmentedDataset(synth, AugmentConfig(enabled=True), seed=3)
    a, b = data[2], data[2]
    assert all(torch.equal(a[k], b[k]) for k in a)
    data.set_epoch(1)
    c = data[2]
    assert not torch.equal(a['image'], c['image'])


def test_real_sample_without_mano_or_intrinsics(synth):
    rng = np.random.default_rng(4)
    image = rng.integers(30, 200, (90, 120, 3), dtype=np.uint8)
    kp = np.zeros((2, 21, 2))
    kp[1] = np.stack([np.linspace(40, 80, 21), np.linspace(30, 60, 21)], axis=1)
    valid = np.zeros((2, 21), bool)
    valid[1] = True
    item = make_sample(
        image,
        None,
        None,
        np.zeros((2, 21), bool),
        np.array([False, True]),
        64,
        'imagenet',
        keypoints_2d=kp,
        keypoints_valid=valid,
    )
    cfg = AugmentConfig(**GEOMETRY_ONLY, flip_prob=1.0, rotation_prob=1.0, rotation_deg=20.0, scale_range=(1.0, 1.0))
    out = augment_sample(item, np.random.default_rng(2), cfg, 'imagenet')
    assert set(out) == set(item)
    assert bool((out['seg'] == SEG_IGNORE).all())  # no part labels invented
    assert torch.equal(out['K'], torch.zeros(3, 3))  # unknown intrinsics stay unknown
    assert out['valid'].tolist() == [True, False]  # the right hand became a left hand
    assert not out['has_mano'].any() and not out['global_orient'].any() and not out['hand_pose'].any()
    assert out['joints_vis'][0].sum() >= 15
    assert out['center_maps'][0].max() == 1.0 and out['center_maps'][1].max() == 0.0
    # visible keypoints keep their spacing (a roll and a mirror are isometries at scale 1)
    before = item['joints_2d'][1][item['joints_vis'][1]]
    after = out['joints_2d'][0][out['joints_vis'][0]]
    assert len(before) == len(after) == 21  # a 20 degree roll keeps this hand in view
    d_before = (before[1:] - before[:-1]).norm(dim=-1)
    d_after = (after[1:] - after[:-1]).norm(dim=-1)
    assert torch.allclose(d_before, d_after, atol=1e-4)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match='probability'):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match='scale_range'):
        AugmentConfig(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match='unknown'):
        AugmentConfig.from_dict({'flip': 0.5})
