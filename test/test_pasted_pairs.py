"""Overlapping real hand pairs made by pasting one teacher-labelled hand over another photo's hand."""

import numpy as np
import pytest

from hand_recon_train.datasets.pasted import PasteConfig, PastedPairsDataset, hand_mask, pair_from_frames
from hand_recon_train.datasets.teacher import TeacherDataset

from test_teacher_dataset import TRAIN_ROOT, labels  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(
    not (TRAIN_ROOT / 'handsdataset').is_dir(), reason='../shared/realimgs-train is not here'
)


def _hand(side, centre, size=60.0):
    """A flat synthetic 21-keypoint hand: wrist below, five straight fingers fanned upwards."""
    kps = [np.array(centre) + [0, size / 2]]
    for f in range(5):
        base = np.array(centre) + [(f - 2) * size / 6, 0]
        for k in range(4):
            kps.append(base + [(f - 2) * size / 30 * k, -k * size / 8])
    return {'side': side, 'keypoints': np.array(kps), 'world': np.zeros((21, 3))}


def test_mask_covers_the_skeleton_and_not_the_background():
    hand = _hand('left', (100, 100))
    mask = hand_mask((200, 200), hand['keypoints'])
    on = mask[np.round(hand['keypoints'][:, 1]).astype(int), np.round(hand['keypoints'][:, 0]).astype(int)]
    assert (on > 0.5).all()
    assert mask[5, 5] == 0 and mask[195, 195] == 0
    assert 0.05 < (mask > 0.5).mean() < 0.2


def test_paste_moves_the_donor_labels_and_hides_covered_base_keypoints():
    rng = np.random.default_rng(3)
    base = np.full((240, 320, 3), 40, np.uint8)
    donor = np.full((240, 320, 3), 200, np.uint8)
    base_hand, donor_hand = _hand('left', (160, 120)), _hand('left', (80, 100))
    out = pair_from_frames(base, base_hand, donor, donor_hand, rng, PasteConfig(offset=(0.3, 0.3)))
    assert out is not None
    image, hands = out
    assert [h.side for h in hands] == ['left', 'right']  # same-side donor mirrored into the other side
    moved = hands[1].keypoints
    # the pasted hand's pixels are the donor's (bright) at its keypoints, the base's elsewhere
    px = np.round(moved).astype(int)
    assert (image[px[:, 1], px[:, 0]] > 150).all()
    assert (image[2, 2] == 40).all()
    # centres 0.3 hand sizes apart: some base keypoints are hidden, not all
    assert 0 < (~hands[0].visible).sum() < 21
    hidden = np.round(hands[0].keypoints[~hands[0].visible]).astype(int)
    assert (image[hidden[:, 1], hidden[:, 0]] > 120).all()
    # mirroring negates the donor's world x
    assert np.allclose(hands[1].world, donor_hand['world'] * [-1, 1, 1])


def test_paste_outside_the_frame_is_refused():
    rng = np.random.default_rng(0)
    img = np.zeros((100, 100, 3), np.uint8)
    base_hand = _hand('left', (50, 50), size=90)
    out = pair_from_frames(
        img,
        base_hand,
        img,
        _hand('right', (50, 50), size=90),
        rng,
        PasteConfig(offset=(0.9, 0.9), size_ratio=(1.2, 1.2)),
    )
    assert out is None


def test_dataset_gives_two_hand_samples_from_one_hand_photos(labels):  # noqa: F811
    path, _ = labels
    ds = PastedPairsDataset(TRAIN_ROOT, 'train', input_size=128, labels=str(path), seed=1)
    single = TeacherDataset(TRAIN_ROOT, 'train', input_size=128, labels=str(path))
    assert len(ds.annotations) == sum(len(a['hands']) == 1 for a in single.annotations) >= 1
    s = ds[0]
    assert s['valid'].tolist() == [True, True]
    assert (s['center_maps'].flatten(1).max(1).values == 1).all()
    # deterministic per index
    again = ds[0]
    assert (s['image'] == again['image']).all() and (s['joints_2d'] == again['joints_2d']).all()


def test_background_bank_crops_avoid_every_known_hand(labels):  # noqa: F811
    from hand_recon_train.synth.backgrounds import BackgroundBank

    path, doc = labels
    bank = BackgroundBank(path, TRAIN_ROOT)
    assert len(bank) == 2
    rng = np.random.default_rng(0)
    crops = [bank.sample(rng, 96, 128) for _ in range(20)]
    got = [c for c in crops if c is not None]
    assert got and all(c.shape == (96, 128, 3) for c in got)
    # a box covering the whole photo leaves no background
    bank.entries = [(p, np.array([[0, 0, 10000, 10000]], float)) for p, _ in bank.entries]
    assert bank.sample(rng, 96, 128) is None


def test_synthetic_scenes_on_real_backgrounds(labels):  # noqa: F811
    from hand_recon_train.synth.generator import SynthConfig, SynthGenerator

    path, _ = labels
    plain = SynthConfig(image_size=128, supersample=1)
    real = SynthConfig(
        image_size=128,
        supersample=1,
        real_background_prob=1.0,
        real_background_labels=str(path),
        real_background_root=str(TRAIN_ROOT),
    )
    assert plain.config_hash() != real.config_hash()
    assert (
        plain.config_hash()
        == SynthConfig(
            image_size=128, supersample=1, real_background_prob=0.0, real_background_labels='x'
        ).config_hash()
    )
    with pytest.raises(ValueError, match='real_background_labels'):
        SynthConfig(real_background_prob=0.5)
    a = SynthGenerator(plain, seed=4).sample(0)
    b = SynthGenerator(real, seed=4).sample(0)
    # same scene and labels, another background
    assert np.allclose(a['joints_3d'], b['joints_3d'])
    assert (a['seg'] == b['seg']).all()
    bg = a['seg'] == 0
    assert np.abs(a['image'].astype(int) - b['image'].astype(int))[::2, ::2][bg].mean() > 10
