"""examples/hand_consumer.py: a message-only planner consumer, tested over DDS next to the real node.

The node's shipped network is untrained (it detects nothing), so the test publishes a HandArray made
from the stand-in hand itself; the faces come from the real node's latched HandModelInfo.
"""

import runpy
import sys
import time
from array import array
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from geometry_msgs.msg import PoseArray, PoseStamped  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from shape_msgs.msg import Mesh  # noqa: E402
from std_msgs.msg import Float32MultiArray  # noqa: E402

from hand_recon_ros.hand_model import mesh_utils  # noqa: E402
from hand_recon_ros.msg import Hand, HandArray, HandModelInfo  # noqa: E402
from hand_recon_ros.tools.node_process import ChildProcess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / 'examples' / 'hand_consumer.py'
FAST = ('-p', 'weights:=untrained', '-p', 'device:=cpu', '-p', 'network.input_size:=128', '-p', 'num_threads:=1')
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Runs the example as its own __main__ and reports at exit whether anything imported torch.
RUNNER = (
    'import atexit, runpy, sys\n'
    "atexit.register(lambda: print('TORCH_LOADED', 'torch' in sys.modules, flush=True))\n"
    'path = sys.argv[1]\nsys.argv = sys.argv[1:]\n'
    "runpy.run_path(path, run_name='__main__')\n"
)


@pytest.fixture(scope='module')
def example():
    return runpy.run_path(str(EXAMPLE), run_name='hand_consumer_under_test')


# ----------------------------------------------------------------------------------- pure helpers
def test_cap_closes_every_opening_with_consistent_winding(example):
    # A unit cube without its top (one 4-edge hole), and a square tube (two holes).
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
    bottom = [[0, 2, 1], [0, 3, 2]]
    sides = [[0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]]
    for faces, holes in ((bottom + sides, 1), (sides, 2)):
        closed, loops = example['cap_faces'](np.array(faces), 8)
        assert len(loops) == holes and closed.shape == (len(faces) + 4 * holes, 3)
        edges, counts = mesh_utils.edge_face_counts(closed)
        assert (counts == 2).all()
        directed = {tuple(e) for f in closed for e in (f[[0, 1]], f[[1, 2]], f[[2, 0]])}
        assert len(directed) == 3 * len(closed)  # each directed edge once: consistently oriented
        verts = example['cap_vertices'](v, loops)
        assert verts.shape == (8 + holes, 3)
        assert sorted(map(tuple, verts[8:])) == sorted([(0.5, 0.5, 0.0), (0.5, 0.5, 1.0)][-holes:])
        # Outward winding: the closed solid's signed volume is +1 (the tube's caps make it a cube too).
        assert mesh_utils.signed_volume(verts, closed) == pytest.approx(1.0)
    with pytest.raises(ValueError, match='two outgoing boundary edges'):
        example['boundary_loops'](np.array([[0, 1, 2], [0, 3, 4]]))


def test_quaternion_and_wrist_relative_keypoints(example):
    rng = np.random.default_rng(5)
    rot = Rotation.from_rotvec(rng.normal(size=3))
    x, y, z, w = rot.as_quat()
    np.testing.assert_allclose(example['quaternion_to_matrix'](2 * x, 2 * y, 2 * z, 2 * w), rot.as_matrix(), atol=1e-12)
    joints = rng.normal(size=(21, 3))
    local = example['wrist_relative_keypoints'](joints, rot.as_matrix())
    np.testing.assert_allclose(rot.apply(local) + joints[0], joints, atol=1e-12)
    np.testing.assert_allclose(example['wrist_relative_keypoints'](joints), joints - joints[0])
    with pytest.raises(ValueError, match='21 x 3'):
        example['wrist_relative_keypoints'](joints[:20])
    with pytest.raises(ValueError, match='invalid quaternion'):
        example['quaternion_to_matrix'](0, 0, 0, 0)


# ----------------------------------------------------------------------------------- teleoperation frame
def _angle_deg(Ra, Rb):
    return float(np.degrees(Rotation.from_matrix(Ra.T @ Rb).magnitude()))


