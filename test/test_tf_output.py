"""Optional TF and vision_msgs outputs: built messages, and the switch-on path with fake tf2_ros / vision_msgs
modules (neither is installable from PyPI, so the real ones are absent here)."""

import sys
import types

import numpy as np
import pytest

pytest.importorskip('geometry_msgs')
from std_msgs.msg import Header  # noqa: E402

from hand_recon_ros.geometry import rotations  # noqa: E402
from hand_recon_ros.results import FrameResult, HandResult  # noqa: E402
from hand_recon_ros.ros import tf_output, vision_output  # noqa: E402


def make_hand(side, wrist, quat=(0.0, 0.0, 0.0, 1.0), score=0.9, track_id=0, kp_offset=(100.0, 50.0)):
    joints = np.asarray(wrist, np.float32) + np.linspace(0, 0.08, 63, dtype=np.float32).reshape(21, 3)
    kp = np.stack([np.linspace(0, 40, 21), np.linspace(0, 60, 21)], axis=1).astype(np.float32) + kp_offset
    return HandResult(
        handedness=side,
        score=score,
        joints_3d=joints,
        keypoints_2d=kp,
        joint_confidence=np.full(21, score, np.float32),
        wrist_position=joints[0].copy(),
        wrist_orientation=np.asarray(quat, np.float32),
        track_id=track_id,
    )


def make_frame(hands, size=(480, 640)):
    return FrameResult(hands=hands, image_size=size, intrinsics=np.eye(3))


def make_header(sec=42, nanosec=7, frame_id='cam_optical'):
    h = Header()
    h.stamp.sec, h.stamp.nanosec, h.frame_id = sec, nanosec, frame_id
    return h


class FakeLogger:
    def __init__(self):
        self.warnings = []

    def warning(self, text):
        self.warnings.append(text)


class FakeNode:
    def __init__(self):
        self.logger = FakeLogger()
        self.destroyed = []
        self.publishers = []

    def get_logger(self):
        return self.logger

    def destroy_publisher(self, pub):
        self.destroyed.append(pub)

    def create_publisher(self, msg_type, topic, qos):
        pub = types.SimpleNamespace(msg_type=msg_type, topic=topic, qos=qos)
        self.publishers.append(pub)
        return pub


# ---------------------------------------------------------------------------------------------- TF
def test_wrist_transforms_carry_header_names_and_normalised_rotation():
    q = rotations.matrix_to_quaternion(rotations.axis_angle_to_matrix(np.array([[0.3, -0.2, 1.1]])))[0]
    q = np.asarray(q, np.float64)
    frame = make_frame(
        [
            make_hand('right', (0.1, -0.05, 0.6), quat=2.0 * q),  # unnormalised on purpose
            make_hand('left', (-0.1, 0.02, 0.55)),
        ]
    )
    tfs = tf_output.wrist_transforms(frame, make_header(), prefix='robot1/')
    assert [t.child_frame_id for t in tfs] == ['robot1/right_hand_wrist', 'robot1/left_hand_wrist']
    for t, hand in zip(tfs, frame.hands):
        assert t.header.frame_id == 'cam_optical'
        assert (t.header.stamp.sec, t.header.stamp.nanosec) == (42, 7)
        tr = t.transform.translation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], hand.wrist_position, atol=1e-7)
    r = tfs[0].transform.rotation
    np.testing.assert_allclose([r.x, r.y, r.z, r.w], q / np.linalg.norm(q), atol=1e-6)
    r = tfs[1].transform.rotation
    assert (r.x, r.y, r.z, r.w) == (0.0, 0.0, 0.0, 1.0)


def test_multi_hand_frames_get_unique_names_by_score_and_bad_input_is_refused():
    frame = make_frame(
        [
            make_hand('right', (0, 0, 0.5), score=0.4),
            make_hand('right', (0.2, 0, 0.5), score=0.8),
            make_hand('right', (0.4, 0, 0.5), score=0.6),
        ]
    )
    names = [t.child_frame_id for t in tf_output.wrist_transforms(frame, make_header(), '/p_')]
    assert names == ['p_right_hand_wrist_2', 'p_right_hand_wrist', 'p_right_hand_wrist_1']
    with pytest.raises(ValueError, match='empty frame_id'):
        tf_output.wrist_transforms(frame, make_header(frame_id=''))
    with pytest.raises(ValueError, match='invalid wrist pose'):
        tf_output.wrist_transforms(make_frame([make_hand('left', (0, 0, 0.5), quat=(0, 0, 0, 0))]), make_header())
    with pytest.raises(TypeError, match='prefix'):
        tf_output.wrist_transforms(frame, make_header(), prefix=None)
    assert tf_output.wrist_transforms(make_frame([]), make_header()) == []


