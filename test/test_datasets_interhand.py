"""InterHand2.6M loader: fixture files in the official format with known answers, then the real mmpose frames."""

import json
import shutil

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hand_recon_ros.conventions import INTERHAND_TO_21
from hand_recon_train.datasets import (
    InterHandAnnotations,
    InterHandDataset,
    find_interhand_files,
    interaction_distance,
    is_close_interaction,
    mano_world_to_camera,
)

from conftest import REALIMGS

INTERHAND_REAL = REALIMGS / 'interhand26m_mmpose'
DERIVED = REALIMGS / 'derived' / 'interhand26m_gt_camera.json'

# Fixture camera: R = rotation of 90 deg about z, centre (100, 200, -300) mm, f = 1000 px, c = (160, 120).
R_CAM = Rotation.from_euler('z', 90, degrees=True).as_matrix()
CAMPOS_MM = np.array([100.0, 200.0, -300.0])
W, H = 320, 240


def _hand_cam_mm(offset):
    """IH-order joints (tip..base per finger, wrist last) of one hand in CAMERA mm: joint j at a unique spot."""
    j = np.arange(21, dtype=np.float64)
    return np.stack([np.full(21, -20.0), 5.0 - 2.0 * j, 500.0 + 0.5 * j], axis=1) + offset


def _to_world(cam_mm):
    return cam_mm @ R_CAM + CAMPOS_MM  # inverse of X_cam = R (X_w - c)


def _write_fixture(folder, naming='official', mano=True):
    """4 frames: right (2 invalid joints), interacting close, interacting far, left with an invalid wrist."""
    right = _hand_cam_mm(np.zeros(3))
    frames = {
        10: ('right', right, _hand_cam_mm([0, 0, 1000.0])),
        11: ('interacting', right, _hand_cam_mm([30.0, 0, 0])),
        12: ('interacting', right, _hand_cam_mm([300.0, 0, 0])),
        13: ('left', _hand_cam_mm([0, 0, 50.0]), _hand_cam_mm([-40.0, 0, 0])),
    }
    images, anns, joints, mano_file = [], [], {'1': {}}, {'1': {}}
    for k, (hand_type, r, left) in frames.items():
        name = f'Capture1/seq/cam400/image{k}.jpg' if naming == 'official' else f'image{k}.jpg'
        images.append(
            {'id': k, 'file_name': name, 'width': W, 'height': H, 'capture': 1, 'camera': '400', 'frame_idx': k}
        )
        valid = np.ones(42)
        if hand_type == 'right':
            valid[21:] = 0
        if hand_type == 'left':
            valid[:21] = 0
        ann_valid = valid.copy()
        joint3d_valid = valid.copy()
        if k == 10:
            ann_valid[7] = 0  # right index base, invalid in data.json only
            joint3d_valid[0] = 0  # right thumb tip, invalid in joint_3d.json only
        if k == 13:
            joint3d_valid[41] = 0  # left wrist: the whole left hand becomes invalid
        anns.append(
            {
                'id': k,
                'image_id': k,
                'bbox': [10, 20, 30, 40],
                'joint_valid': ann_valid[:, None].tolist(),
                'hand_type': hand_type,
                'hand_type_valid': 1,
            }
        )
        world = np.concatenate([_to_world(r), _to_world(left)])
        joints[str(1)][str(k)] = {
            'world_coord': world.tolist(),
            'joint_valid': (joint3d_valid > 0).tolist(),
            'hand_type': hand_type,
            'hand_type_valid': True,
        }
        mano_file['1'][str(k)] = {'right': None, 'left': None}
    mano_file['1']['11']['right'] = {
        'pose': (np.arange(48) * 0.01).tolist(),
        'shape': (np.arange(10) * 0.1).tolist(),
        'trans': [0.1, 0.2, 0.3],
    }
    camera = {
        '1': {
            'campos': {'400': CAMPOS_MM.tolist()},
            'camrot': {'400': R_CAM.tolist()},
            'focal': {'400': [1000.0, 1000.0]},
            'princpt': {'400': [160.0, 120.0]},
        }
    }
    if naming == 'official':
        ann_dir, image_dir = folder / 'annotations' / 'test', folder / 'images' / 'test'
        names = {kind: f'InterHand2.6M_test_{kind}.json' for kind in ('data', 'camera', 'joint_3d', 'MANO_NeuralAnnot')}
    else:
        ann_dir = image_dir = folder
        names = {kind: f'test_interhand2.6m_{kind}.json' for kind in ('data', 'camera', 'joint_3d', 'MANO_NeuralAnnot')}
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / names['data']).write_text(json.dumps({'images': images, 'annotations': anns}))
    (ann_dir / names['camera']).write_text(json.dumps(camera))
    (ann_dir / names['joint_3d']).write_text(json.dumps(joints))
    if mano:
        (ann_dir / names['MANO_NeuralAnnot']).write_text(json.dumps(mano_file))
    for im in images:
        path = image_dir / im['file_name']
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))
    return folder


