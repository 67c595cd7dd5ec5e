"""Real-image benchmark metrics on hand-made cases with known answers."""

import math

import numpy as np
import pytest

from hand_recon_ros.detection_metrics import (
    DetectionTally,
    LabelledHand,
    PredictedHand,
    box_iou,
    box_size,
    keypoint_box,
    match_hands,
)


def _hand(cx, cy, size=100.0, seed=0):
    """21 keypoints spread over a size x size square centred at (cx, cy)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-0.5, 0.5, size=(21, 2)) * size
    pts -= pts.mean(axis=0)
    return pts + np.array([cx, cy])


def _label(kps, side='right'):
    return LabelledHand(box=keypoint_box(kps), side=side, keypoints=kps, visible=np.ones(21, bool))


def test_box_helpers():
    assert box_size([10, 20, 50, 100]) == 80
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    np.testing.assert_allclose(keypoint_box([[1, 5], [3, 2], [np.nan, 0]]), [1, 2, 3, 5])


def test_known_offset_gives_that_error_and_pck():
    gt = _hand(200, 200)
    size = box_size(keypoint_box(gt))
    tally = DetectionTally()
    tally.add_frame([_label(gt)], [PredictedHand(gt + np.array([3.0, 4.0]), 'right')])
    s = tally.summary()
    assert s['recall'] == 1 and s['precision'] == 1 and s['handedness'] == 1
    assert s['err_px'] == pytest.approx(5.0)
    assert s['err_rel'] == pytest.approx(5.0 / size)
    assert s['pck'] == 1.0  # 5 px < 0.1 * ~95 px
    far = DetectionTally()
    far.add_frame([_label(gt)], [PredictedHand(gt + np.array([0.0, 0.3 * size]), 'right')])
    assert far.summary()['pck'] == 0.0 and far.summary()['recall'] == 1


def test_swapped_side_counts_as_wrong_handedness():
    gt = _hand(100, 100)
    tally = DetectionTally()
    tally.add_frame([_label(gt, 'left')], [PredictedHand(gt, 'right')])
    assert tally.summary()['handedness'] == 0.0 and tally.summary()['recall'] == 1.0


def test_duplicate_detection_is_one_match_and_one_false_positive():
    gt = _hand(100, 100)
    tally = DetectionTally()
    pairs = tally.add_frame([_label(gt)], [PredictedHand(gt, 'right'), PredictedHand(gt + 2, 'right')])
    assert pairs == [(0, 0)]  # the closer one wins, one-to-one
    s = tally.summary()
    assert s['recall'] == 1.0 and s['precision'] == 0.5


def test_position_check_rejects_a_hand_outside_half_the_box():
    gt = _hand(100, 100, size=100)
    box = keypoint_box(gt)
    half = box_size(box) / 2
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert match_hands([[cx + half * 1.01, cy]], [box]) == []
    assert match_hands([[cx + half * 0.99, cy]], [box]) == [(0, 0)]
    assert match_hands([[cx, cy - half * 0.99]], [box]) == [(0, 0)]


def test_two_hand_frames_and_one_to_one_assignment():
    a, b = _hand(100, 100, seed=1), _hand(300, 100, seed=2)
    tally = DetectionTally()
    # predictions listed in the other order: the assignment must still pair each with its own hand
    pairs = tally.add_frame(
        [_label(a, 'left'), _label(b, 'right')], [PredictedHand(b, 'right'), PredictedHand(a, 'left')]
    )
    assert sorted(pairs) == [(0, 1), (1, 0)]
    tally.add_frame([_label(a, 'left'), _label(b, 'right')], [PredictedHand(a, 'left')])
    s = tally.summary()
    assert s['two_hand_frames'] == 2 and s['both_found'] == 0.5
    assert s['recall'] == pytest.approx(3 / 4) and s['handedness'] == 1.0


def test_one_hand_seen_twice_over_an_overlapping_pair_is_found_but_not_with_both_sides():
    # two overlapping hands; the model fires both side maps at one spot inside both boxes
    a, b = _hand(100, 100, seed=1), _hand(150, 100, seed=2)
    tally = DetectionTally()
    pairs = tally.add_frame(
        [_label(a, 'left'), _label(b, 'right')],
        [PredictedHand(_hand(120, 100, seed=3), 'right'), PredictedHand(_hand(130, 100, seed=3), 'left')],
    )
    assert sorted(pairs) == [(0, 0), (1, 1)]
    s = tally.summary()
    assert s['both_found'] == 1.0  # position-only matching counts it
    assert s['both_found_sides'] == 0.0
    seen = DetectionTally()
    # both predictions with the same side: never "both, sides right"
    seen.add_frame([_label(a, 'left'), _label(b, 'right')], [PredictedHand(a, 'right'), PredictedHand(b, 'right')])
    assert seen.summary()['both_found'] == 1.0 and seen.summary()['both_found_sides'] == 0.0
    right = DetectionTally()
    right.add_frame([_label(a, 'left'), _label(b, 'right')], [PredictedHand(b, 'right'), PredictedHand(a, 'left')])
    assert right.summary()['both_found_sides'] == 1.0


def test_3d_wrist_aligned_error_and_root_depth():
    gt2d = _hand(100, 100)
    j = np.random.default_rng(3).normal(size=(21, 3)) * 0.03 + np.array([0, 0, 0.5])
    pred3d = j + np.array([0.1, 0.0, 0.2])  # pure translation: aligned error 0, depth off by 200 mm
    pred3d[5] += np.array([0.0, 0.021, 0.0])  # one joint 21 mm off -> mean 1 mm
    lab = LabelledHand(box=keypoint_box(gt2d), side='right', keypoints=gt2d, joints_cam=j)
    tally = DetectionTally()
    tally.add_frame([lab], [PredictedHand(gt2d, 'right', joints_cam=pred3d)])
    s = tally.summary()
    assert s['mpjpe_mm'] == pytest.approx(1.0) and s['root_depth_mm'] == pytest.approx(200.0)
    assert 0.0 < s['pa_mpjpe_mm'] < 3.0  # the one joint's 21 mm, spread over the hand by the alignment
    # a hand turned and scaled as a whole has no pose error after alignment
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    rigid = DetectionTally()
    rigid.add_frame([lab], [PredictedHand(gt2d, 'right', joints_cam=1.3 * j @ turn.T + 0.1)])
    assert rigid.summary()['pa_mpjpe_mm'] == pytest.approx(0.0, abs=1e-6) and rigid.summary()['mpjpe_mm'] > 10


def test_empty_tally_gives_nan_not_zero():
    s = DetectionTally().summary()
    assert math.isnan(s['recall']) and math.isnan(s['pck'])
