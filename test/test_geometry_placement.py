"""geometry.placement.place_hands: the one placement of model-frame hands used by the pipeline and the evaluation."""

import numpy as np

from hand_recon_ros.conventions import ROOT_MIDDLE_MCP
from hand_recon_ros.geometry.camera import (
    LetterboxTransform,
    project_points,
    solve_translation,
    weak_perspective_project,
    weak_to_translation,
)
from hand_recon_ros.geometry.placement import place_hands

K = np.array([[600.0, 0, 330], [0, 610.0, 235], [0, 0, 1]])
TRANSFORM = LetterboxTransform(480, 640, 256)


def _hands(n, seed=0):
    rng = np.random.default_rng(seed)
    joints = [rng.normal(0, 0.04, (21, 3)) + rng.normal(0, 0.1, 3) for _ in range(n)]
    verts = [rng.normal(0, 0.04, (50, 3)) + j[ROOT_MIDDLE_MCP] for j in joints]
    cams = [[float(rng.uniform(0.8, 2.0)), float(rng.normal(0, 0.3)), float(rng.normal(0, 0.3))] for _ in range(n)]
    return joints, verts, cams


def test_a_placed_hand_is_the_root_relative_hand_translated_and_projected():
    joints, verts, cams = _hands(4)
    for i, placed in enumerate(place_hands(joints, verts, cams, K, TRANSFORM)):
        root = joints[i][ROOT_MIDDLE_MCP]
        np.testing.assert_allclose(placed.joints, joints[i] - root + placed.translation, atol=1e-12)
        np.testing.assert_allclose(placed.vertices, verts[i] - root + placed.translation, atol=1e-12)
        np.testing.assert_array_equal(placed.keypoints_2d, project_points(placed.joints, K))
        # the translation fits the weak-perspective 2D joints (same answer as the single-hand solver)
        weak_2d = TRANSFORM.normalized_to_original(weak_perspective_project(joints[i] - root, *cams[i]))
        np.testing.assert_allclose(placed.translation, solve_translation(joints[i] - root, weak_2d, K), atol=1e-6)
        assert placed.translation[2] > 0


def test_hands_are_independent_of_their_batch():
    joints, verts, cams = _hands(3, seed=1)
    together = place_hands(joints, verts, cams, K, TRANSFORM)
    for i in range(3):
        alone = place_hands(joints[i : i + 1], verts[i : i + 1], cams[i : i + 1], K, TRANSFORM)[0]
        np.testing.assert_allclose(alone.joints, together[i].joints, atol=1e-9)


def test_degenerate_cameras_are_not_placed_and_keep_their_slot():
    joints, verts, cams = _hands(4, seed=2)
    cams[1] = [0.0, 0.1, 0.1]
    cams[2] = [float('nan'), 0.0, 0.0]
    placed = place_hands(joints, verts, cams, K, TRANSFORM)
    assert [p is None for p in placed] == [False, True, True, False]
    assert place_hands(joints[1:3], verts[1:3], cams[1:3], K, TRANSFORM) == [None, None]


def test_weak_perspective_depth_uses_the_weak_camera_only():
    joints, verts, cams = _hands(2, seed=3)
    for i, placed in enumerate(place_hands(joints, verts, cams, K, TRANSFORM, weak_perspective=True)):
        np.testing.assert_array_equal(placed.translation, weak_to_translation(*cams[i], K, TRANSFORM))