@pytest.fixture
def official(tmp_path):
    return _write_fixture(tmp_path / 'ih')


def test_known_joint_projects_to_known_pixel_and_joints_are_reordered(official):
    frames = list(InterHandAnnotations(official, 'test'))
    assert [f.hand_type for f in frames] == ['right', 'interacting', 'interacting', 'left']
    f = frames[0]
    # IH joint 20 (right wrist) at camera (-20, -35, 510) mm -> our wrist; pixel 1000 * x / z + c
    np.testing.assert_allclose(f.joints_cam[1, 0], [-0.020, -0.035, 0.510], atol=1e-12)
    np.testing.assert_allclose(f.keypoints_2d[1, 0], [1000 * -20 / 510 + 160, 1000 * -35 / 510 + 120], atol=1e-9)
    # our joint i is IH joint INTERHAND_TO_21[i]: thumb tip (4) = IH 0, thumb base (1) = IH 3, pinky tip = IH 16
    expected = _hand_cam_mm(np.zeros(3))[list(INTERHAND_TO_21)] / 1000.0
    np.testing.assert_allclose(f.joints_cam[1], expected, atol=1e-12)
    np.testing.assert_allclose(f.joints_cam[1, 4], [-0.020, 0.005, 0.5], atol=1e-12)
    np.testing.assert_allclose(f.joints_cam[1, 1], [-0.020, -0.001, 0.5015], atol=1e-12)
    np.testing.assert_allclose(f.joints_world[1, 0], _to_world(np.array([-20.0, -35.0, 510.0])) / 1000.0, atol=1e-12)
    np.testing.assert_allclose(f.K, [[1000, 0, 160], [0, 1000, 120], [0, 0, 1]])
    np.testing.assert_allclose(f.campos, CAMPOS_MM / 1000.0)
    assert f.image_path == official / 'images' / 'test' / 'Capture1/seq/cam400/image10.jpg'


def test_invalid_joints_and_hands_are_masked(official):
    frames = list(InterHandAnnotations(official, 'test'))
    right_only, left_bad_wrist = frames[0], frames[3]
    # IH 0 (joint_3d invalid) is our thumb tip 4; IH 7 (data.json invalid) is our index base 5
    assert right_only.joints_valid[1].sum() == 19
    assert not right_only.joints_valid[1, 4] and not right_only.joints_valid[1, 5]
    assert right_only.hand_valid.tolist() == [False, True] and not right_only.joints_valid[0].any()
    # an invalid wrist invalidates its hand: hand_type 'left' but no usable left hand, no right hand either
    assert not left_bad_wrist.joints_valid.any() and left_bad_wrist.hand_valid.tolist() == [False, False]
    assert frames[1].hand_valid.tolist() == [True, True]


def test_subsets_single_interacting_and_close(official):
    assert len(InterHandAnnotations(official, 'test', subset='SH')) == 2
    ih = InterHandAnnotations(official, 'test', subset='IH')
    assert [f.image_id for f in ih] == [11, 12]
    # frame 11: left = right shifted by 30 mm in x -> mean nearest-joint distance 30 mm: close at 40, not at 25
    assert ih.frame(0).interaction_distance() == pytest.approx(0.030, abs=1e-9)
    assert ih.frame(1).interaction_distance('min') == pytest.approx(0.300, abs=1e-9)
    assert [f.image_id for f in InterHandAnnotations(official, 'test', subset='IH-close')] == [11]
    assert len(InterHandAnnotations(official, 'test', subset='IH-close', close_threshold_m=0.025)) == 0
    with pytest.raises(ValueError, match='subset must be one of'):
        InterHandAnnotations(official, 'test', subset='close')


