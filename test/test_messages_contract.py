"""What the Hand / HandArray / HandModelInfo fields promise (msg/*.msg comments, README "Messages"):
per-joint confidence from the segmentation maps, handedness score, hand-frame axes, joint velocities,
model identity, track id 0 on the raw topic; checked on the maps, the pipeline and over real DDS."""

import numpy as np
import pytest
import torch

from hand_recon_ros import conventions
from hand_recon_ros.acr import confidence
from hand_recon_ros.geometry import rotations
from hand_recon_ros.hand_model import parts
from hand_recon_ros.results import HandResult
from hand_recon_ros.smoothing import HandTracker

SEG = 32  # segmentation map side for an input of 64 px
INPUT = 64


def test_every_joint_reads_the_parts_it_lies_on():
    assert len(confidence.JOINT_PARTS) == 21
    assert confidence.JOINT_PARTS[0] == (0,)  # wrist: the palm
    assert set(confidence.JOINT_PARTS[9]) == {4, 0}  # middle MCP: middle1 + palm
    assert set(confidence.JOINT_PARTS[10]) == {5, 4}  # middle PIP
    for tip, distal in zip((4, 8, 12, 16, 20), (15, 3, 6, 12, 9)):  # tips: the distal phalanx only
        assert confidence.JOINT_PARTS[tip] == (distal,)
        assert conventions.MANO_JOINT_NAMES[distal].endswith('3')
    assert {p for ps in confidence.JOINT_PARTS for p in ps} == set(range(16))


def _seg_with(cls_boxes, background=8.0):
    """(33, SEG, SEG) logits: background everywhere, each (class, rows, cols) box wins where it is."""
    logits = torch.zeros(parts.NUM_CLASSES, SEG, SEG)
    logits[parts.BACKGROUND] = background
    for cls, rows, cols in cls_boxes:
        logits[cls, rows, cols] = 20.0
    return logits


def test_joint_confidence_is_high_on_the_joints_part_and_low_where_something_else_is_seen():
    # square 64x64 image: no letterbox padding, 2 px per segmentation cell
    middle_mcp = parts.class_id('right', 4)
    other_hand = parts.class_id('left', 4)
    seg = _seg_with([(middle_mcp, slice(0, 8), slice(0, 8)), (other_hand, slice(16, 24), slice(16, 24))])
    kp = np.full((21, 2), 60.0)  # background cell
    kp[9] = (5.0, 5.0)  # on its own part
    kp[10] = (5.0, 5.0)  # PIP reads middle2/middle1: middle1 (its parent) is there
    kp[5] = (40.0, 40.0)  # index MCP where the other hand's class wins (occluded)
    kp[20] = (70.0, 10.0)  # outside the image
    conf = confidence.joint_confidences(seg, kp, 'right', (64, 64), INPUT)
    assert conf.shape == (21,) and conf.dtype == np.float32
    assert conf[9] > 0.99 and conf[10] > 0.99
    assert conf[5] < 1e-3 and conf[0] < 1e-3  # occluded / background
    assert conf[20] == 0.0  # never seen by the network
    # the same pixels read for the left hand: the right hand's class is not its part
    left = confidence.joint_confidences(seg, kp, 'left', (64, 64), INPUT)
    assert left[9] < 1e-3


def test_joint_confidence_follows_the_letterbox_of_a_wide_image():
    # 128x64 image: padded to 128x128 (32 px top/bottom), scaled by 0.5 to 64 -> cell = 4 original px
    cls = parts.class_id('left', 0)
    seg = _seg_with([(cls, slice(8, 10), slice(4, 6))])  # input rows 16..19, cols 8..11 -> orig v 0..8
    kp = np.full((21, 2), 100.0)
    kp[0] = (18.0, 2.0)
    conf = confidence.joint_confidences(seg, kp, 'left', (64, 128), INPUT)
    assert conf[0] > 0.99 and conf[1:].max() < 1e-3


