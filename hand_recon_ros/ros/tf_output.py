"""Optional wrist TF frames (``publish_tf``): one frame per hand, child of the camera optical frame.

tf2_ros is not on PyPI (ros2-conventions-and-peers.md §2.4), so it is imported only when TF output is
switched on; without it the node logs once and carries on with its other outputs.
"""

import numpy as np
from geometry_msgs.msg import TransformStamped

__all__ = ['wrist_frame_names', 'wrist_transforms', 'make_tf_broadcaster', 'WristTfPublisher']

TF2_MISSING_TEXT = (
    'publish_tf is true but tf2_ros is not installed (it is not on PyPI): no wrist TF frames are '
    'published; source a full ROS 2 install (ros-<distro>-tf2-ros) to get them'
)
_missing_logged = False


def wrist_frame_names(frame_result, prefix=''):
    """'{prefix}{side}_hand_wrist' per hand; further hands of one side (multi-hand mode) get '_1', '_2', ...

    Hands of a side are numbered in descending score order, so the most confident one keeps the plain name.
    """
    if not isinstance(prefix, str):
        raise TypeError(f'tf prefix must be a string, got {type(prefix).__name__}')
    prefix = prefix.lstrip('/')  # tf2 rejects frame ids that start with '/'
    order = sorted(range(len(frame_result.hands)), key=lambda i: -float(frame_result.hands[i].score))
    seen, names = {}, [None] * len(frame_result.hands)
    for i in order:
        side = frame_result.hands[i].handedness
        k = seen.get(side, 0)
        seen[side] = k + 1
        names[i] = f'{prefix}{side}_hand_wrist' + (f'_{k}' if k else '')
    return names


def wrist_transforms(frame_result, header, prefix=''):
    """FrameResult + the input image header -> [geometry_msgs/TransformStamped], one per hand.

    parent = header.frame_id (the camera optical frame), stamp = the image stamp, translation = the wrist
    joint, rotation = the hand's root orientation (unit quaternion x, y, z, w).
    """
    parent = str(header.frame_id).lstrip('/')
    if not parent:
        raise ValueError(
            'the image header has an empty frame_id: TF needs a parent frame '
            '(fix the camera driver or remap the frame)'
        )
    transforms = []
    for hand, child in zip(frame_result.hands, wrist_frame_names(frame_result, prefix)):
        q = np.asarray(hand.wrist_orientation, np.float64)
        p = np.asarray(hand.wrist_position, np.float64)
        norm = float(np.linalg.norm(q)) if q.shape == (4,) else 0.0
        if p.shape != (3,) or not np.isfinite(p).all() or not np.isfinite(norm) or norm < 1e-6:
            raise ValueError(f'{hand.handedness} hand: invalid wrist pose (position {p}, quaternion {q})')
        q = q / norm
        t = TransformStamped()
        t.header.stamp = header.stamp
        t.header.frame_id = parent
        t.child_frame_id = child
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (float(v) for v in p)
        r = t.transform.rotation
        r.x, r.y, r.z, r.w = (float(v) for v in q)
        transforms.append(t)
    return transforms


def make_tf_broadcaster(node):
    """tf2_ros.TransformBroadcaster for the node, or None (logged once per process) without tf2_ros."""
    global _missing_logged
    try:
        from tf2_ros import TransformBroadcaster
    except ImportError:
        if not _missing_logged:
            _missing_logged = True
            node.get_logger().warning(TF2_MISSING_TEXT)
        return None
    return TransformBroadcaster(node)


class WristTfPublisher:
    """Creates the broadcaster on first use (publish_tf may be switched on at runtime) and remembers
    when tf2_ros is missing, so a node calls ``publish`` per frame without checking anything."""

    def __init__(self, node):
        self._node = node
        self._broadcaster = None
        self._unavailable = False

    @property
    def available(self):
        return not self._unavailable

    def publish(self, frame_result, header, prefix=''):
        """Send the wrist frames; returns how many were sent (0 without tf2_ros or without hands)."""
        if self._unavailable or not frame_result.hands:
            return 0
        if self._broadcaster is None:
            self._broadcaster = make_tf_broadcaster(self._node)
            if self._broadcaster is None:
                self._unavailable = True
                return 0
        transforms = wrist_transforms(frame_result, header, prefix)
        self._broadcaster.sendTransform(transforms)
        return len(transforms)

    def close(self):
        """Drop the /tf publisher (lifecycle cleanup)."""
        broadcaster, self._broadcaster = self._broadcaster, None
        pub = getattr(broadcaster, 'pub_tf', None)
        if pub is not None:
            self._node.destroy_publisher(pub)