def test_operator_frame_is_the_retargeting_frame_and_independent_of_the_camera(example):
    rng = np.random.default_rng(2)
    hands = stand_in_hands()
    for side, h in hands.items():
        R_op = example['operator_frame'](h['joints'], side)
        np.testing.assert_allclose(R_op.T @ R_op, np.eye(3), atol=1e-12)
        assert np.linalg.det(R_op) == pytest.approx(1.0)
        kp = example['wrist_relative_keypoints'](h['joints'], R_op)
        # the axes dex-retargeting's optimizer sees: fingers along +z; index side +y (right) / -y (left)
        unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
        assert unit(kp[9])[2] > 0.95 and unit(kp[12])[2] > 0.9
        assert unit(kp[5] - kp[17])[1] * (1 if side == 'right' else -1) > 0.9
        # the same keypoints whatever the camera sees: rotate and move the whole hand
        turn = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
        moved = h['joints'] @ turn.T + rng.normal(size=3)
        np.testing.assert_allclose(
            example['wrist_relative_keypoints'](moved, example['operator_frame'](moved, side)), kp, atol=1e-9
        )
        # vs the MANO root frame the old example used: the keypoint frame is the root frame (the left hand's
        # turned half a turn about z: MANO mirrors it) up to the palm's tilt in the template, and the
        # permutation then turns it by 120 degrees: what the old example left out
        R_mano = Rotation.from_quat(h['quat']).as_matrix()
        mirror = np.diag([1.0, 1.0, 1.0]) if side == 'right' else np.diag([-1.0, -1.0, 1.0])
        to_operator = mirror @ example['OPERATOR_AXES'][side]
        assert _angle_deg(np.eye(3), to_operator) == pytest.approx(120.0)
        assert _angle_deg(R_op, R_mano @ to_operator) < 15.0
        # the published pose of the frame
        q = example['matrix_to_quaternion'](R_op)
        np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), R_op, atol=1e-12)
    with pytest.raises(ValueError, match='collinear'):
        example['operator_frame'](np.zeros((21, 3)), 'right')


def test_matrix_to_quaternion_all_branches(example):
    rng = np.random.default_rng(4)
    for rotvec in [rng.normal(size=3) for _ in range(20)] + [
        np.array([np.pi, 0, 0]),
        np.array([0, np.pi, 0]),
        np.array([0, 0, np.pi]),
        np.zeros(3),
    ]:
        rot = Rotation.from_rotvec(rotvec)
        q = example['matrix_to_quaternion'](rot.as_matrix())
        assert abs(abs(np.dot(q, rot.as_quat())) - 1.0) < 1e-12


def test_operator_axes_are_dex_retargetings(example):
    constants = pytest.importorskip(
        'dex_retargeting.constants',
        reason='dex-retargeting not installed (pip install -r requirements/retargeting.txt)',
    )
    np.testing.assert_array_equal(example['OPERATOR_AXES']['right'], constants.OPERATOR2MANO[constants.HandType.right])
    np.testing.assert_array_equal(example['OPERATOR_AXES']['left'], constants.OPERATOR2MANO[constants.HandType.left])


# Five fingertips on three prismatic joints each (x, y, z of the robot's palm frame): vector retargeting of
# wrist -> tip then puts each tip exactly at the (scaled) human vector, which shows the frame the optimizer
# receives.
_TOY_HAND = """<?xml version="1.0"?>
<robot name="toy_hand">
  <link name="palm"/>
{fingers}
</robot>
"""
_TOY_FINGER = """  <link name="{f}_a"/><link name="{f}_b"/><link name="{f}_tip"/>
  <joint name="{f}_x" type="prismatic"><parent link="palm"/><child link="{f}_a"/><axis xyz="1 0 0"/>
    <limit lower="-0.4" upper="0.4" effort="1" velocity="1"/></joint>
  <joint name="{f}_y" type="prismatic"><parent link="{f}_a"/><child link="{f}_b"/><axis xyz="0 1 0"/>
    <limit lower="-0.4" upper="0.4" effort="1" velocity="1"/></joint>
  <joint name="{f}_z" type="prismatic"><parent link="{f}_b"/><child link="{f}_tip"/><axis xyz="0 0 1"/>
    <limit lower="-0.4" upper="0.4" effort="1" velocity="1"/></joint>
"""
FINGERS = ('thumb', 'index', 'middle', 'ring', 'pinky')


