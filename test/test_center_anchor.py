"""Decoding aids of the pipeline: hands kept on their centre-map peaks (sub-pixel peak centres, the weak camera
shift) and one hand claimed by both sides dropped (keypoint-box overlap)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from hand_recon_ros.conventions import ROOT_MIDDLE_MCP
from hand_recon_ros.geometry.camera import LetterboxTransform
from hand_recon_ros.pipeline import (
    PipelineConfig,
    anchor_camera,
    create_reconstructor,
    drop_overlapping_hands,
    peak_centers,
)

from test_pipeline import make_params


def _maps(values: dict) -> torch.Tensor:
    maps = torch.full((1, 2, 24, 24), -8.0)
    for (side, y, x), p in values.items():
        maps[0, side, y, x] = math.log(p / (1 - p))
    return maps


def test_peak_centre_is_the_pixel_centre_for_a_symmetric_peak_and_moves_toward_a_heavier_neighbour():
    symmetric = _maps({(1, 10, 6): 0.9})
    (centre,) = peak_centers(symmetric, [0], [1], [10], [6])
    # map pixel x is the box centre / 8 - 0.5: normalised (x + 0.5) * 2 / 24 - 1
    assert centre == pytest.approx([(6.5) * 2 / 24 - 1, (10.5) * 2 / 24 - 1], abs=1e-3)
    leaning = _maps({(0, 10, 6): 0.9, (0, 10, 7): 0.6})
    (moved,) = peak_centers(leaning, [0], [0], [10], [6])
    assert moved[0] > centre[0] and moved[0] - centre[0] <= 0.5 * 2 / 24 + 1e-9
    assert moved[1] == pytest.approx(centre[1], abs=1e-3)
    assert peak_centers(symmetric, [], [], [], []).shape == (0, 2)


def test_anchor_camera_moves_the_projected_box_centre_onto_the_anchor_only_beyond_the_tolerance():
    rng = np.random.default_rng(3)
    joints = rng.normal(0, 0.03, (21, 3))
    cam = [1.5, 0.4, -0.1]
    rel = joints[:, :2] - joints[ROOT_MIDDLE_MCP, :2]
    centre = 1.5 * (rel.min(0) + rel.max(0)) / 2 + np.array(cam[1:])
    anchor = centre + np.array([-0.6, 0.3])
    s, tx, ty = anchor_camera(cam, joints, anchor, tolerance=0.1)
    assert s == cam[0]
    moved = s * (rel.min(0) + rel.max(0)) / 2 + np.array([tx, ty])
    np.testing.assert_allclose(moved, anchor, atol=1e-12)
    assert anchor_camera(cam, joints, anchor, tolerance=0.7) == cam  # 0.67 away: inside the tolerance
    assert anchor_camera(cam, joints, np.array([np.nan, 0.0]), tolerance=0.0) == cam
    assert anchor_camera([math.inf, 0.0, 0.0], joints, anchor, tolerance=0.0)[0] == math.inf


@pytest.fixture(scope='module')
def reconstructor():
    torch.set_num_threads(1)
    return create_reconstructor(PipelineConfig(weights='untrained', device='cpu', backbone='resnet18', input_size=128))


def test_anchored_hands_are_placed_at_their_peaks_in_metric_3d(reconstructor):
    rng = np.random.default_rng(7)
    h, w = 480, 640
    K = np.array([[600.0, 0, 320.0], [0, 600.0, 240.0], [0, 0, 1]])
    params = torch.stack([make_params(rng, s=1.3, tx=0.3, ty=0.0), make_params(rng, s=1.3, tx=0.32, ty=0.05)])
    anchors = np.array([[0.3, 0.0], [-0.5, 0.25]])  # the second hand's peak is far from where its params put it
    plain = reconstructor.hands_from_params(params, ['right', 'left'], [0.9, 0.8], (h, w), K)
    anchored = reconstructor.hands_from_params(
        params, ['right', 'left'], [0.9, 0.8], (h, w), K, anchors=anchors, anchor_tolerance=2 * 2 / 16
    )
    transform = LetterboxTransform(h, w, reconstructor.input_size)
    # the first hand's box centre is within the tolerance of its anchor: untouched
    np.testing.assert_array_equal(anchored[0].joints_3d, plain[0].joints_3d)
    # the second is moved: its keypoint box centre lands on the peak (perspective vs weak: a few pixels)
    target = transform.normalized_to_original(anchors[1:])[0]
    box_centre = (anchored[1].keypoints_2d.min(0) + anchored[1].keypoints_2d.max(0)) / 2
    hand_px = np.ptp(anchored[1].keypoints_2d, axis=0).max()
    assert np.linalg.norm(box_centre - target) < 0.1 * hand_px
    # only the weak camera's translation changed: the same hand as placing the shifted camera directly
    assert anchored[1].weak_camera[0] == pytest.approx(plain[1].weak_camera[0])
    assert anchored[1].weak_camera[1] < plain[1].weak_camera[1] - 0.5
    shifted = params[1:].clone()
    shifted[0, 1:3] = torch.from_numpy(anchored[1].weak_camera[1:].astype(np.float32))
    (direct,) = reconstructor.hands_from_params(shifted, ['left'], [0.8], (h, w), K)
    np.testing.assert_allclose(anchored[1].joints_3d, direct.joints_3d, atol=1e-5)
    np.testing.assert_allclose(
        anchored[1].joints_3d - anchored[1].joints_3d[9], plain[1].joints_3d - plain[1].joints_3d[9], atol=1e-5
    )


@pytest.mark.parametrize(
    'bad',
    [
        {'center_anchor': -1.0},
        {'center_anchor': math.inf},
        {'side_separation': -2.0},
        {'max_pair_overlap': 1.5},
        {'max_pair_overlap': math.nan},
    ],
)
def test_bad_anchor_or_separation_is_refused_and_changes_nothing(reconstructor, bad):
    def state():
        r = reconstructor
        return (r.center_anchor, r.side_separation, r.max_pair_overlap, r.detection_threshold)

    before = state()
    with pytest.raises(ValueError):
        reconstructor.set_runtime(detection_threshold=0.9, **bad)
    assert state() == before


def test_whole_frames_carry_peak_centres_and_anchoring_can_be_switched_off(reconstructor):
    image = np.random.default_rng(11).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    reconstructor.set_runtime(detection_threshold=0.0, refine=False)
    try:
        (network_pass,) = reconstructor.run_network([image])
        assert network_pass.peak_centers.shape == (len(network_pass.sides), 2)
        assert network_pass.map_size == 128 // 8
        assert np.all(np.abs(network_pass.peak_centers) <= 1.0)
        reconstructor.set_runtime(center_anchor=0.0)
        off = reconstructor.finish(network_pass)
        reconstructor.set_runtime(center_anchor=1000.0)  # farther than any hand can be: nothing moves
        far = reconstructor.finish(network_pass)
        for a, b in zip(off.hands, far.hands):
            np.testing.assert_array_equal(a.joints_3d, b.joints_3d)
    finally:
        reconstructor.set_runtime(detection_threshold=0.35, center_anchor=2.0)


def test_a_hand_drawn_twice_keeps_its_better_scored_copy_and_separate_hands_stay(reconstructor):
    rng = np.random.default_rng(5)
    K = np.array([[600.0, 0, 320.0], [0, 600.0, 240.0], [0, 0, 1]])
    params = torch.stack([make_params(rng, s=1.3, tx=-0.4, ty=0.0), make_params(rng, s=1.3, tx=0.4, ty=0.0)])
    right, left = reconstructor.hands_from_params(params, ['right', 'left'], [0.6, 0.5], (480, 640), K)
    twice = dataclasses.replace(right, handedness='left', score=0.4)  # the same spot claimed by the left map
    assert drop_overlapping_hands([right, left], 0.7) == [right, left]
    assert drop_overlapping_hands([twice, right, left], 0.7) == [right, left]
    better = dataclasses.replace(twice, score=0.9)
    assert drop_overlapping_hands([right, better], 0.7) == [better]
    assert drop_overlapping_hands([right, better], 1.0) == [right, better]  # 1 = off
    # half-overlapping boxes (IoU 1/3): two hands at 0.7, one at 0.3
    shifted = dataclasses.replace(twice, keypoints_2d=right.keypoints_2d + [np.ptp(right.keypoints_2d[:, 0]) / 2, 0])
    assert len(drop_overlapping_hands([right, shifted], 0.7)) == 2
    assert drop_overlapping_hands([right, shifted], 0.3) == [right]
