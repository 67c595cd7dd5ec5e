"""Placing hands by an aligned depth image (RGB-D cameras): the geometry, the depth messages, the stamp matching, and
the pipeline on a rendered two-hand frame whose true depth is known."""

import numpy as np
import pytest

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.geometry.depth_placement import DepthPlacementConfig, depth_fix, depth_pixels, read_depth
from hand_recon_ros.pipeline import place_by_depth
from hand_recon_ros.results import DEPTH_SOURCE_CAMERA_INFO, DEPTH_SOURCE_DEPTH_IMAGE, HandResult

WALL_M = 1.5  # what the depth camera sees behind the hands


def synthetic_rgbd(seed=4242, index=1):
    """A rendered two-hand frame (480 x 640, interacting hands ~0.4 m away) with its K, a depth image in metres of
    the same camera (the hands' rendered depth in front of a wall) and the true joints per side."""
    from hand_recon_train.synth import SynthConfig, SynthDataset
    from hand_recon_train.synth.depth import sample_depth_image

    dataset = SynthDataset(SynthConfig(image_size=640, supersample=1), seed=seed, length=index + 1)
    raw = dataset.raw(index)
    depth = sample_depth_image(raw, dataset.generator.model, background_m=WALL_M)[80:560]
    image = np.ascontiguousarray(raw['image'][80:560])
    K = raw['K'].astype(np.float64).copy()
    K[1, 2] -= 80.0
    truth = {side: raw['joints_3d'][i] for i, side in enumerate(SIDES) if raw['valid'][i]}
    return image, K, np.ascontiguousarray(depth), truth


@pytest.fixture(scope='module')
def rgbd():
    return synthetic_rgbd()


def project(K, points):
    uv = points @ K.T
    return uv[:, :2] / uv[:, 2:]


def test_a_hand_placed_too_far_is_brought_onto_the_depth_image(rgbd):
    image, K, depth, truth = rgbd
    joints = truth['left']  # the hand in front (its keypoints read its own skin)
    keypoints = project(K, joints)
    for wrong in (0.75, 1.3):  # a monocular placement: size and distance off together, projections the same
        fix = depth_fix(joints * wrong, keypoints, depth, depth.shape)
        assert fix is not None and fix.points >= 10
        placed = joints * wrong * fix.scale
        assert np.abs(placed[:, 2] - joints[:, 2]).max() < 0.012  # every joint within 12 mm in depth
        np.testing.assert_allclose(project(K, placed), keypoints, atol=1e-4)


def test_holes_half_resolution_and_an_object_in_front_are_tolerated(rgbd):
    image, K, depth, truth = rgbd
    joints, keypoints = truth['left'] * 1.2, project(K, truth['left'])
    base = depth_fix(joints, keypoints, depth, depth.shape).scale
    holes = depth.copy()
    holes[np.random.default_rng(0).random(depth.shape) < 0.6] = 0.0  # 60 % of the pixels without a reading
    assert abs(depth_fix(joints, keypoints, holes, depth.shape).scale - base) < 0.01
    half = np.ascontiguousarray(depth[::2, ::2])  # registered at half the resolution
    assert depth_pixels(depth.shape, half.shape) == (0.5, 0.5)
    assert abs(depth_fix(joints, keypoints, half, depth.shape).scale - base) < 0.02
    covered = depth.copy()
    x0, y0 = keypoints.min(0).astype(int)
    covered[:, : x0 + int(0.4 * np.ptp(keypoints[:, 0]))] = 0.2  # a board in front of 40 % of the hand
    assert abs(depth_fix(joints, keypoints, covered, depth.shape).scale - base) < 0.02