def test_keypoints_feed_dex_retargeting_as_the_readme_shows(example, tmp_path):
    pytest.importorskip(
        'dex_retargeting', reason='dex-retargeting not installed (pip install -r requirements/retargeting.txt)'
    )
    from dex_retargeting.retargeting_config import RetargetingConfig

    urdf = tmp_path / 'toy_hand.urdf'
    urdf.write_text(_TOY_HAND.format(fingers=''.join(_TOY_FINGER.format(f=f) for f in FINGERS)))
    config = RetargetingConfig.from_dict(
        dict(
            type='vector',
            urdf_path=str(urdf),
            target_origin_link_names=['palm'] * 5,
            target_task_link_names=[f'{f}_tip' for f in FINGERS],
            target_link_human_indices=[[0] * 5, [4, 8, 12, 16, 20]],
            scaling_factor=1.0,
            low_pass_alpha=-1.0,
        )
    )
    retargeting = config.build()
    h = stand_in_hands()['right']
    joints = example['wrist_relative_keypoints'](h['joints'], example['operator_frame'](h['joints'], 'right'))
    # examples/README.md: what a keypoints_flat message becomes
    flat = joints.astype(np.float32).reshape(-1)
    joints = np.asarray(flat, np.float32).reshape(21, 3)
    idx = retargeting.optimizer.target_link_human_indices
    ref = joints[idx] if retargeting.optimizer.retargeting_type == 'POSITION' else joints[idx[1]] - joints[idx[0]]
    qpos = retargeting.retarget(ref)
    names = retargeting.joint_names
    tips = np.array([[qpos[names.index(f'{f}_{a}')] for a in 'xyz'] for f in FINGERS])
    np.testing.assert_allclose(tips, joints[[4, 8, 12, 16, 20]], atol=5e-3)
    assert (tips[1:, 2] > 0.05).all()  # the four fingertips point along the robot's +z


# ----------------------------------------------------------------------------------- over DDS
def stand_in_hands():
    """Both stand-in hands, rigidly rotated and moved, plus their rest-pose joints (wrist-relative)."""
    import torch

    from hand_recon_ros.hand_model.model import load_hand_model

    model = load_hand_model()
    rng = np.random.default_rng(11)
    hands = {}
    zeros = dict(hand_pose=torch.zeros(1, 45), betas=torch.zeros(1, 10))
    for side, transl in (('right', (0.08, 0.02, 0.5)), ('left', (-0.1, 0.0, 0.55))):
        rotvec = rng.normal(size=3)
        with torch.no_grad():
            posed = model(
                side,
                global_orient=torch.tensor(rotvec[None], dtype=torch.float32),
                transl=torch.tensor([transl], dtype=torch.float32),
                **zeros,
            )
            rest = model(side, global_orient=torch.zeros(1, 3), **zeros)
        rest_joints = rest['joints'][0].double().numpy()
        hands[side] = dict(
            joints=posed['joints'][0].double().numpy(),
            vertices=posed['vertices'][0].numpy(),
            quat=Rotation.from_rotvec(rotvec).as_quat(),
            rest_relative=rest_joints - rest_joints[0],
        )
    return hands


def hand_msg(side, joints, quat, vertices=None, score=0.9):
    msg = Hand(handedness=Hand.RIGHT if side == 'right' else Hand.LEFT, score=score)
    for point, xyz in zip(msg.joints, joints):
        point.x, point.y, point.z = (float(v) for v in xyz)
    pose = msg.wrist_pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in joints[0])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quat)
    if vertices is not None:
        msg.vertices = array('f', np.asarray(vertices, np.float32).reshape(-1).tobytes())
    return msg


def example_module():
    return runpy.run_path(str(EXAMPLE), run_name='hand_consumer_under_test')


def spin_publishing(ros, pub, msg, done, timeout=30.0, what='outputs'):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        pub.publish(msg)
        ros.spin_for(0.3)
    assert done(), f'no {what} within {timeout:.0f} s'


