#!/usr/bin/env python3
"""Planner-side consumer of hand_recon: HandArray -> standard messages teleoperation and grasping take.

Imports only rclpy, standard message packages, numpy and the project's *message* package
(hand_recon_ros.msg): no torch, no inference code, so it runs on any machine that has the messages.

    python3 examples/hand_consumer.py
    python3 examples/hand_consumer.py --ros-args -p hands_topic:=/cam1/hand_recon/hands_smoothed \
        -p model_info_topic:=/cam1/hand_recon/hand_model_info

Outputs, per side (<side> = left | right), relative to the node (default name hand_consumer):
  ~/<side>/wrist_pose      geometry_msgs/PoseStamped    wrist (MANO root) pose in the camera optical frame
  ~/<side>/operator_frame  geometry_msgs/PoseStamped    the retargeting (operator) frame at the wrist, camera frame
  ~/<side>/keypoints       geometry_msgs/PoseArray      21 keypoints relative to the wrist (see keypoint_frame)
  ~/<side>/keypoints_flat  std_msgs/Float32MultiArray   the same 21 x 3 values, row-major (x, y, z per joint)
  ~/<side>/mesh            shape_msgs/Mesh              watertight hand (778 + 1 vertices), camera frame
Every output of one HandArray is published in the order above from one callback; shape_msgs/Mesh has
no header, so pair it with the wrist_pose published just before (same stamp and frame). examples/README.md
has the details (joint order, frames, MoveIt and dex-retargeting use).
"""

import sys

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import Float32MultiArray, Header, MultiArrayDimension

from hand_recon_ros.msg import Hand, HandArray, HandModelInfo
from hand_recon_ros.ros.spin import run_until_signal  # rclpy only, no torch

SIDES = {Hand.LEFT: 'left', Hand.RIGHT: 'right'}
KEYPOINT_FRAMES = ('operator', 'wrist', 'camera')

# Axis permutations from the keypoint-estimated wrist frame (columns: wrist-from-middle-MCP, palm normal,
# towards the index side) to the operator frame dex-retargeting's MediaPipe pipeline feeds its optimizer
# (its OPERATOR2MANO_RIGHT / _LEFT constants; test_examples.py compares them with the installed package).
OPERATOR_AXES = {
    'right': np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]], np.float64),
    'left': np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], np.float64),
}


def quaternion_to_matrix(x, y, z, w):
    """Rotation matrix of a (not necessarily unit) quaternion x, y, z, w."""
    q = np.array([x, y, z, w], np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f'invalid quaternion {q.tolist()}')
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R):
    """3x3 rotation -> unit quaternion x, y, z, w (the largest of the four computed first, for accuracy)."""
    R = np.asarray(R, np.float64)
    trace = np.trace(R)
    if trace > max(R[0, 0], R[1, 1], R[2, 2]):
        w = 0.5 * np.sqrt(1.0 + trace)
        q = [(R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w), w]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        v = 0.5 * np.sqrt(max(1.0 + R[i, i] - R[j, j] - R[k, k], 0.0))
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / (4 * v)]
        q[i], q[j], q[k] = v, (R[j, i] + R[i, j]) / (4 * v), (R[k, i] + R[i, k]) / (4 * v)
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def operator_frame(joints, side):
    """Rotation (operator frame -> camera frame) that dex-retargeting's MediaPipe pipeline builds from the
    keypoints: the palm plane through wrist, index MCP and middle MCP, x' from the middle MCP to the wrist
    in that plane, z' towards the index side, then its fixed axis permutation per side. In the result the
    fingers point along +z and, for the right hand, the index side is +y; `keypoints @ R` are the values its
    retargeting optimizer expects."""
    joints = np.asarray(joints, np.float64)
    if joints.shape != (21, 3):
        raise ValueError(f'expected 21 x 3 joints, got {joints.shape}')
    if side not in OPERATOR_AXES:
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    wrist, index, middle = joints[0], joints[5], joints[9]
    normal = np.cross(index - wrist, middle - wrist)
    along = wrist - middle
    if np.linalg.norm(normal) < 1e-10 or np.linalg.norm(along) < 1e-9:
        raise ValueError('wrist, index MCP and middle MCP are (nearly) collinear: no palm plane')
    normal /= np.linalg.norm(normal)
    x = along - np.dot(along, normal) * normal
    x /= np.linalg.norm(x)
    z = np.cross(x, normal)
    if np.dot(z, index - middle) < 0:  # the sign of the plane normal is free: pick z towards the index
        normal, z = -normal, -z
    return np.stack([x, normal, z], axis=1) @ OPERATOR_AXES[side]


