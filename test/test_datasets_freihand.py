"""FreiHAND loader: official-format fixtures with known answers, mmpose-format fixtures, the real mmpose frames."""

import json

import cv2
import numpy as np
import pytest

from hand_recon_train.datasets import FREIHAND_TRAIN_FRAMES, FreiHandAnnotations, FreiHandDataset

from conftest import REALIMGS

FREIHAND_REAL = REALIMGS / 'freihand_mmpose'
K_FIX = [[500.0, 0.0, 112.0], [0.0, 400.0, 100.0], [0.0, 0.0, 1.0]]


def _xyz(a):
    """Annotation a: joint j at (0.01 j - 0.1, 0.005 j - 0.05, 0.5 + 0.1 a) m (wrist first, already our order)."""
    j = np.arange(21, dtype=np.float64)
    return np.stack([0.01 * j - 0.1, 0.005 * j - 0.05, np.full(21, 0.5 + 0.1 * a)], axis=1)


def _write_official(folder, n=3, versions=2, with_mano=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'training_xyz.json').write_text(json.dumps([_xyz(a).tolist() for a in range(n)]))
    (folder / 'training_K.json').write_text(json.dumps([K_FIX] * n))
    if with_mano:
        (folder / 'training_mano.json').write_text(
            json.dumps([[(np.arange(61) * 0.01 + a).tolist()] for a in range(n)])
        )
        (folder / 'training_verts.json').write_text(
            json.dumps([np.full((778, 3), float(a)).tolist() for a in range(n)])
        )
    rgb = folder / 'training' / 'rgb'
    rgb.mkdir(parents=True, exist_ok=True)
    for i in range(n * versions):
        cv2.imwrite(str(rgb / f'{i:08d}.jpg'), np.full((224, 224, 3), 40 * (i % 6), np.uint8))
    return folder


def test_official_format_known_projection_versions_and_mano(tmp_path):
    root = _write_official(tmp_path / 'frei')
    ann = FreiHandAnnotations(root, 'training', versions=(0, 1))
    assert ann.format == 'official' and len(ann) == 6
    f = ann[4]  # version 1 of annotation 1
    assert (f.image_id, f.annotation_index) == (4, 1)
    assert f.image_path == root / 'training' / 'rgb' / '00000004.jpg'
    np.testing.assert_allclose(f.joints_cam, _xyz(1))
    # wrist (-0.1, -0.05, 0.6) -> (500 * -0.1 / 0.6 + 112, 400 * -0.05 / 0.6 + 100)
    np.testing.assert_allclose(f.keypoints_2d[0], [500 * -0.1 / 0.6 + 112, 400 * -0.05 / 0.6 + 100], atol=1e-9)
    theta = np.arange(61) * 0.01 + 1
    np.testing.assert_allclose(f.mano['global_orient'], theta[:3])
    np.testing.assert_allclose(f.mano['hand_pose'], theta[3:48])
    np.testing.assert_allclose(f.mano['betas'], theta[48:58])
    np.testing.assert_allclose(f.mano['transl'], theta[58:61])
    assert f.vertices.shape == (778, 3) and f.vertices[0, 0] == 1.0 and f.side == 'right'
    bare = FreiHandAnnotations(_write_official(tmp_path / 'bare', with_mano=False), versions=(0,))
    assert len(bare) == 3 and bare[0].mano is None and bare[0].vertices is None


def test_official_dataset_item(tmp_path):
    ds = FreiHandDataset(_write_official(tmp_path / 'frei'), 'training', input_size=64, versions=(0, 1))
    item = ds[3]  # annotation 0
    assert item['valid'].tolist() == [False, True] and item['has_mano'].tolist() == [False, True]
    np.testing.assert_allclose(item['joints_3d'][1].numpy(), _xyz(0), atol=1e-6)
    assert not item['joints_valid'][0].any() and item['joints_valid'][1].all()
    # 224 square -> scale 64/224, no padding
    s = 64 / 224
    np.testing.assert_allclose(item['K'].numpy(), np.array(K_FIX) * [[s], [s], [1]], atol=1e-5)
    u, v = 500 * -0.1 / 0.5 + 112, 400 * -0.05 / 0.5 + 100
    np.testing.assert_allclose(item['joints_2d'][1, 0].numpy(), [u * s / 32 - 1, v * s / 32 - 1], atol=1e-5)
    np.testing.assert_allclose(item['global_orient'][1].numpy(), [0.0, 0.01, 0.02], atol=1e-6)
    assert float(item['global_orient'][0].abs().sum()) == 0.0


