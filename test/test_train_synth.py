"""Synthetic data generator: determinism, labels consistent with the geometry, centre maps, dataset, cache."""

import numpy as np
import pytest
import torch

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.hand_model import parts
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_train.synth import SynthConfig, SynthDataset, SynthGenerator, fit_weak_camera
from hand_recon_train.synth.raster import rasterize


@pytest.fixture(scope='module')
def hand_model():
    return load_hand_model()


def _gen(hand_model, seed=0, **kw):
    kw.setdefault('image_size', 128)
    return SynthGenerator(SynthConfig(**kw), seed=seed, hand_model=hand_model)


def test_same_seed_and_index_give_identical_samples_in_any_order(hand_model):
    a, b = _gen(hand_model, seed=7), _gen(hand_model, seed=7)
    first = a.sample(3)
    b.sample(5)  # a different draw first must not change sample 3
    second = b.sample(3)
    for key in ('image', 'seg', 'center_maps', 'joints_3d', 'hand_pose', 'keypoints_2d', 'joints_vis'):
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    other_index, other_seed = a.sample(4), _gen(hand_model, seed=8).sample(3)
    assert not np.array_equal(first['image'], other_index['image'])
    assert not np.array_equal(first['image'], other_seed['image'])


def test_labels_are_the_model_output_and_its_projection(hand_model):
    gen = _gen(hand_model, seed=1)
    for index in range(4):
        s = gen.sample(index)
        for side_index, side in enumerate(SIDES):
            if not s['valid'][side_index]:
                continue
            with torch.no_grad():
                out = hand_model(
                    side,
                    s['global_orient'][side_index][None],
                    s['hand_pose'][side_index][None],
                    s['betas'][side_index][None],
                    s['transl'][side_index][None],
                )
            np.testing.assert_allclose(out['joints'][0].numpy(), s['joints_3d'][side_index], atol=1e-5)
            np.testing.assert_allclose(out['vertices'][0].numpy(), s['vertices'][side_index], atol=1e-5)
            uvw = s['joints_3d'][side_index].astype(np.float64) @ s['K'].T
            np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], s['keypoints_2d'][side_index], atol=1e-3)
            assert np.all(s['joints_3d'][side_index][:, 2] > 0.1)


def test_projected_joints_of_unoccluded_single_hands_lie_on_their_mask(hand_model):
    gen = _gen(hand_model, seed=2, scene_weights={'single': 1.0})
    inside_fraction = []
    for index in range(6):
        s = gen.sample(index)
        side = int(np.flatnonzero(s['valid'])[0])
        mask = s['hand_mask'] == side + 1
        assert (s['hand_mask'] == 2 - side).sum() == 0  # only that hand is drawn
        uv = s['keypoints_2d'][side]
        px = np.clip(np.floor(uv).astype(int), 0, mask.shape[0] - 1)
        grown = np.zeros_like(mask)  # 1-pixel tolerance for edge sampling
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= np.roll(np.roll(mask, dy, 0), dx, 1)
        inside_fraction.append(grown[px[:, 1], px[:, 0]].mean())
        # visible joints are a subset of the joints on the mask
        vis = s['joints_vis'][side]
        assert vis.sum() >= 5
        assert np.all(grown[px[vis, 1], px[vis, 0]])
    assert np.mean(inside_fraction) > 0.95, inside_fraction


def test_part_classes_belong_to_the_rendered_sides(hand_model):
    gen = _gen(hand_model, seed=3, scene_weights={'separate': 1.0})
    s = gen.sample(0)
    assert s['valid'].all()
    classes = set(np.unique(s['seg']).tolist())
    right = {c for c in classes if 1 <= c <= parts.NUM_PARTS}
    left = {c for c in classes if c > parts.NUM_PARTS}
    assert 0 in classes and len(right) >= 6 and len(left) >= 6, classes
    assert max(classes) < parts.NUM_CLASSES
    single = _gen(hand_model, seed=3, scene_weights={'single': 1.0}).sample(1)
    side = int(np.flatnonzero(single['valid'])[0])
    present = set(np.unique(single['seg']).tolist()) - {0}
    expected = set(range(1, 17)) if side == 1 else set(range(17, 33))
    assert present and present <= expected


def test_centre_map_peaks_sit_at_the_hand_centres(hand_model):
    gen = _gen(hand_model, seed=4, scene_weights={'separate': 0.5, 'single': 0.5})
    checked = 0
    for index in range(6):
        s = gen.sample(index)
        maps = s['center_maps']
        assert maps.shape == (2, 16, 16)
        for side in range(2):
            if not s['valid'][side]:
                assert maps[side].max() == 0
                continue
            y, x = np.unravel_index(maps[side].argmax(), maps[side].shape)
            expected = s['center_2d'][side] / 8.0 - 0.5
            assert maps[side, y, x] == 1.0
            assert abs(x - expected[0]) <= 1.0 and abs(y - expected[1]) <= 1.0, (index, side, (x, y), expected)
            checked += 1
    assert checked >= 6


