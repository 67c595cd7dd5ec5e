"""Teacher-labelled real photos as training samples, and a trainer run that mixes them with synthetic data."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hand_recon_train.datasets.teacher import TeacherDataset, select_frames
from hand_recon_train.teacher.corpus import CorpusImage
from hand_recon_train.teacher.labels import DEFAULT_SETTINGS, build_labels, write_labels
from hand_recon_train.teacher.runner import read_raw
from hand_recon_train.train import load_config, train

FIXTURE = Path(__file__).parent / 'fixtures' / 'teacher' / 'raw_sample.jsonl'
TRAIN_ROOT = Path(__file__).resolve().parents[1].parent / 'shared' / 'realimgs-train'
pytestmark = pytest.mark.skipif(
    not (TRAIN_ROOT / 'handsdataset').is_dir(), reason='../shared/realimgs-train is not here'
)


@pytest.fixture
def labels(tmp_path):
    """A label file for the two fixture frames (the real images, the fixture's raw teacher answers)."""
    raw = read_raw(FIXTURE)
    recs, corpus = {}, []
    boxes = {
        '16_pic00003.jpg': [[90, 150, 260, 420], [380, 150, 560, 420]],
        '1528664299.56_pic00000.jpg': [[247.2, 164.8, 363.2, 444.8]],
    }
    for name, bx in boxes.items():
        path = TRAIN_ROOT / 'handsdataset' / 'train' / name
        rec = dict(raw[f'handsdataset/train/{name}'])
        rec['path'] = str(path)
        recs[str(path)] = rec
        corpus.append(CorpusImage(path, 'handsdataset', name.split('_pic')[0], 'train', bx))
    doc = build_labels(corpus, recs, DEFAULT_SETTINGS, TRAIN_ROOT)
    out = tmp_path / 'labels.json'
    write_labels(doc, out)
    return out, doc


def test_frames_are_selected_only_when_fully_labelled(labels):
    _, doc = labels
    keep, dropped = select_frames(doc, 'train')
    assert len(keep) == 2 and dropped == {}
    doc = json.loads(json.dumps(doc))
    doc['images'][0]['missed_boxes'] = [1]
    doc['images'][1]['hands'][0]['flags']['trusted'] = False
    keep, dropped = select_frames(doc, 'train')
    assert keep == [] and dropped == {'teacher missed a boxed hand': 1, 'untrusted hand': 1}
    assert select_frames(doc, 'val')[0] == []


def test_sample_has_sides_keypoints_camera_and_centres(labels):
    path, doc = labels
    ds = TeacherDataset(TRAIN_ROOT, 'train', input_size=128, labels=str(path))
    two = next(i for i in range(len(ds)) if len(ds.annotations[i]['hands']) == 2)
    s = ds[two]
    assert s['valid'].tolist() == [True, True] and not s['has_mano'].any()
    assert s['joints_vis'].all() and (s['joints_2d'].abs() <= 1).all()
    assert (s['cam'][:, 0] > 0).all()  # weak camera fitted from the world landmarks
    # each side's centre-map peak sits on that side's keypoints (network stride 8 at 128 px -> 16 x 16)
    for side in range(2):
        peak = np.unravel_index(int(s['center_maps'][side].argmax()), s['center_maps'][side].shape)
        kp = (s['joints_2d'][side].mean(0).numpy() + 1) / 2 * 16
        assert abs(peak[1] - kp[0]) < 3 and abs(peak[0] - kp[1]) < 3
    # the left hand of the (non-mirrored) photo is on the person's left = the image's right side
    left_x = s['joints_2d'][0, :, 0].mean()
    right_x = s['joints_2d'][1, :, 0].mean()
    assert left_x > right_x


@pytest.mark.slow
def test_trainer_mixes_teacher_photos_with_synthetic_data(labels, tmp_path):
    path, _ = labels
    source = f'[{{type: teacher, root: {TRAIN_ROOT}, split: train, weight: 0.5, options: {{labels: {path}}}}}]'
    config = load_config(
        'tiny_cpu',
        [
            f'train.out_dir={tmp_path / "run"}',
            'train.max_steps=2',
            'data.train_size=8',
            f'data.real={source}',
            'data.synth_weight=0.5',
            'data.augment={enabled: true}',
        ],
    )
    torch.manual_seed(0)
    result = train(config)
    manifest = json.loads((tmp_path / 'run' / 'manifest.json').read_text())
    assert manifest['data']['real'][0]['type'] == 'teacher'
    assert np.isfinite(result['history'][-1]['total'])


def test_zoomed_samples_crop_around_a_hand_and_keep_its_keypoints(labels):
    path, _ = labels
    plain = TeacherDataset(TRAIN_ROOT, 'train', input_size=128, labels=str(path))
    zoom = TeacherDataset(TRAIN_ROOT, 'train', input_size=128, labels=str(path), zoom_prob=1.0, seed=3)
    assert len(zoom) == 4 * len(plain)  # several crops per frame
    one = next(i for i in range(len(plain)) if len(plain.annotations[i]['hands']) == 1)
    extent_plain = np.ptp(plain[one]['joints_2d'][1].numpy(), axis=0).max()
    extents = []
    for index in range(one, len(zoom), len(plain)):
        s = zoom[index]
        assert s['valid'].tolist() == [False, True]
        # a crop of the photo: the hand never spans less of the network input, and mostly far more
        extents.append(np.ptp(s['joints_2d'][1][s['joints_vis'][1]].numpy(), axis=0).max())
        assert extents[-1] >= 0.99 * extent_plain
        assert (s['joints_2d'][1][s['joints_vis'][1]].abs() <= 1).all()
        peak = np.unravel_index(int(s['center_maps'][1].argmax()), s['center_maps'][1].shape)
        kp = (s['joints_2d'][1][s['joints_vis'][1]].mean(0).numpy() + 1) / 2 * 16
        assert abs(peak[1] - kp[0]) < 3 and abs(peak[0] - kp[1]) < 3
    assert max(extents) > 1.5 * extent_plain
    # seeded: the same index gives the same crop; the window lies inside the photo around the hand
    assert torch.equal(zoom[one]['image'], zoom[one]['image'])
    im = zoom.annotations[one]
    window = zoom.zoom_window(im, (480, 640), np.random.default_rng(0))
    kp = np.asarray(im['hands'][0]['keypoints'])
    x0, y0, x1, y1 = window
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    assert x0 <= np.median(kp[:, 0]) <= x1 and y0 <= np.median(kp[:, 1]) <= y1


def test_zoom_options_are_checked(labels):
    path, _ = labels
    for bad in ({'zoom_prob': 1.5}, {'zoom_context': (0.5, 2.0)}, {'zoom_context': (3.0, 2.0)}, {'length': 0}):
        with pytest.raises(ValueError):
            TeacherDataset(TRAIN_ROOT, 'train', input_size=128, labels=str(path), **bad)