def test_no_reading_of_the_hand_leaves_it_where_it_was(rgbd):
    image, K, depth, truth = rgbd
    joints, keypoints = truth['left'], project(K, truth['left'])
    assert depth_fix(joints, keypoints, np.zeros_like(depth), depth.shape) is None  # no readings at all
    assert depth_fix(joints, keypoints + 5000.0, depth, depth.shape) is None  # outside the depth image
    assert depth_fix(joints, keypoints, np.full_like(depth, WALL_M), depth.shape) is None  # 3.6x: not this hand
    with pytest.raises(ValueError, match='not registered'):
        depth_fix(joints, keypoints, depth[:, :400], depth.shape)
    with pytest.raises(ValueError, match='scale_range'):
        DepthPlacementConfig(scale_range=(1.2, 2.0))
    readings = read_depth(depth, np.array([[np.nan, 1.0], [-50.0, -50.0], keypoints[0]]))
    assert np.isnan(readings[:2]).all() and 0.3 < readings[2] < 0.5


def test_place_by_depth_scales_the_hands_it_reads_and_keeps_the_others(rgbd):
    image, K, depth, truth = rgbd
    hands = []
    for side, wrong in (('left', 1.25), ('right', 1.0)):
        joints = truth[side] * wrong
        keypoints = project(K, joints) + (0.0 if side == 'left' else 4000.0)  # the right one off the image
        hands.append(
            HandResult(
                handedness=side,
                score=0.9,
                joints_3d=joints.astype(np.float32),
                keypoints_2d=keypoints.astype(np.float32),
                joint_confidence=np.ones(21, np.float32),
                wrist_position=joints[0].astype(np.float32),
                wrist_orientation=np.array([0, 0, 0, 1], np.float32),
                vertices=np.tile(joints[:1], (778, 1)).astype(np.float32),
                depth_source=DEPTH_SOURCE_CAMERA_INFO,
            )
        )
    placed, count = place_by_depth(hands, depth, depth.shape)
    assert count == 1 and placed[1] is hands[1]
    left = placed[0]
    assert left.depth_source == DEPTH_SOURCE_DEPTH_IMAGE
    assert abs(left.wrist_position[2] - truth['left'][0, 2]) < 0.012
    np.testing.assert_allclose(left.joints_3d[0], left.wrist_position)
    np.testing.assert_allclose(left.vertices[0], left.wrist_position)
    np.testing.assert_array_equal(left.keypoints_2d, hands[0].keypoints_2d)
    left.validate()


def test_the_pipeline_places_its_hands_by_the_depth_image(rgbd):
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor

    image, K, depth, truth = rgbd
    reconstructor = create_reconstructor(PipelineConfig(device='cpu', precision='fp32', landmarks=True))
    without = reconstructor.reconstruct(image, K)
    assert without.depth_placed == -1 and 'depth' not in without.timings_ms
    placed = reconstructor.reconstruct(image, K, depth_m=depth)
    assert placed.depth_placed == 2 and placed.timings_ms['depth'] > 0
    errors = {}
    for hand, before in zip(placed.hands, without.hands):
        assert hand.depth_source == DEPTH_SOURCE_DEPTH_IMAGE and before.depth_source == DEPTH_SOURCE_CAMERA_INFO
        # the fit followed the depth's 3D (the same crop keypoints, a pose that reproduces them a little differently)
        # and the hand was placed along its rays: the keypoints are still the joints' projections
        np.testing.assert_allclose(hand.keypoints_2d, project(K, hand.joints_3d.astype(np.float64)), atol=0.05)
        assert np.median(np.linalg.norm(hand.keypoints_2d - before.keypoints_2d, axis=1)) < 3.0
        true_root = truth[hand.handedness][0]
        errors[hand.handedness] = (
            np.linalg.norm(before.wrist_position - true_root),
            np.linalg.norm(hand.wrist_position - true_root),
        )
    # the left hand in front: the crop fit already placed it well, the depth keeps it there; the right hand behind
    # moves 116 -> 31 mm (what is left is its fitted pose: its readings agree with the placed hand)
    assert errors['left'][1] < 0.015
    assert errors['right'][1] < 0.5 * errors['right'][0]