def test_without_tf2_ros_the_broadcaster_is_none_and_logged_once(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tf2_ros', None)  # None in sys.modules makes the import fail
    monkeypatch.setattr(tf_output, '_missing_logged', False)
    node = FakeNode()
    assert tf_output.make_tf_broadcaster(node) is None
    assert tf_output.make_tf_broadcaster(node) is None
    assert len(node.logger.warnings) == 1 and 'tf2_ros is not installed' in node.logger.warnings[0]
    publisher = tf_output.WristTfPublisher(node)
    frame = make_frame([make_hand('left', (0, 0, 0.5))])
    assert publisher.publish(frame, make_header()) == 0
    assert publisher.available is False
    assert publisher.publish(frame, make_header()) == 0
    assert len(node.logger.warnings) == 1


def test_fake_tf2_ros_receives_the_wrist_transforms(monkeypatch):
    sent, created = [], []

    class TransformBroadcaster:
        def __init__(self, node):
            created.append(node)
            self.pub_tf = object()

        def sendTransform(self, transforms):
            sent.append(transforms)

    monkeypatch.setitem(sys.modules, 'tf2_ros', types.SimpleNamespace(TransformBroadcaster=TransformBroadcaster))
    node = FakeNode()
    publisher = tf_output.WristTfPublisher(node)
    frame = make_frame([make_hand('right', (0.1, 0.0, 0.6)), make_hand('left', (-0.1, 0.0, 0.6))])
    assert publisher.publish(make_frame([]), make_header()) == 0  # no hands: nothing created or sent
    assert created == [] and sent == []
    assert publisher.publish(frame, make_header(sec=5), prefix='h_') == 2
    assert publisher.publish(frame, make_header(sec=6), prefix='h_') == 2
    assert created == [node]  # one broadcaster, reused
    assert [[t.child_frame_id for t in batch] for batch in sent] == [['h_right_hand_wrist', 'h_left_hand_wrist']] * 2
    assert [batch[0].header.stamp.sec for batch in sent] == [5, 6]
    assert node.logger.warnings == []
    pub = publisher._broadcaster.pub_tf
    publisher.close()
    assert node.destroyed == [pub]


# ---------------------------------------------------------------------------------------------- vision_msgs
def _fake_vision_msgs():
    """Just enough of vision_msgs (Humble+ layout) for detections_msg: nested default-built fields."""
    ns = types.SimpleNamespace

    def point():
        return ns(x=0.0, y=0.0, z=0.0)

    def pose_with_cov():
        return ns(pose=ns(position=point(), orientation=ns(x=0.0, y=0.0, z=0.0, w=1.0)), covariance=[0.0] * 36)

    class Detection2DArray:
        def __init__(self):
            self.header, self.detections = None, []

    class Detection2D:
        def __init__(self):
            self.header, self.results, self.id = None, [], ''
            self.bbox = ns(center=ns(position=ns(x=0.0, y=0.0), theta=0.0), size_x=0.0, size_y=0.0)

    class ObjectHypothesisWithPose:
        def __init__(self):
            self.hypothesis = ns(class_id='', score=0.0)
            self.pose = pose_with_cov()

    msg = types.ModuleType('vision_msgs.msg')
    msg.Detection2DArray, msg.Detection2D = Detection2DArray, Detection2D
    msg.ObjectHypothesisWithPose = ObjectHypothesisWithPose
    pkg = types.ModuleType('vision_msgs')
    pkg.msg = msg
    return pkg, msg


def test_without_vision_msgs_everything_returns_none(monkeypatch):
    monkeypatch.setitem(sys.modules, 'vision_msgs', None)
    monkeypatch.setattr(vision_output, '_missing_logged', False)
    node = FakeNode()
    assert vision_output.vision_msgs_available() is False
    assert vision_output.detections_msg(make_frame([make_hand('left', (0, 0, 0.5))]), make_header()) is None
    assert vision_output.create_detections_publisher(node) is None
    assert vision_output.create_detections_publisher(node) is None
    assert len(node.logger.warnings) == 1 and 'vision_msgs is not installed' in node.logger.warnings[0]


def test_fake_vision_msgs_gives_boxes_classes_scores_and_track_ids(monkeypatch):
    pkg, msg = _fake_vision_msgs()
    monkeypatch.setitem(sys.modules, 'vision_msgs', pkg)
    monkeypatch.setitem(sys.modules, 'vision_msgs.msg', msg)
    # keypoints span u 100..140, v 50..110; the left hand is shifted partly out of the 640x480 image
    frame = make_frame(
        [
            make_hand('right', (0.1, 0, 0.6), score=0.75, track_id=3),
            make_hand('left', (-0.1, 0, 0.6), score=0.5, track_id=8, kp_offset=(620.0, -20.0)),
        ]
    )
    header = make_header(sec=9)
    out = vision_output.detections_msg(frame, header)
    assert isinstance(out, msg.Detection2DArray)
    assert out.header is header and len(out.detections) == 2
    right, left = out.detections
    assert right.header is header and right.id == '3' and left.id == '8'
    assert (right.bbox.center.position.x, right.bbox.center.position.y) == (120.0, 80.0)
    assert (right.bbox.size_x, right.bbox.size_y) == (40.0, 60.0)
    # clipped to the image: u 620..640, v 0..40
    assert (left.bbox.center.position.x, left.bbox.center.position.y) == (630.0, 20.0)
    assert (left.bbox.size_x, left.bbox.size_y) == (20.0, 40.0)
    hyp = right.results[0]
    assert (hyp.hypothesis.class_id, left.results[0].hypothesis.class_id) == ('right_hand', 'left_hand')
    assert hyp.hypothesis.score == pytest.approx(0.75)
    p = hyp.pose.pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], frame.hands[0].wrist_position, atol=1e-7)
    node = FakeNode()
    pub = vision_output.create_detections_publisher(node, '~/detections', 5)
    assert pub.msg_type is msg.Detection2DArray and pub.topic == '~/detections'
    with pytest.raises(ValueError, match='keypoints_2d'):
        bad = make_hand('left', (0, 0, 0.5))
        bad.keypoints_2d = np.full((21, 2), np.nan, np.float32)
        vision_output.detections_msg(make_frame([bad]), header)