def test_handedness_score_compares_both_sides_at_the_centre():
    logits = torch.full((1, 2, 4, 4), -5.0)
    logits[0, 0, 1, 2] = 2.0  # left strong
    logits[0, 1, 1, 2] = -2.0  # right weak at the same cell
    logits[0, 1, 3, 3] = 3.0  # right alone elsewhere
    left, right_same, right_alone = confidence.handedness_scores(logits, [0, 0, 0], [0, 1, 1], [1, 1, 3], [2, 2, 3])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    assert left == pytest.approx(sig(2) / (sig(2) + sig(-2)), rel=1e-5)
    assert right_same == pytest.approx(1 - left, rel=1e-5)
    assert right_alone == pytest.approx(sig(3) / (sig(3) + sig(-5)), rel=1e-5)


@pytest.fixture(scope='module')
def reconstructor():
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor

    torch.set_num_threads(1)
    return create_reconstructor(PipelineConfig(device='cpu', num_threads=1))  # the shipped network


def test_pipeline_fills_per_joint_confidence_handedness_score_and_model_id(reconstructor):
    from hand_recon_ros.tools.sample_frames import sample_frames

    frames = list(sample_frames(n=2, seed=0))
    hands = []
    for f in frames:
        result = reconstructor.reconstruct(f['image'], f['K'])
        assert result.model_id == reconstructor.model_id == reconstructor.info()['model_id']
        hands += result.hands
    assert hands, 'the shipped network finds hands in the bundled frames'
    weights = reconstructor.weights_sha256[:12]
    assert reconstructor.model_id.startswith('acr/') and f'|weights:{weights}|' in reconstructor.model_id
    for hand in hands:
        hand.validate()
        assert 0.0 <= hand.handedness_score <= 1.0 and hand.handedness_score != 0.5
        conf = hand.joint_confidence
        assert ((conf >= 0) & (conf <= 1)).all()
        assert np.ptp(conf) > 0.05, 'not the detection score copied 21 times'


@pytest.mark.parametrize('side', ['right', 'left'])
def test_wrist_orientation_axes_are_the_documented_hand_frame(reconstructor, side):
    """Hand.msg: right: fingers -x, thumb side +z, back of the hand +y; left: fingers +x, thumb +z, back +y."""
    rng = np.random.default_rng(3)
    fingers = {'right': -1.0, 'left': 1.0}[side]
    for _ in range(5):
        aa = torch.tensor(rng.normal(0, 0.15, (16, 3)), dtype=torch.float32)
        aa[0] = torch.tensor(rng.normal(0, 1.5, 3), dtype=torch.float32)
        rot6d = rotations.matrix_to_rot6d(rotations.axis_angle_to_matrix(aa), layout='interleaved')
        params = torch.cat([torch.tensor([1.4, 0.0, 0.0]), rot6d.reshape(-1), torch.zeros(10)])[None]
        (hand,) = reconstructor.hands_from_params(
            params, [side], [0.9], (480, 640), np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
        )
        q = torch.tensor(hand.wrist_orientation, dtype=torch.float64)[None]
        R = rotations.quaternion_to_matrix(q)[0].numpy()
        j = hand.joints_3d.astype(np.float64)
        local = (j - j[0]) @ R  # camera -> hand frame (R maps hand-frame vectors to camera)
        unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
        assert unit(local[9])[0] * fingers > 0.8  # wrist -> middle MCP
        assert unit(local[5] - local[17])[2] > 0.8  # pinky MCP -> index MCP: +z
        palm_normal = unit(np.cross(local[5], local[17]) * fingers)  # back of the hand
        assert palm_normal[1] > 0.8


def _hand(joints, side='right'):
    return HandResult(
        handedness=side,
        score=0.9,
        joints_3d=joints.astype(np.float32),
        keypoints_2d=np.zeros((21, 2), np.float32),
        joint_confidence=np.ones(21, np.float32),
        wrist_position=joints[0].astype(np.float32),
        wrist_orientation=np.array([0, 0, 0, 1], np.float32),
    )