def wrist_relative_keypoints(joints, wrist_rotation=None):
    """(21, 3) joints in the camera frame -> offsets from the wrist (joint 0).

    With ``wrist_rotation`` (3x3, hand frame -> camera frame) the offsets are expressed in the hand's
    own frame: independent of where the camera looks, which is what retargeting wants."""
    joints = np.asarray(joints, np.float64)
    if joints.shape != (21, 3):
        raise ValueError(f'expected 21 x 3 joints, got {joints.shape}')
    offsets = joints - joints[0]
    return offsets if wrist_rotation is None else offsets @ np.asarray(wrist_rotation, np.float64)


def boundary_loops(faces):
    """Open boundaries of a triangle mesh as vertex loops, each ordered along its faces' boundary edges."""
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).tolist()
    edges = set(map(tuple, directed))
    following = {}
    for a, b in directed:
        if (b, a) not in edges:  # an edge no other face walks back: on a boundary
            if a in following:
                raise ValueError(f'vertex {a} has two outgoing boundary edges: not a manifold boundary')
            following[a] = b
    loops, visited = [], set()
    for start in sorted(following):
        if start in visited:
            continue
        loop, v = [], start
        while v not in visited:
            visited.add(v)
            loop.append(v)
            if v not in following:
                raise ValueError(f'boundary through vertex {v} does not close')
            v = following[v]
        loops.append(loop)
    return loops


def cap_faces(faces, num_vertices):
    """Faces that close every boundary loop (the MANO wrist opening) with a fan to one new vertex per loop.

    Returns (closed faces (F + sum(len(loop)), 3), loops); loop k's centre vertex is num_vertices + k. The
    fan triangles walk each boundary edge backwards, so their winding matches the neighbouring faces."""
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    loops = boundary_loops(faces)
    fans = [faces]
    for k, loop in enumerate(loops):
        centre = num_vertices + k
        fans.append(np.array([[loop[(i + 1) % len(loop)], loop[i], centre] for i in range(len(loop))], np.int64))
    return np.concatenate(fans), loops


def cap_vertices(vertices, loops):
    """(V, 3) -> (V + len(loops), 3): each loop's centroid appended, in loop order."""
    vertices = np.asarray(vertices, np.float64)
    return np.concatenate([vertices] + [vertices[loop].mean(axis=0, keepdims=True) for loop in loops])


def _points(xyz):
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz]