@pytest.mark.ros
def test_consumer_turns_hand_arrays_into_teleop_and_grasp_inputs(ros, start_node, tmp_path):
    node = start_node(*FAST)
    hands = stand_in_hands()
    consumer = ChildProcess([sys.executable, '-c', RUNNER, str(EXAMPLE)], tmp_path / 'consumer.log', cwd=tmp_path)
    try:
        got = {}
        for side in ('right', 'left'):
            for name, typ in (
                ('wrist_pose', PoseStamped),
                ('operator_frame', PoseStamped),
                ('keypoints', PoseArray),
                ('keypoints_flat', Float32MultiArray),
                ('mesh', Mesh),
            ):
                got[side, name] = ros.collect(typ, f'/hand_consumer/{side}/{name}', RELIABLE)
        pub = ros.node.create_publisher(HandArray, '/hand_recon/hands_smoothed', RELIABLE)
        ros.spin_until(lambda: pub.get_subscription_count() >= 1, what='the consumer to subscribe', timeout=20)

        frame = HandArray()
        frame.header.stamp.sec, frame.header.frame_id = 77, 'cam_optical'
        decoy = hands['right']['joints'] + 0.05  # a less confident second right hand must be ignored
        frame.hands = [hand_msg('right', decoy, hands['right']['quat'], score=0.2)] + [
            hand_msg(side, h['joints'], h['quat'], h['vertices']) for side, h in hands.items()
        ]
        # The mesh needs the faces from the node's latched HandModelInfo: re-send until it is built.
        spin_publishing(ros, pub, frame, lambda: all(got[s, 'mesh'] for s in ('right', 'left')), what='meshes')

        infos = ros.collect(
            HandModelInfo,
            '/hand_recon/hand_model_info',
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
        )
        ros.spin_until(lambda: infos, what='the model info')
        info_faces = {
            'right': np.asarray(infos[0].faces_right).reshape(-1, 3),
            'left': np.asarray(infos[0].faces_left).reshape(-1, 3),
        }

        for side, h in hands.items():
            wrist = got[side, 'wrist_pose'][-1]
            assert (wrist.header.stamp.sec, wrist.header.frame_id) == (77, 'cam_optical')
            p, q = wrist.pose.position, wrist.pose.orientation
            np.testing.assert_allclose([p.x, p.y, p.z], h['joints'][0], atol=1e-12)
            np.testing.assert_allclose([q.x, q.y, q.z, q.w], h['quat'], atol=1e-12)

            # Teleop keypoints (default keypoint_frame: operator): R_op^T (joint - wrist) with R_op the frame
            # published on operator_frame (no TF needed); a rigidly placed hand gives its rest-pose values.
            kp = got[side, 'keypoints'][-1]
            assert (kp.header.stamp.sec, kp.header.frame_id) == (77, f'{side}_hand_operator')
            xyz = np.array([[m.position.x, m.position.y, m.position.z] for m in kp.poses])
            op = got[side, 'operator_frame'][-1]
            assert (op.header.stamp.sec, op.header.frame_id) == (77, 'cam_optical')
            o = op.pose.orientation
            R_op = Rotation.from_quat([o.x, o.y, o.z, o.w]).as_matrix()
            np.testing.assert_allclose(
                [op.pose.position.x, op.pose.position.y, op.pose.position.z], h['joints'][0], atol=1e-12
            )
            np.testing.assert_allclose(xyz, (h['joints'] - h['joints'][0]) @ R_op, atol=1e-9)
            rest = example_module()['wrist_relative_keypoints']
            rest_op = rest(h['rest_relative'], example_module()['operator_frame'](h['rest_relative'], side))
            np.testing.assert_allclose(xyz, rest_op, atol=2e-6)
            assert np.abs(xyz).max() > 0.05  # a hand-sized spread, not zeros
            flat = got[side, 'keypoints_flat'][-1]
            assert [(d.label, d.size, d.stride) for d in flat.layout.dim] == [('joints', 21, 63), ('xyz', 3, 3)]
            np.testing.assert_allclose(np.asarray(flat.data).reshape(21, 3), xyz, atol=1e-6)

            # Grasp mesh: the published vertices plus one wrist-centre vertex, closed, outward-facing.
            mesh = got[side, 'mesh'][-1]
            verts = np.array([[v.x, v.y, v.z] for v in mesh.vertices])
            tris = np.array([t.vertex_indices for t in mesh.triangles], np.int64)
            assert verts.shape == (779, 3) and tris.shape == (1538 + 16, 3)
            np.testing.assert_array_equal(verts[:778], h['vertices'].astype(np.float64))
            np.testing.assert_array_equal(tris[:1538], info_faces[side])
            (loop,) = mesh_utils.boundary_loops(info_faces[side])
            assert len(loop) == 16
            np.testing.assert_allclose(verts[778], h['vertices'][loop].astype(np.float64).mean(axis=0), atol=1e-12)
            edges, counts = mesh_utils.edge_face_counts(tris)
            assert (counts == 2).all(), 'every edge of the closed mesh is shared by exactly 2 triangles'
            directed = {tuple(e) for f in tris for e in (f[[0, 1]], f[[1, 2]], f[[2, 0]])}
            assert len(directed) == 3 * len(tris), 'cap winding must match the hand faces'
            assert mesh_utils.signed_volume(verts, tris) > 1e-5  # outward normals enclose a positive volume

        # Hands without vertices (publish_vertices: false): keypoints still flow, meshes do not.
        meshes_before = len(got['right', 'mesh'])
        bare = HandArray(hands=[hand_msg('right', hands['right']['joints'], hands['right']['quat'])])
        bare.header.stamp.sec, bare.header.frame_id = 78, 'cam_optical'
        spin_publishing(
            ros,
            pub,
            bare,
            lambda: got['right', 'keypoints'][-1].header.stamp.sec == 78,
            what='keypoints of the vertex-less hand',
        )
        ros.spin_for(0.3)
        assert len(got['right', 'mesh']) == meshes_before
    finally:
        rc = consumer.stop(timeout=15)
    out = consumer.log()
    assert rc == 0 and 'Traceback' not in out, out
    assert 'TORCH_LOADED False' in out, out
    assert 'no meshes' in out and 'closed with 16 triangles' in out, out
    node_rc = node.stop()
    assert node_rc == 0, node.log()[-3000:]