def test_interaction_distance_known_values():
    a = np.zeros((2, 3))
    b = np.array([[0.0, 0.0, 0.03], [0.0, 0.0, 0.05]])
    # nearest: a->b 0.03, 0.03; b->a 0.03, 0.05
    assert interaction_distance(a, b) == pytest.approx((0.03 + 0.03 + 0.03 + 0.05) / 4)
    assert interaction_distance(a, b, reduce='min') == pytest.approx(0.03)
    assert np.isnan(interaction_distance(a, b, valid_right=[False, False]))
    assert is_close_interaction(a, b) and not is_close_interaction(a, b, threshold=0.035)
    with pytest.raises(ValueError, match='reduce'):
        interaction_distance(a, b, reduce='max')


def test_mano_params_parsed_and_moved_to_the_camera(official):
    frames = list(InterHandAnnotations(official, 'test'))
    m = frames[1].mano_world
    assert m['has_mano'].tolist() == [False, True]
    np.testing.assert_allclose(m['global_orient'][1], [0.0, 0.01, 0.02])
    np.testing.assert_allclose(m['hand_pose'][1], np.arange(3, 48) * 0.01)
    np.testing.assert_allclose(m['betas'][1], np.arange(10) * 0.1)
    np.testing.assert_allclose(m['transl'][1], [0.1, 0.2, 0.3])
    assert frames[0].mano_world['has_mano'].tolist() == [False, False]
    cam = frames[1].mano_camera()
    expected = Rotation.from_matrix(R_CAM @ Rotation.from_rotvec([0.0, 0.01, 0.02]).as_matrix()).as_rotvec()
    np.testing.assert_allclose(cam['global_orient'][1], expected, atol=1e-12)
    # world->camera of MANO params reproduces world->camera of a posed point
    rng = np.random.default_rng(0)
    orient, transl, j0, x = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)
    campos = CAMPOS_MM / 1000
    world = Rotation.from_rotvec(orient).apply(x - j0) + j0 + transl
    orient_c, transl_c = mano_world_to_camera(orient, transl, R_CAM, campos, j0)
    np.testing.assert_allclose(
        Rotation.from_rotvec(orient_c).apply(x - j0) + j0 + transl_c, R_CAM @ (world - campos), atol=1e-12
    )
    no_mano = _write_fixture(official.parent / 'no_mano', mano=False)
    assert InterHandAnnotations(no_mano, 'test').frame(1).mano_camera() is None


def test_dataset_sample_in_network_pixels(official):
    ds = InterHandDataset(official, 'test', input_size=64)
    item = ds[1]
    assert item['image'].shape == (3, 64, 64) and item['center_maps'].shape == (2, 8, 8)
    assert item['valid'].tolist() == [True, True]
    # 320x240 -> padded 320x320 (40 px top), scale 0.2
    np.testing.assert_allclose(item['K'].numpy(), [[200, 0, 32], [0, 200, 32], [0, 0, 1]], atol=1e-5)
    u, v = 1000 * -20 / 510 + 160, 1000 * -35 / 510 + 120
    np.testing.assert_allclose(item['joints_2d'][1, 0].numpy(), [u * 0.2 / 32 - 1, (v + 40) * 0.2 / 32 - 1], atol=1e-5)
    np.testing.assert_allclose(item['joints_3d'][1, 0].numpy(), [-0.020, -0.035, 0.510], atol=1e-6)
    assert item['has_mano'].tolist() == [False, True]
    assert item['center_maps'][0].max() == 1.0 and item['center_maps'][1].max() == 1.0
    # weak camera fitted to the visible joints reprojects them (small hand far away: near-exact)
    rel = item['joints_3d'][1] - item['joints_3d'][1, 9]
    pred = item['cam'][1, 0] * rel[:, :2] + item['cam'][1, 1:]
    assert float((pred - item['joints_2d'][1]).norm(dim=-1).max()) < 0.02
    first = ds[0]
    assert first['valid'].tolist() == [False, True]
    assert first['joints_vis'][1].sum() == 19 and not first['joints_vis'][0].any()
    assert float(first['joints_3d'][1, 4].abs().sum()) == 0.0  # invalid joints are zeroed
    assert not first['joints_valid'][1, 4] and (first['seg'] == -100).all()


