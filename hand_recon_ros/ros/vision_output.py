"""Optional vision_msgs/Detection2DArray output: one box per hand, class 'left_hand' / 'right_hand'.

Generic detection tools (trackers, vision_msgs RViz plugins) read this without our messages. vision_msgs
is not on PyPI, so it is imported only when needed and every entry point returns None without it.
"""

import numpy as np

__all__ = ['CLASS_IDS', 'vision_msgs_available', 'detections_msg', 'create_detections_publisher']

CLASS_IDS = {'left': 'left_hand', 'right': 'right_hand'}
VISION_MISSING_TEXT = (
    'vision_msgs is not installed (it is not on PyPI): no Detection2DArray output; '
    'source a full ROS 2 install (ros-<distro>-vision-msgs) to get it'
)
_missing_logged = False


def _vision_msgs():
    try:
        from vision_msgs import msg
    except ImportError:
        return None
    return msg


def vision_msgs_available():
    return _vision_msgs() is not None


def _hand_box(hand, image_size):
    """Keypoint bounding box clipped to the image: (u_min, v_min, u_max, v_max) pixels."""
    kp = np.asarray(hand.keypoints_2d, np.float64)
    if kp.shape != (21, 2) or not np.isfinite(kp).all():
        raise ValueError(f'{hand.handedness} hand: keypoints_2d must be 21 finite (u, v) pairs, got {kp.shape}')
    height, width = image_size
    u0, v0 = np.clip(kp.min(axis=0), 0, [width, height])
    u1, v1 = np.clip(kp.max(axis=0), 0, [width, height])
    return float(u0), float(v0), float(u1), float(v1)


def detections_msg(frame_result, header):
    """FrameResult + the input image header -> vision_msgs/Detection2DArray, or None without vision_msgs.

    Per hand: bbox from its 2D keypoints, one hypothesis (class id, detection score, wrist pose in the
    camera frame) and id = the track id, as vision_msgs reserves ``id`` for tracking.
    """
    vm = _vision_msgs()
    if vm is None:
        return None
    out = vm.Detection2DArray()
    out.header = header
    detections = []
    for hand in frame_result.hands:
        u0, v0, u1, v1 = _hand_box(hand, frame_result.image_size)
        det = vm.Detection2D()
        det.header = header
        det.id = str(int(hand.track_id))
        center = det.bbox.center
        # Humble and later: vision_msgs/Pose2D with a position; Foxy: geometry_msgs/Pose2D with x, y.
        point = center.position if hasattr(center, 'position') else center
        point.x, point.y = (u0 + u1) / 2.0, (v0 + v1) / 2.0
        center.theta = 0.0
        det.bbox.size_x, det.bbox.size_y = u1 - u0, v1 - v0
        hyp = vm.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = CLASS_IDS[hand.handedness]
        hyp.hypothesis.score = float(hand.score)
        pose = hyp.pose.pose
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in hand.wrist_position)
        q = np.asarray(hand.wrist_orientation, np.float64)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
        det.results = [hyp]
        detections.append(det)
    out.detections = detections
    return out


def create_detections_publisher(node, topic='~/detections', qos=5, create=None, **kwargs):
    """A Detection2DArray publisher, or None (logged once per process) without vision_msgs.

    create: the node's publisher factory (default ``node.create_publisher``; the node passes its
    ``create_lifecycle_publisher``); kwargs go to it (e.g. qos_overriding_options)."""
    global _missing_logged
    vm = _vision_msgs()
    if vm is None:
        if not _missing_logged:
            _missing_logged = True
            node.get_logger().warning(VISION_MISSING_TEXT)
        return None
    return (create or node.create_publisher)(vm.Detection2DArray, topic, qos, **kwargs)