def test_depth_messages_read_as_metres():
    from hand_recon_ros.ros.image_conversion import ImageConversionError, numpy_to_imgmsg, to_depth_m

    mm = np.array([[0, 400], [1500, 65535]], np.uint16)
    np.testing.assert_allclose(to_depth_m(numpy_to_imgmsg(mm, '16UC1')), [[0.0, 0.4], [1.5, 65.535]], rtol=1e-6)
    np.testing.assert_allclose(to_depth_m(numpy_to_imgmsg(mm, 'mono16'), units_m=0.0001)[1], [0.15, 6.5535], rtol=1e-6)
    big = numpy_to_imgmsg(mm.astype('>u2'), '16UC1')
    big.is_bigendian, big.data = 1, mm.astype('>u2').tobytes()
    np.testing.assert_allclose(to_depth_m(big)[0, 1], 0.4, rtol=1e-6)
    metres = np.array([[np.nan, 0.5], [np.inf, 2.0]], np.float32)
    out = to_depth_m(numpy_to_imgmsg(metres, '32FC1'))
    assert out.dtype == np.float32 and np.isnan(out[0, 0]) and out[1, 1] == 2.0
    with pytest.raises(ImageConversionError, match='unsupported depth encoding') as refused:
        to_depth_m(numpy_to_imgmsg(np.zeros((2, 2, 3), np.uint8), 'rgb8'))
    assert refused.value.kind == 'encoding'
    truncated = numpy_to_imgmsg(mm, '16UC1')
    truncated.data = truncated.data[:3]
    with pytest.raises(ImageConversionError) as refused:
        to_depth_m(truncated)
    assert refused.value.kind == 'truncated'


def test_the_depth_image_closest_in_time_is_taken_within_the_gap():
    from hand_recon_ros.ros.depth_input import DepthBuffer, DepthCounts

    buffer = DepthBuffer(size=3)
    assert buffer.closest(10.0, 0.02) == (None, float('inf'))
    for stamp in (9.9, 9.933, 9.967, 10.0):  # the oldest falls out
        buffer.add(stamp, f'depth {stamp}')
    assert buffer.closest(10.004, 0.02) == ('depth 10.0', pytest.approx(0.004))
    assert buffer.closest(9.95, 0.02)[0] in ('depth 9.933', 'depth 9.967')
    missing, gap = buffer.closest(9.9, 0.02)
    assert missing is None and gap == pytest.approx(0.033)
    buffer.clear()
    assert buffer.closest(10.0, 1.0)[0] is None
    assert DepthCounts(received=3, matched=2).summary().startswith('received 3, matched 2, unmatched 0')
    with pytest.raises(ValueError):
        DepthBuffer(size=0)


def test_depth_joints_are_the_readings_where_the_hand_is_read(rgbd):
    from hand_recon_ros.geometry.depth_placement import depth_joints

    image, K, depth, truth = rgbd
    joints = truth['left']
    keypoints = project(K, joints)
    tilted = (joints - joints[0]) * [1.0, 1.0, -1.0]  # a crop network's 3D with the depth order reversed
    measured = depth_joints(tilted, keypoints, K, depth, depth.shape)
    assert measured is not None and measured.shape == (21, 3)
    np.testing.assert_allclose(
        project(K, measured)[read_ok(depth, keypoints)], keypoints[read_ok(depth, keypoints)], atol=1e-6
    )
    # the joints read on the hand: their true depth within a centimetre (skin + 8 mm)
    assert np.median(np.abs(measured[:, 2] - joints[:, 2])) < 0.01
    assert depth_joints(tilted, keypoints, K, np.zeros_like(depth), depth.shape) is None  # nothing read


def read_ok(depth, keypoints):
    readings = read_depth(depth, keypoints)
    return np.isfinite(readings) & (np.abs(readings - np.nanmedian(readings)) <= 0.1)
