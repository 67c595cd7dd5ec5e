"""Cameras mounted on their side or upside down: the image is turned upright for the network and every result is
turned back into the camera's own pixels and optical frame (real network forward, real hand model)."""

import numpy as np
import pytest
import torch

from hand_recon_ros.geometry import rotations
from hand_recon_ros.geometry.camera import project_points
from hand_recon_ros.geometry.image_rotation import QUARTER_TURNS, TurnedView, pixel_map, turn_image, turned_intrinsics
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor


@pytest.mark.parametrize('degrees', QUARTER_TURNS)
def test_turned_pixels_and_virtual_camera_agree_with_opencv_and_projection(degrees):
    rng = np.random.default_rng(degrees)
    width, height = 160, 96
    image = np.zeros((height, width, 3), np.uint8)
    cols, rows = rng.integers(0, width, 30), rng.integers(0, height, 30)
    image[rows, cols] = 255
    turned = turn_image(image, degrees)
    A = pixel_map(degrees, width, height)
    centres = np.stack([cols + 0.5, rows + 0.5, np.ones(30)], axis=1) @ A.T
    assert (turned[np.floor(centres[:, 1]).astype(int), np.floor(centres[:, 0]).astype(int)] == 255).all()
    assert turned.sum() == image.sum()  # nothing else lit, nothing lost
    # a 3D point seen by the camera lands where the virtual camera (K', R) projects it in the turned image
    K = np.array([[210.0, 0.0, 70.0], [0.0, 190.0, 52.0], [0.0, 0.0, 1.0]])
    K_virtual, R = turned_intrinsics(K, degrees, width, height)
    points = rng.uniform([-0.3, -0.2, 0.5], [0.3, 0.2, 2.0], (50, 3))
    uv = project_points(points, K)
    uv_turned = np.c_[uv, np.ones(50)] @ A.T
    np.testing.assert_allclose(project_points(points @ R.T, K_virtual), uv_turned[:, :2], atol=1e-9)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1.0)
    view = TurnedView(degrees, width, height, K)
    np.testing.assert_allclose(view.pixels_back(uv_turned[:, :2]), uv, atol=1e-9)
    np.testing.assert_allclose(view.points_back(points @ R.T), points, atol=1e-12)


def test_bad_turns_are_refused():
    for bad in (45, -90, 360, 90.5, True, 'x'):
        with pytest.raises((ValueError, TypeError)):
            turn_image(np.zeros((4, 4, 3), np.uint8), bad)


@pytest.fixture(scope='module')
def upright_frames():
    from hand_recon_train.synth import SynthConfig, SynthDataset

    data = SynthDataset(SynthConfig(image_size=640, supersample=1), seed=4242, length=3)
    frames = []
    for i in range(3):
        raw = data.raw(i)
        K = raw['K'].astype(np.float64).copy()
        K[1, 2] -= 80.0
        frames.append((np.ascontiguousarray(raw['image'][80:560]), K))
    return frames


@pytest.mark.parametrize('degrees', [90, 180, 270])
def test_a_rolled_camera_gets_the_upright_answers_in_its_own_frame(upright_frames, degrees):
    torch.set_num_threads(1)
    upright = create_reconstructor(PipelineConfig(device='cpu', precision='fp32', refine=False))
    rolled = create_reconstructor(PipelineConfig(device='cpu', precision='fp32', refine=False, image_rotation=degrees))
    assert rolled.info()['image_rotation'] == degrees
    undo = (360 - degrees) % 360  # the camera rolled the other way: its image is the upright one turned back
    compared = 0
    for image, K in upright_frames:
        height, width = image.shape[:2]
        camera_image = turn_image(image, undo)
        K_camera, R_camera = turned_intrinsics(K, undo, width, height)  # p_camera = R_camera @ p_upright
        a = upright.reconstruct(image, K)
        b = rolled.reconstruct(camera_image, K_camera)
        assert b.image_size == camera_image.shape[:2]
        np.testing.assert_allclose(b.intrinsics, K_camera)
        assert [(h.handedness, round(h.score, 5)) for h in a.hands] == [
            (h.handedness, round(h.score, 5)) for h in b.hands
        ]
        A = pixel_map(undo, width, height)
        for ha, hb in zip(a.hands, b.hands):
            expected_2d = ha.keypoints_2d.astype(np.float64) @ A[:2, :2].T + A[:2, 2]
            np.testing.assert_allclose(hb.keypoints_2d, expected_2d, atol=0.05)  # px
            np.testing.assert_allclose(hb.joints_3d, ha.joints_3d @ R_camera.T, atol=1e-4)  # m
            np.testing.assert_allclose(hb.vertices, ha.vertices @ R_camera.T, atol=1e-4)
            np.testing.assert_allclose(hb.wrist_position, R_camera @ ha.wrist_position, atol=1e-4)
            wrist_a = rotations.quaternion_to_matrix(ha.wrist_orientation.astype(np.float64))
            wrist_b = rotations.quaternion_to_matrix(hb.wrist_orientation.astype(np.float64))
            np.testing.assert_allclose(wrist_b, R_camera @ wrist_a, atol=1e-5)
            root_a = rotations.axis_angle_to_matrix(ha.mano_pose[:3].astype(np.float64))
            root_b = rotations.axis_angle_to_matrix(hb.mano_pose[:3].astype(np.float64))
            np.testing.assert_allclose(root_b, R_camera @ root_a, atol=1e-5)
            np.testing.assert_allclose(hb.mano_pose[3:], ha.mano_pose[3:])
            # the published 2D keypoints stay the projection of the published joints, in the camera's image
            np.testing.assert_allclose(
                project_points(hb.joints_3d.astype(np.float64), K_camera), hb.keypoints_2d, atol=0.05
            )
            compared += 1
    assert compared >= 3


def test_the_turn_is_a_runtime_setting_and_a_bad_one_changes_nothing():
    rec = create_reconstructor(PipelineConfig(weights='untrained', device='cpu', backbone='resnet18', input_size=128))
    rec.set_runtime(image_rotation=180)
    with pytest.raises(ValueError, match='0, 90, 180, 270'):
        rec.set_runtime(image_rotation=45, detection_threshold=0.9)
    assert rec.image_rotation == 180 and rec.detection_threshold != 0.9
    frame = rec.reconstruct(np.zeros((60, 100, 3), np.uint8))  # fallback intrinsics: the camera's, not the turned
    assert frame.image_size == (60, 100) and frame.intrinsics[0, 2] == pytest.approx(50.0)
