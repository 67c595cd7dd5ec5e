"""FrameResult <-> ROS messages. No inference here: only conversion and packing."""

import array
import os

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Vector3

from hand_recon_ros import conventions
from hand_recon_ros.geometry.camera import intrinsics_from_camera_info
from hand_recon_ros.msg import Hand, HandArray, HandModelInfo
from hand_recon_ros.results import (
    DEPTH_SOURCE_CAMERA_INFO,
    DEPTH_SOURCE_DEPTH_IMAGE,
    DEPTH_SOURCE_FALLBACK_FOV,
    HAND_UPDATES,
    FrameResult,
)
from hand_recon_ros.ros.node_status import NodeStatus, diagnostic_values

DEPTH_SOURCE_CODES = {
    DEPTH_SOURCE_CAMERA_INFO: Hand.DEPTH_CAMERA_INFO,
    DEPTH_SOURCE_FALLBACK_FOV: Hand.DEPTH_FALLBACK_FOV,
    DEPTH_SOURCE_DEPTH_IMAGE: Hand.DEPTH_IMAGE,
}


def intrinsics_for(camera_info, width, height, use_rectified=False, fallback_fov_deg=60.0, warn=None):
    """K (3, 3) and its source for an image of this size from the latest CameraInfo (or the fallback)."""
    warn = warn or (lambda key, text: None)
    if camera_info is None:
        warn(
            'no_camera_info',
            f'no CameraInfo received: using the fallback field of view '
            f'({fallback_fov_deg:.0f} deg horizontal); metric depth is approximate',
        )
        K, source = intrinsics_from_camera_info(
            np.zeros(9), np.zeros(12), width, height, fallback_fov_deg=fallback_fov_deg
        )
        return K, source
    k = np.array(camera_info.k, np.float64).reshape(-1)
    p = np.array(camera_info.p, np.float64).reshape(-1)
    if camera_info.width and camera_info.height and (camera_info.width, camera_info.height) != (width, height):
        # Calibrated at another resolution (e.g. a resized stream): scale K and P to the image first, so
        # the plausibility check (principal point inside the image) sees the image's own intrinsics.
        sx, sy = width / camera_info.width, height / camera_info.height
        warn(
            'info_size',
            f'CameraInfo is for {camera_info.width}x{camera_info.height} but images are '
            f'{width}x{height}: scaling the intrinsics',
        )
        if k.size == 9:
            k = (k.reshape(3, 3) * np.array([[sx], [sy], [1.0]])).reshape(-1)
        if p.size == 12:
            p = (p.reshape(3, 4) * np.array([[sx], [sy], [1.0]])).reshape(-1)
    K, source = intrinsics_from_camera_info(
        k, p, width, height, use_rectified=use_rectified, fallback_fov_deg=fallback_fov_deg
    )
    if source != DEPTH_SOURCE_CAMERA_INFO:
        warn(
            'uncalibrated',
            f'CameraInfo has no usable intrinsics (k = {list(np.asarray(camera_info.k))}): '
            f'using the fallback field of view ({fallback_fov_deg:.0f} deg); metric depth is approximate',
        )
    return K, source


def _points(xyz):
    # tolist(): plain Python floats in one C pass instead of a numpy scalar -> float() per coordinate
    return [Point(x=x, y=y, z=z) for x, y, z in np.asarray(xyz, np.float64).tolist()]


# "unknown" covariance: -1 in the first element. Copied per message: with ROS_PYTHON_CHECK_FIELDS=1 the
# setter keeps the array itself, and a subscriber in the same process must not be able to edit the constant.
_UNKNOWN_COVARIANCE = np.zeros(36)
_UNKNOWN_COVARIANCE[0] = -1.0


def hand_msg(hand, publish_vertices=True):
    hand.validate()
    msg = Hand()
    msg.handedness = Hand.LEFT if hand.handedness == 'left' else Hand.RIGHT
    msg.score = float(hand.score)
    msg.handedness_score = float(hand.handedness_score)
    msg.track_id = int(hand.track_id)
    msg.joints = _points(hand.joints_3d)
    kp = np.asarray(hand.keypoints_2d, np.float32)
    msg.keypoints_2d = kp.reshape(-1)
    msg.joint_confidence = np.asarray(hand.joint_confidence, np.float32)
    msg.bbox_2d = np.concatenate([kp.min(axis=0), kp.max(axis=0)])
    pose = msg.wrist_pose.pose
    pose.position.x, pose.position.y, pose.position.z = np.asarray(hand.wrist_position, np.float64).tolist()
    q = np.asarray(hand.wrist_orientation, np.float64).tolist()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
    msg.wrist_pose.covariance = _UNKNOWN_COVARIANCE.copy()
    if hand.joint_velocities is not None:
        msg.joint_velocities = [
            Vector3(x=x, y=y, z=z) for x, y, z in np.asarray(hand.joint_velocities, np.float64).tolist()
        ]
    if publish_vertices and hand.vertices is not None:
        msg.vertices = array.array('f', np.ascontiguousarray(hand.vertices, np.float32).reshape(-1).tobytes())
    msg.mano_pose = np.asarray(hand.mano_pose, np.float32)
    msg.mano_shape = np.asarray(hand.mano_shape, np.float32)
    msg.weak_camera = np.asarray(hand.weak_camera, np.float32)
    bits = 0
    for name in hand.refined_factors:
        bits |= 1 << HAND_UPDATES.index(name)
    msg.refined_factors = bits
    msg.depth_source = DEPTH_SOURCE_CODES.get(hand.depth_source, Hand.DEPTH_WEAK_PERSPECTIVE)
    return msg


