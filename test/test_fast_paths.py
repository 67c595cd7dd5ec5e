"""The per-frame fast paths give exactly what the straightforward formulas give.

Covered: the ImageNet normalisation through a lookup table, the cv2 max filter of the centre-map NMS,
find_peaks sorting only the candidates, the root quaternion reused from params_to_mano, the single-thread
scope of the post-network work, the depth-source branch of hands_from_params, and the HandArray filling.
"""

import math

import numpy as np
import pytest
import torch

from hand_recon_ros.acr.decoding import find_peaks, nms_mask
from hand_recon_ros.acr.params import params_to_mano
from hand_recon_ros.acr.preprocess import IMAGENET_MEAN, IMAGENET_STD, letterbox, normalize_rgb
from hand_recon_ros.geometry import rotations
from hand_recon_ros.geometry.camera import (
    LetterboxTransform,
    solve_translation,
    weak_perspective_project,
    weak_to_translation,
)
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
from hand_recon_ros.runtime import single_intra_op_thread


def imagenet_formula(u8):
    """The float32 operation sequence of the ImageNet normalisation, written out."""
    x = u8.astype(np.float32)
    x *= 1.0 / 255.0
    x -= IMAGENET_MEAN
    x /= IMAGENET_STD
    return x


@pytest.mark.parametrize('shape', [(1, 1, 3), (7, 3, 3), (97, 131, 3), (480, 640, 3)])
def test_imagenet_lookup_table_is_bit_identical_to_the_formula(shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    image.reshape(-1, 3)[:256] = np.arange(256)[: image.size // 3, None]  # every value where it fits
    for view in (image, image[:, ::2], image[::-1], image.transpose(1, 0, 2)):
        out = normalize_rgb(view, 'imagenet')
        assert out.dtype == np.float32 and out.shape == view.shape
        assert np.array_equal(out, imagenet_formula(view))
    # uint8-valued floats keep taking the formula path
    assert np.array_equal(normalize_rgb(image.astype(np.float64), 'imagenet'), imagenet_formula(image))


@pytest.mark.parametrize('size', [(481, 641), (333, 517), (101, 50), (1, 9)])
def test_letterbox_imagenet_matches_pm1_pixels_through_the_formula(size):
    """Both normalisations see the same warped pixels: recover them from pm1 and normalise by hand."""
    image = np.random.default_rng(size[0]).integers(0, 256, size + (3,), dtype=np.uint8)
    for interpolation in ('linear', 'cubic'):
        pm1, info = letterbox(image, 96, normalization='pm1', interpolation=interpolation)
        net, info2 = letterbox(image, 96, normalization='imagenet', interpolation=interpolation)
        assert info == info2
        pixels = np.rint((pm1[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).astype(np.uint8)
        assert np.array_equal(net[0].permute(1, 2, 0).numpy(), imagenet_formula(pixels))


@pytest.mark.parametrize('kernel', [1, 3, 5, 7])
def test_cv2_nms_mask_equals_max_pool(kernel):
    gen = torch.Generator().manual_seed(kernel)
    for shape in [(1, 2, 64, 64), (3, 2, 5, 9), (2, 2, 2, 3), (1, 1, 1, 1)]:
        maps = torch.randn(shape, generator=gen)
        for candidate in (maps, maps.round(), torch.zeros(shape)):  # plateaus and exact ties too
            pooled = torch.nn.functional.max_pool2d(candidate, kernel, stride=1, padding=kernel // 2)
            assert torch.equal(nms_mask(candidate, kernel), candidate == pooled)
    maps = torch.randn(1, 2, 16, 16, generator=gen)
    maps[0, 0, 3, 3] = -math.inf
    maps[0, 1, 8, 8] = math.inf
    assert torch.equal(nms_mask(maps, 5), maps == torch.nn.functional.max_pool2d(maps, 5, 1, 2))


def test_nms_mask_with_nan_keeps_torch_semantics():
    maps = torch.randn(1, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    maps[0, 0, 5, 5] = math.nan
    mask = nms_mask(maps, 5)
    assert torch.equal(mask, maps == torch.nn.functional.max_pool2d(maps, 5, 1, 2))
    assert not mask[0, 0, 3:8, 3:8].any()  # the NaN window has no peak, as with max_pool2d


def reference_peaks(center_logits, threshold, kernel, max_per_side, min_distance):
    """The straightforward version: stable sort of the whole map, walk it rank by rank."""
    scores = torch.sigmoid(center_logits)
    pooled = torch.nn.functional.max_pool2d(center_logits, kernel, stride=1, padding=kernel // 2)
    candidate = (center_logits == pooled) & (scores > threshold)
    b, sides, h, w = center_logits.shape
    flat = torch.where(candidate, scores, torch.full_like(scores, -1.0)).reshape(b * sides, h * w)
    values, order = torch.sort(flat, dim=1, descending=True, stable=True)
    rows = []
    for row in range(b * sides):
        kept = []
        for rank in range(h * w):
            if float(values[row, rank]) < 0 or len(kept) == max_per_side:
                break
            y, x = divmod(int(order[row, rank]), w)
            if any(math.hypot(y - ky, x - kx) < min_distance for ky, kx in kept):
                continue
            kept.append((y, x))
            rows.append((row // sides, row % sides, float(values[row, rank]), y, x))
    return rows


def test_find_peaks_equals_sorting_the_whole_map():
    gen = torch.Generator().manual_seed(3)
    checked = 0
    for trial in range(30):
        maps = torch.randn(2, 2, 20, 24, generator=gen) * 2.0
        if trial % 3 == 0:
            maps = maps.round()  # many equal scores: ties must stay in raster order
        for threshold, max_per_side, min_distance in ((0.0, 1, 4.0), (0.3, 4, 4.0), (0.0, 10, 0.0), (0.9, 3, 2.0)):
            dets = find_peaks(maps, threshold, 5, max_per_side, min_distance)
            got = list(
                zip(
                    dets.batch_index.tolist(), dets.side.tolist(), dets.score.tolist(), dets.y.tolist(), dets.x.tolist()
                )
            )
            expected = reference_peaks(maps, threshold, 5, max_per_side, min_distance)
            assert got == expected
            checked += len(expected)
    assert checked > 300


def test_params_to_mano_root_quaternion_is_the_root_matrix_quaternion():
    params = torch.randn(5, 109, generator=torch.Generator().manual_seed(1)) * 2.0
    mano = params_to_mano(params)
    assert mano['root_quaternion'].shape == (5, 4)
    for i in range(5):
        one = rotations.matrix_to_quaternion(mano['root_rotation'][i : i + 1])[0]
        assert torch.equal(mano['root_quaternion'][i], one)
    assert torch.allclose(rotations.quaternion_to_matrix(mano['root_quaternion']), mano['root_rotation'], atol=1e-5)
    assert torch.equal(mano['global_orient'], rotations.matrix_to_axis_angle(mano['root_rotation']))


def test_single_intra_op_thread_scope_restores_the_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with single_intra_op_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match='boom'):
            with single_intra_op_thread():
                raise RuntimeError('boom')
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        with single_intra_op_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope='module')
def reconstructor():
    torch.set_num_threads(1)
    return create_reconstructor(
        PipelineConfig(weights='untrained', device='cpu', backbone='resnet18', input_size=128, refine=False)
    )


def test_depth_source_selects_closed_form_or_least_squares(reconstructor):
    rng = np.random.default_rng(2)
    K = np.array([[650.0, 0, 330], [0, 640.0, 235], [0, 0, 1]])
    params = torch.tensor(rng.normal(0, 0.3, (2, 109)), dtype=torch.float32)
    params[:, 0] = torch.tensor([1.3, 1.7])
    params[:, 1:3] = torch.tensor([[0.2, -0.1], [-0.25, 0.05]])
    weak = reconstructor.hands_from_params(
        params, ['left', 'right'], [0.9, 0.8], (480, 640), K, depth_source='weak_perspective'
    )
    full = reconstructor.hands_from_params(params, ['left', 'right'], [0.9, 0.8], (480, 640), K)
    assert len(weak) == len(full) == 2
    transform = LetterboxTransform(480, 640, reconstructor.input_size)
    for hand_weak, hand_full, p in zip(weak, full, params.tolist()):
        rel = hand_full.joints_3d.astype(np.float64) - hand_full.joints_3d[9]
        t_weak = weak_to_translation(*p[:3], K, transform)
        assert np.allclose(hand_weak.joints_3d[9], t_weak, atol=1e-5)
        kp = transform.normalized_to_original(weak_perspective_project(rel, *p[:3]))
        assert np.allclose(hand_full.joints_3d[9], solve_translation(rel, kp, K), atol=1e-4)
        assert hand_weak.depth_source == 'weak_perspective' and hand_full.depth_source == 'camera_info'
        assert not np.allclose(hand_weak.joints_3d[9], hand_full.joints_3d[9], atol=1e-6)
        # the same root-relative mesh, only placed differently
        assert np.allclose(
            hand_weak.vertices - hand_weak.joints_3d[9], hand_full.vertices - hand_full.joints_3d[9], atol=1e-6
        )


def test_hand_array_fields_and_fresh_covariance(reconstructor, monkeypatch):
    from geometry_msgs.msg import _pose_with_covariance
    from std_msgs.msg import Header

    from hand_recon_ros.ros.conversions import hand_array_msg, hand_array_to_numpy

    image = np.random.default_rng(4).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    reconstructor.set_runtime(detection_threshold=0.0)
    frame = reconstructor.reconstruct(image, None)
    assert len(frame.hands) == 2
    msg = hand_array_msg(frame, Header(), publish_vertices=True)
    decoded = hand_array_to_numpy(msg)
    for hand, hand_msg, plain in zip(frame.hands, msg.hands, decoded):
        assert np.array_equal(plain['joints'], hand.joints_3d.astype(np.float64))
        assert np.array_equal(plain['vertices'], hand.vertices)
        kp = hand.keypoints_2d
        assert np.array_equal(hand_msg.bbox_2d, [kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max()])
        position = hand_msg.wrist_pose.pose.position
        assert [position.x, position.y, position.z] == hand.wrist_position.astype(np.float64).tolist()
        q = hand_msg.wrist_pose.pose.orientation
        assert [q.x, q.y, q.z, q.w] == hand.wrist_orientation.astype(np.float64).tolist()
        assert hand_msg.wrist_pose.covariance[0] == -1.0 and not hand_msg.wrist_pose.covariance[1:].any()
    # With field checks on (ROS_PYTHON_CHECK_FIELDS=1) the setter keeps the array it is given: editing one
    # message's covariance must not change the next message's.
    monkeypatch.setattr(_pose_with_covariance, 'ros_python_check_fields', '1')
    msg = hand_array_msg(frame, Header())
    msg.hands[0].wrist_pose.covariance[0] = 5.0
    assert hand_array_msg(frame, Header()).hands[0].wrist_pose.covariance[0] == -1.0