def _write_mmpose(folder):
    folder.mkdir(parents=True, exist_ok=True)
    kp = np.stack([np.linspace(20, 200, 21), np.linspace(30, 100, 21), np.ones(21)], axis=1)
    kp_hidden = kp.copy()
    kp_hidden[3, 2] = 0
    data = {
        'images': [
            {'id': 5, 'file_name': '00000005.jpg', 'width': 224, 'height': 224},
            {'id': 5 + FREIHAND_TRAIN_FRAMES, 'file_name': '00032565.jpg', 'width': 224, 'height': 224},
        ],
        'annotations': [
            {'id': 1, 'image_id': 5, 'bbox': [20, 30, 180, 70], 'keypoints': kp.reshape(-1).tolist()},
            {
                'id': 2,
                'image_id': 5 + FREIHAND_TRAIN_FRAMES,
                'bbox': [20, 30, 180, 70],
                'keypoints': kp_hidden.reshape(-1).tolist(),
            },
        ],
        'categories': [{'id': 1, 'name': 'hand'}],
    }
    (folder / 'test_freihand.json').write_text(json.dumps(data))
    for im in data['images']:
        cv2.imwrite(str(folder / im['file_name']), np.full((224, 224, 3), 120, np.uint8))
    return folder, kp


def test_mmpose_format_2d_only(tmp_path):
    root, kp = _write_mmpose(tmp_path / 'mm')
    ann = FreiHandAnnotations(root)
    assert ann.format == 'mmpose' and len(ann) == 2
    assert [f.annotation_index for f in ann] == [5, 5]
    np.testing.assert_allclose(ann[0].keypoints_2d, kp[:, :2])
    assert ann[0].keypoints_valid.all() and ann[1].keypoints_valid.sum() == 20 and not ann[1].keypoints_valid[3]
    assert ann[0].K is None and ann[0].joints_cam is None
    item = FreiHandDataset(root, input_size=64)[1]
    assert item['valid'].tolist() == [False, True] and not item['joints_valid'].any()
    assert item['joints_vis'][1].sum() == 20 and not item['joints_vis'][1, 3]
    np.testing.assert_allclose(
        item['joints_2d'][1, 0].numpy(), [20 * (64 / 224) / 32 - 1, 30 * (64 / 224) / 32 - 1], atol=1e-5
    )
    assert float(item['K'].abs().sum()) == 0.0 and float(item['cam'].abs().sum()) == 0.0
    assert item['center_maps'][1].max() == 1.0 and item['center_maps'][0].max() == 0.0


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match='format must be one of'):
        FreiHandAnnotations(tmp_path, format='coco')
    with pytest.raises(FileNotFoundError, match='training_xyz.json'):
        FreiHandAnnotations(tmp_path, format='official')
    with pytest.raises(FileNotFoundError, match='freihand'):
        FreiHandAnnotations(tmp_path, format='mmpose')
    root = _write_official(tmp_path / 'frei', with_mano=False)
    (root / 'training_K.json').write_text(json.dumps([K_FIX] * 2))
    with pytest.raises(ValueError, match='3 K entries'):
        FreiHandAnnotations(root)
    ds = FreiHandDataset(_write_official(tmp_path / 'ok', versions=1), versions=(0, 1))
    with pytest.raises(FileNotFoundError, match='00000004.jpg'):
        ds[4]  # version 1 images are not there


# ---------------------------------------------------------------- the real mmpose test frames


@pytest.fixture(scope='module')
def real():
    if not (FREIHAND_REAL / 'test_freihand.json').is_file():
        pytest.skip(
            f'real FreiHAND frames not available at {FREIHAND_REAL} (shared/realimgs is not part of the ' 'repository)'
        )
    return FreiHandAnnotations(FREIHAND_REAL)


def test_real_frames(real):
    assert real.format == 'mmpose' and len(real) == 8
    groups = {}
    for f in real:
        assert f.image_path.is_file() and f.keypoints_valid.all()
        uv = f.keypoints_2d
        assert (uv > 0).all() and (uv < 224).all()
        x, y, w, h = f.bbox
        assert (uv[:, 0] >= x - 1).all() and (uv[:, 0] <= x + w + 1).all()
        assert (uv[:, 1] >= y - 1).all() and (uv[:, 1] <= y + h + 1).all()
        groups.setdefault(f.annotation_index, []).append(f)
    # 4 background versions of 2 annotated frames: the same keypoints, ids 32560 apart
    assert sorted(groups) == [355, 17620] and all(len(g) == 4 for g in groups.values())
    for g in groups.values():
        for f in g[1:]:
            np.testing.assert_array_equal(f.keypoints_2d, g[0].keypoints_2d)
    ds = FreiHandDataset(FREIHAND_REAL, input_size=128)
    item = ds[0]
    assert item['image'].shape == (3, 128, 128) and item['valid'].tolist() == [False, True]
    assert item['joints_vis'][1].all()
    np.testing.assert_allclose((item['joints_2d'][1].numpy() + 1) * 64 * 224 / 128, real[0].keypoints_2d, atol=1e-3)