def test_smoother_publishes_joint_velocities_from_the_second_frame():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.03, (21, 3)) + [0, 0, 0.5]
    velocity = rng.normal(0, 0.2, (21, 3))
    tracker = HandTracker()
    dt = 1 / 30
    out = []
    for i in range(60):
        raw, smooth = tracker.update_with_raw([_hand(base + velocity * i * dt)], 10.0 + i * dt)
        assert raw[0].joint_velocities is None  # the raw copy never carries velocities
        out.append(smooth[0])
    assert out[0].joint_velocities is None
    assert out[1].joint_velocities.shape == (21, 3)
    np.testing.assert_allclose(out[-1].joint_velocities, velocity, rtol=0, atol=2e-3 * np.abs(velocity).max())
    # a hand at rest has zero speed once the derivative filter settles
    tracker = HandTracker()
    for i in range(60):
        last = tracker.update([_hand(base)], 10.0 + i * dt)[0]
    assert np.abs(last.joint_velocities).max() < 1e-9


# ---------------------------------------------------------------------------------------------- real DDS
@pytest.mark.ros
def test_fields_over_dds_from_the_node(ros, start_node):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from hand_recon_ros.msg import HandArray, HandModelInfo
    from hand_recon_ros.ros.image_conversion import numpy_to_imgmsg
    from hand_recon_ros.tools.sample_frames import sample_frames

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node = start_node(
        '-p',
        'device:=cpu',
        '-p',
        'num_threads:=1',
        '-r',
        'image:=/mc_cam/image_raw',
        '-r',
        'camera_info:=/mc_cam/camera_info',
    )
    raw = ros.collect(HandArray, '/hand_recon/hands', reliable)
    smoothed = ros.collect(HandArray, '/hand_recon/hands_smoothed', reliable)
    infos = ros.collect(HandModelInfo, '/hand_recon/hand_model_info', latched)
    pub = ros.node.create_publisher(Image, '/mc_cam/image_raw', reliable)
    info_pub = ros.node.create_publisher(CameraInfo, '/mc_cam/camera_info', reliable)
    ros.spin_until(
        lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and infos,
        timeout=60.0,
        what='the node to come up',
    )
    frames = list(sample_frames(n=3, seed=0))
    for i, f in enumerate(frames):
        msg = numpy_to_imgmsg(f['image'], 'bgr8')
        msg.header.stamp.sec, msg.header.stamp.nanosec = 500, i * 100_000_000  # 10 Hz camera stamps
        msg.header.frame_id = 'mc_cam_optical'
        cam = CameraInfo(header=msg.header, width=640, height=480)
        cam.k = np.asarray(f['K'], float).reshape(9)
        cam.p = np.hstack([f['K'], np.zeros((3, 1))]).reshape(12)
        info_pub.publish(cam)
        ros.spin_for(0.2)
        pub.publish(msg)
        ros.spin_until(
            lambda i=i: len(raw) == i + 1 and len(smoothed) == i + 1, timeout=60.0, what=f'the results of frame {i}'
        )
    info = infos[0]
    assert info.model_id and info.model_id.startswith(info.network + '|weights:' + info.weights_sha256[:12])
    for msg in raw + smoothed:
        assert msg.model_id == info.model_id
    assert any(m.hands for m in raw), 'the shipped network finds hands in the bundled frames'
    for msg in raw:
        for hand in msg.hands:
            assert hand.track_id == 0 and len(hand.joint_velocities) == 0  # untracked, no smoother
            assert 0.0 <= hand.handedness_score <= 1.0
            conf = np.asarray(hand.joint_confidence)
            assert ((conf >= 0) & (conf <= 1)).all() and np.ptp(conf) > 0.0
            assert hand.wrist_pose.covariance[0] == -1.0 and not np.any(np.asarray(hand.wrist_pose.covariance)[1:])
    seen = {}
    for msg in smoothed:
        for hand in msg.hands:
            assert hand.track_id >= 1
            if hand.track_id in seen:
                assert len(hand.joint_velocities) == 21  # second frame of a track on: velocities
                v = np.array([[p.x, p.y, p.z] for p in hand.joint_velocities])
                assert np.isfinite(v).all()
            else:
                assert len(hand.joint_velocities) == 0
            seen[hand.track_id] = True
    assert any(len(h.joint_velocities) == 21 for m in smoothed for h in m.hands), 'a track lasted two frames'
    node.stop()