def test_letterbox_pad_is_black_and_content_is_never_blank(hand_model):
    gen = _gen(hand_model, seed=5, aspect_weights=(0.0, 0.0, 1.0, 0.0))  # 16:9 frames: bars top/bottom
    s = gen.sample(0)
    x0, y0, x1, y1 = s['content_box']
    assert (x0, x1) == (0, 128) and y0 > 0 and y1 < 128
    assert s['image'][:y0].max() == 0 and s['image'][y1:].max() == 0
    assert s['image'][y0:y1].std() > 10
    assert s['seg'][: y0 // 2 - 1].max() == 0


def test_occluders_hide_hand_pixels(hand_model):
    plain = _gen(hand_model, seed=6, scene_weights={'separate': 1.0}).sample(0)
    occluded = _gen(hand_model, seed=6, scene_weights={'occluded': 1.0})
    fractions = []
    for index in range(4):
        s = occluded.sample(index)
        for side in range(2):
            if s['valid'][side]:
                fractions.append(s['joints_vis'][side].mean())
    assert plain['valid'].all()
    assert np.mean(fractions) < 0.9


def test_fit_weak_camera_recovers_scale_and_offset():
    rng = np.random.default_rng(0)
    X = rng.normal(0, 0.05, (21, 3))
    p = 3.5 * X[:, :2] + np.array([0.2, -0.4])
    np.testing.assert_allclose(fit_weak_camera(X, p), [3.5, 0.2, -0.4], atol=1e-9)


def test_rasterizer_depth_order_and_coverage():
    K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])

    def square(z, half):
        v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
        return v, np.array([[0, 2, 1], [0, 3, 2]])  # wound to face the camera

    far_v, far_f = square(1.0, 0.2)
    near_v, near_f = square(0.5, 0.02)
    verts = np.concatenate([far_v, near_v])
    faces = np.concatenate([far_f, near_f + 4])
    r = rasterize(verts, faces, K, 64, 64)
    assert set(np.unique(r.face_id).tolist()) == {-1, 0, 1, 2, 3}
    # the near square covers +-4 px around the centre, in front of the far one
    assert set(np.unique(r.face_id[30:34, 30:34]).tolist()) <= {2, 3}
    assert np.all(r.face_id[:12] == -1)  # far square spans rows 12..52
    assert np.all(r.face_id[13:51, 13:51] >= 0)
    depth = r.depth_image()
    np.testing.assert_allclose(depth[32, 32], 0.5, atol=1e-6)
    np.testing.assert_allclose(depth[15, 15], 1.0, atol=1e-6)
    back = rasterize(verts, faces[:, ::-1], K, 64, 64)  # reversed winding: culled
    assert np.all(back.face_id == -1)


def test_dataset_items_and_cache(hand_model, tmp_path):
    config = SynthConfig(image_size=128, supersample=1)
    data = SynthDataset(config, seed=0, length=3, cache_dir=tmp_path)
    data._generator = SynthGenerator(config, seed=0, hand_model=hand_model)
    item = data[1]
    assert item['image'].shape == (3, 128, 128) and item['image'].dtype == torch.float32
    assert item['seg'].shape == (64, 64) and item['seg'].dtype == torch.int64
    assert item['center_maps'].shape == (2, 16, 16)
    assert item['joints_3d'].shape == (2, 21, 3) and item['joints_2d'].shape == (2, 21, 2)
    assert item['valid'].dtype == torch.bool
    valid = item['valid'].numpy()
    assert np.all(np.abs(item['joints_2d'].numpy()[valid][item['joints_vis'].numpy()[valid]]) <= 1.0)
    files = list(tmp_path.rglob('*.npz'))
    assert len(files) == 1
    again = SynthDataset(config, seed=0, length=3, cache_dir=tmp_path)[1]  # read from the cache
    for key in item:
        assert torch.equal(item[key], again[key]), key
    with pytest.raises(IndexError):
        data[3]


def test_bad_input_is_rejected(hand_model):
    with pytest.raises(ValueError, match='multiple of 32'):
        SynthConfig(image_size=100)
    with pytest.raises(ValueError, match='scene_weights'):
        SynthConfig(scene_weights={'underwater': 1.0})
    with pytest.raises(ValueError, match='index'):
        _gen(hand_model).sample(-1)
    with pytest.raises(ValueError, match='normalization'):
        SynthDataset(normalization='bgr')


def test_close_scene_hands_touch_without_intersecting(hand_model):
    from hand_recon_ros.hand_model.penetration import prepare_mesh

    gen = SynthGenerator(
        SynthConfig(image_size=64, supersample=1, scene_weights={'close': 1.0}), seed=4, hand_model=hand_model
    )
    gaps = []
    for index in range(6):
        sample = gen.sample(index)
        assert sample['scene'] == 'close'
        left, right = (sample['vertices'][s].astype(np.float64) for s in range(2))
        gaps.append(np.linalg.norm(left[:, None] - right[None], axis=-1).min())
        solids = [
            prepare_mesh(hand_model.watertight_vertices(side, v), hand_model.watertight_faces(side))
            for side, v in (('left', left), ('right', right))
        ]
        assert not solids[0].inside(right).any() and not solids[1].inside(left).any()
    gaps = np.array(gaps)
    assert (gaps > 0.0019).all() and (gaps < 0.0081).all(), gaps  # 2-8 mm apart: touching, not overlapping


def test_close_scene_is_off_by_default_and_versions_the_data():
    config = SynthConfig(image_size=192, supersample=1)
    assert 'close' not in config.scene_weights
    # synth-v1 (the shipped preview model's data) had this hash; v2 changed the interacting layout test
    assert config.config_hash() != 'd5077f9bde17'


def test_interacting_pairs_never_intersect(hand_model):
    from hand_recon_ros.refine.collision import TwoHandCollision

    collision = TwoHandCollision(hand_model)
    gen = SynthGenerator(
        SynthConfig(image_size=64, supersample=1, scene_weights={'interacting': 1.0}), seed=1, hand_model=hand_model
    )
    # seed 1: synth-v1's vertex-subsampled test let 7 of the first 80 pairs intersect (3 in the first 20)
    for index in range(20):
        sample = gen.sample(index)
        errors = collision.errors(torch.tensor(sample['vertices'][0])[None], torch.tensor(sample['vertices'][1])[None])
        assert not np.asarray(errors).any(), index