class HandConsumer(Node):
    def __init__(self, **kwargs):
        super().__init__('hand_consumer', **kwargs)
        self.declare_parameter('hands_topic', '/hand_recon/hands_smoothed')
        self.declare_parameter('model_info_topic', '/hand_recon/hand_model_info')
        self.declare_parameter('keypoint_frame', 'operator')
        self.declare_parameter('publish_mesh', True)
        self.declare_parameter('tf_prefix', '')  # the node's tf_prefix: keypoint frames = its wrist TF frames
        self.keypoint_frame = self.get_parameter('keypoint_frame').value
        if self.keypoint_frame not in KEYPOINT_FRAMES:
            raise ValueError(f'keypoint_frame must be one of {KEYPOINT_FRAMES}, got {self.keypoint_frame!r}')
        self.publish_mesh = bool(self.get_parameter('publish_mesh').value)
        self.closed = {}  # side -> (faces (F', 3), loops, num_vertices) from the latched model info
        self._warned = set()

        self.pubs = {}
        for side in SIDES.values():
            self.pubs[side] = {
                'wrist_pose': self.create_publisher(PoseStamped, f'~/{side}/wrist_pose', 5),
                'operator_frame': self.create_publisher(PoseStamped, f'~/{side}/operator_frame', 5),
                'keypoints': self.create_publisher(PoseArray, f'~/{side}/keypoints', 5),
                'keypoints_flat': self.create_publisher(Float32MultiArray, f'~/{side}/keypoints_flat', 5),
                'mesh': self.create_publisher(Mesh, f'~/{side}/mesh', 5),
            }
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.create_subscription(
            HandModelInfo, self.get_parameter('model_info_topic').value, self.on_model_info, latched
        )
        self.create_subscription(
            HandArray,
            self.get_parameter('hands_topic').value,
            self.on_hands,
            QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.get_logger().info(
            f"consuming {self.get_parameter('hands_topic').value} " f"(keypoints in the {self.keypoint_frame} frame)"
        )

    def on_model_info(self, info):
        """Faces arrive once (latched); the wrist caps are found here, not hard-coded per model."""
        closed = {}
        for side, flat in (('right', info.faces_right), ('left', info.faces_left)):
            faces = np.asarray(flat, np.int64)
            if faces.size == 0 or faces.size % 3:
                self.get_logger().error(f'model info: {side} faces have {faces.size} indices (not a multiple of 3)')
                return
            try:
                capped, loops = cap_faces(faces, int(info.num_vertices))
            except ValueError as exc:
                self.get_logger().error(f'model info: cannot close the {side} mesh: {exc}')
                return
            closed[side] = (capped, loops, int(info.num_vertices))
        self.closed = closed
        capped, loops, _ = closed['right']
        self.get_logger().info(
            f'hand model {info.hand_model}: {int(info.num_vertices)} vertices, '
            f'{len(loops)} opening(s) closed with {capped.shape[0] - len(info.faces_right) // 3} '
            f'triangles'
        )

    def on_hands(self, msg):
        best = {}
        for hand in msg.hands:  # multi-hand mode may send several per side: keep the most confident
            side = SIDES.get(hand.handedness)
            if side is not None and (side not in best or hand.score > best[side].score):
                best[side] = hand
        for side, hand in best.items():
            try:
                self.publish_hand(msg.header, side, hand)
            except ValueError as exc:
                self._warn_once(f'bad:{exc}', f'{side} hand skipped: {exc}')

    def publish_hand(self, header, side, hand):
        pubs = self.pubs[side]
        joints = np.array([[p.x, p.y, p.z] for p in hand.joints], np.float64)
        pose = hand.wrist_pose.pose
        q = pose.orientation
        rotation = quaternion_to_matrix(q.x, q.y, q.z, q.w)

        wrist = PoseStamped(header=header, pose=pose)
        pubs['wrist_pose'].publish(wrist)
        operator = operator_frame(joints, side)
        qx, qy, qz, qw = matrix_to_quaternion(operator).tolist()
        op_pose = PoseStamped(header=header)  # the frame itself, so no TF is needed to use the keypoints
        op_pose.pose.position = pose.position
        op_pose.pose.orientation.x, op_pose.pose.orientation.y = qx, qy
        op_pose.pose.orientation.z, op_pose.pose.orientation.w = qz, qw
        pubs['operator_frame'].publish(op_pose)

        rotations = {'operator': operator, 'wrist': rotation, 'camera': None}
        relative = wrist_relative_keypoints(joints, rotations[self.keypoint_frame])
        # Wrist frame: named like the node's wrist TF frames (publish_tf: true), so RViz can place them.
        prefix = str(self.get_parameter('tf_prefix').value).lstrip('/')
        frame = {
            'operator': f'{prefix}{side}_hand_operator',
            'wrist': f'{prefix}{side}_hand_wrist',
            'camera': header.frame_id,
        }[self.keypoint_frame]
        keypoints = PoseArray(header=Header(stamp=header.stamp, frame_id=frame))  # never alias the input
        keypoints.poses = [Pose(position=p) for p in _points(relative)]  # orientation: identity
        pubs['keypoints'].publish(keypoints)

        flat = Float32MultiArray()
        flat.layout.dim = [
            MultiArrayDimension(label='joints', size=21, stride=63),
            MultiArrayDimension(label='xyz', size=3, stride=3),
        ]
        flat.data = relative.astype(np.float32).reshape(-1).tolist()
        pubs['keypoints_flat'].publish(flat)

        if not self.publish_mesh:
            return
        if not len(hand.vertices):
            self._warn_once(
                'no_vertices', 'hands carry no vertices (node parameter publish_vertices is ' 'false): no meshes'
            )
            return
        if side not in self.closed:
            self._warn_once('no_info', 'no HandModelInfo received yet (faces): no meshes until it arrives')
            return
        faces, loops, num_vertices = self.closed[side]
        vertices = np.asarray(hand.vertices, np.float32)
        if vertices.size != num_vertices * 3:
            raise ValueError(f'{vertices.size // 3} vertices, the model info says {num_vertices}')
        closed_vertices = cap_vertices(vertices.reshape(-1, 3), loops)
        mesh = Mesh(
            vertices=_points(closed_vertices),
            triangles=[MeshTriangle(vertex_indices=tri) for tri in faces.astype(np.uint32)],
        )
        pubs['mesh'].publish(mesh)

    def _warn_once(self, key, text):
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)


def main(args=None):
    """Clean Ctrl-C: SIGINT/SIGTERM end the loop; exit code 0."""
    return run_until_signal(HandConsumer, args)


if __name__ == '__main__':
    sys.exit(main())