def test_mmpose_naming_gives_the_same_frames(official, tmp_path):
    mm = _write_fixture(tmp_path / 'mm', naming='mmpose')
    files = find_interhand_files(mm, 'test')
    assert files['data'].name == 'test_interhand2.6m_data.json'
    a, b = list(InterHandAnnotations(official, 'test')), list(InterHandAnnotations(mm, 'test'))
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.joints_cam, fb.joints_cam)
        np.testing.assert_array_equal(fa.joints_valid, fb.joints_valid)
    assert b[0].image_path == mm / 'image10.jpg' and b[0].image_path.is_file()


def test_bad_inputs_are_clear_errors(official, tmp_path):
    with pytest.raises(FileNotFoundError, match='joint_3d'):
        broken = tmp_path / 'broken'
        shutil.copytree(official, broken)
        (broken / 'annotations' / 'test' / 'InterHand2.6M_test_joint_3d.json').unlink()
        find_interhand_files(broken, 'test')
    with pytest.raises(FileNotFoundError, match='not found'):
        InterHandAnnotations(tmp_path / 'nothing')
    data_path = official / 'annotations' / 'test' / 'InterHand2.6M_test_data.json'
    data = json.loads(data_path.read_text())
    data['annotations'][0]['hand_type'] = 'both'
    data_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match='hand_type must be one of'):
        InterHandAnnotations(official, 'test')
    data['annotations'][0]['hand_type'] = 'right'
    data['images'][0]['camera'] = '999'
    data_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match='camera 999'):
        InterHandAnnotations(official, 'test').frame(0)


# ---------------------------------------------------------------- the real mmpose test frames


@pytest.fixture(scope='module')
def real():
    if not (INTERHAND_REAL / 'test_interhand2.6m_data.json').is_file() or not DERIVED.is_file():
        pytest.skip(
            f'real InterHand2.6M frames not available at {INTERHAND_REAL} (shared/realimgs is not part of '
            'the repository)'
        )
    derived = json.loads(DERIVED.read_text())
    return list(InterHandAnnotations(INTERHAND_REAL, 'test')), {im['file']: im for im in derived['images']}


def test_real_frames_match_the_derived_camera_ground_truth(real):
    frames, derived = real
    assert sorted(f.image_path.name for f in frames) == sorted(derived)
    for f in frames:
        gt = derived[f.image_path.name]
        assert f.hand_type == gt['hand_type'] and (f.width, f.height) == (gt['width'], gt['height'])
        np.testing.assert_allclose(np.diag(f.K)[:2], [gt['intrinsics']['fx'], gt['intrinsics']['fy']])
        cam_mm, px = np.asarray(gt['joints_cam_mm']), np.asarray(gt['joints_2d_px'])
        valid42 = np.asarray(gt['joint_valid'], bool)
        for s, part in ((1, slice(0, 21)), (0, slice(21, 42))):  # derived: right 0-20, left 21-41
            order = list(INTERHAND_TO_21)
            np.testing.assert_array_equal(f.joints_valid[s], valid42[part][order])
            ok = f.joints_valid[s]
            if not ok.any():
                continue
            np.testing.assert_allclose(f.joints_cam[s][ok] * 1000, cam_mm[part][order][ok], atol=1.0)
            np.testing.assert_allclose(f.keypoints_2d[s][ok], px[part][order][ok], atol=1.0)
            uv = f.keypoints_2d[s][ok]
            assert (uv >= 0).all() and (uv[:, 0] < f.width).all() and (uv[:, 1] < f.height).all()
        assert f.hand_valid.tolist() == [
            gt['hand_type'] in ('left', 'interacting'),
            gt['hand_type'] in ('right', 'interacting'),
        ]


def test_real_frames_subsets_and_samples(real):
    frames, _ = real
    by_name = {f.image_path.name: f for f in frames}
    # the two interacting frames are closely interacting (mean nearest-joint distance < 40 mm)
    for name in ('image44669.jpg', 'image69148.jpg'):
        assert by_name[name].subset == 'IH' and 0.005 < by_name[name].interaction_distance() < 0.04
    assert by_name['image2017.jpg'].subset == 'SH'
    assert len(InterHandAnnotations(INTERHAND_REAL, 'test', subset='IH-close')) == 2
    ds = InterHandDataset(INTERHAND_REAL, 'test', input_size=128)
    for i in range(len(ds)):
        item = ds[i]
        f = ds.annotations.frame(i)
        assert item['valid'].tolist() == f.hand_valid.tolist()
        assert item['joints_vis'].sum(-1).tolist() == [21 * int(v) for v in f.hand_valid]
        assert ((item['joints_2d'][item['joints_vis']]).abs() <= 1).all()