def hand_array_msg(frame: FrameResult, header, publish_vertices=True, smoothed=False, processing_ms=0.0):
    msg = HandArray()
    msg.header = header
    msg.hands = [hand_msg(h, publish_vertices) for h in frame.hands]
    msg.image_height, msg.image_width = (int(v) for v in frame.image_size)
    msg.camera_k = np.asarray(frame.intrinsics, np.float64).reshape(9)
    msg.smoothed = bool(smoothed)
    msg.processing_time_ms = float(processing_ms)
    msg.model_id = frame.model_id
    return msg


def hand_array_to_numpy(msg):
    """Decode a HandArray into plain arrays (used by tools and tests; works on any HandArray)."""
    hands = []
    for h in msg.hands:
        verts = np.frombuffer(h.vertices, np.float32).reshape(-1, 3) if len(h.vertices) else None
        hands.append(
            {
                'side': 'left' if h.handedness == Hand.LEFT else 'right',
                'score': h.score,
                'track_id': h.track_id,
                'handedness_score': h.handedness_score,
                'joint_confidence': np.asarray(h.joint_confidence, np.float32),
                'joint_velocities': (
                    np.array([[v.x, v.y, v.z] for v in h.joint_velocities], np.float64)
                    if len(h.joint_velocities)
                    else None
                ),
                'joints': np.array([[p.x, p.y, p.z] for p in h.joints], np.float64),
                'keypoints_2d': np.asarray(h.keypoints_2d, np.float32).reshape(21, 2),
                'vertices': verts,
            }
        )
    return hands


def model_info_msg(info: dict):
    msg = HandModelInfo()
    msg.network = info['network']
    msg.model_id = info.get('model_id', '')
    msg.weights_file = info.get('weights_file', '')
    msg.weights_sha256 = info.get('weights_sha256', '')
    msg.weights_description = info.get('weights_description', '')
    msg.hand_model = 'standin' if info['hand_model_is_standin'] else 'mano'
    msg.hand_model_is_standin = bool(info['hand_model_is_standin'])
    msg.hand_model_identity = info.get('hand_model', '')
    msg.device = info['device']
    msg.precision = info['precision']
    msg.network_runner = str(info.get('network_runner', ''))
    msg.joint_names = list(conventions.JOINT_NAMES)
    msg.joint_parents = list(conventions.JOINT_PARENTS)
    msg.num_vertices = int(info['num_vertices'])
    msg.faces_right = array.array('I', np.asarray(info['faces_right'], np.uint32).reshape(-1).tobytes())
    msg.faces_left = array.array('I', np.asarray(info['faces_left'], np.uint32).reshape(-1).tobytes())
    return msg


def overlay_msg(image_bgr, frame, faces, header):
    """The hands' meshes drawn on the input image; faces: side -> (F, 3) triangle indices."""
    from hand_recon_ros.hand_model.render import render_mesh_overlay
    from hand_recon_ros.ros.image_conversion import numpy_to_imgmsg

    colors = {'right': (80, 160, 230), 'left': (230, 170, 90)}
    hands = [h for h in frame.hands if h.vertices is not None]
    out = image_bgr
    if hands:  # one call: both meshes depth-sorted together, the nearer hand covers the farther one
        out = render_mesh_overlay(
            image_bgr,
            [h.vertices for h in hands],
            [faces[h.handedness] for h in hands],
            frame.intrinsics,
            [colors[h.handedness] for h in hands],
        )
    return numpy_to_imgmsg(out, 'bgr8', header=header)


def fastdds_profile_file() -> str:
    """The Fast DDS XML profile this process was started with: FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS 3, ROS 2
    Kilted on), else FASTRTPS_DEFAULT_PROFILES_FILE (Humble, Jazzy; deprecated from Kilted on); '' when none."""
    return os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', '') or os.environ.get('FASTRTPS_DEFAULT_PROFILES_FILE', '')


def diagnostics_msg(status: NodeStatus, name: str, hardware_id: str, stamp) -> DiagnosticArray:
    """One DiagnosticStatus built from the node's status object alone (node_status.diagnostic_values)."""
    diagnostic = diagnostic_values(status)
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [
        DiagnosticStatus(
            level=bytes([diagnostic.level]),
            name=name,
            message=diagnostic.message,
            hardware_id=hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in diagnostic.values],
        )
    ]
    return arr
