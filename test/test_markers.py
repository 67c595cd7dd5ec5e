"""MarkerArray construction: counts, ids, namespaces, header copy, finite values, DELETE of vanished hands."""

import math

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from hand_recon_ros.conventions import BONES, NUM_FACES, NUM_VERTICES
from hand_recon_ros.results import FrameResult, HandResult
from hand_recon_ros.ros.markers import HandMarkerBuilder, build_marker_array

RNG = np.random.default_rng(7)
FACES = RNG.integers(0, NUM_VERTICES, (NUM_FACES, 3))


def make_hand(side, score=0.9, with_vertices=True, offset=0.0):
    joints = (RNG.normal(0, 0.05, (21, 3)) + [0, 0, 0.5 + offset]).astype(np.float32)
    verts = (RNG.normal(0, 0.05, (NUM_VERTICES, 3)) + [0, 0, 0.5]).astype(np.float32) if with_vertices else None
    return HandResult(
        handedness=side,
        score=score,
        joints_3d=joints,
        keypoints_2d=np.zeros((21, 2), np.float32),
        joint_confidence=np.ones(21, np.float32),
        wrist_position=joints[0].copy(),
        wrist_orientation=np.array([0, 0, 0, 1], np.float32),
        vertices=verts,
    )


def frame(*hands):
    return FrameResult(hands=list(hands), image_size=(480, 640), intrinsics=np.eye(3))


def header(sec=5, nanosec=123, frame_id='camera_color_optical_frame'):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def by_key(array):
    return {(m.ns, m.id): m for m in array.markers}


def test_two_hands_counts_types_ids_and_namespaces():
    left, right = make_hand('left'), make_hand('right')
    markers = by_key(HandMarkerBuilder(FACES).build(frame(left, right), header()))
    expected = {
        ('hand_left/mesh', 0): Marker.TRIANGLE_LIST,
        ('hand_left/joints', 0): Marker.SPHERE_LIST,
        ('hand_left/bones', 0): Marker.LINE_LIST,
        ('hand_right/mesh', 1): Marker.TRIANGLE_LIST,
        ('hand_right/joints', 1): Marker.SPHERE_LIST,
        ('hand_right/bones', 1): Marker.LINE_LIST,
    }
    assert {k: m.type for k, m in markers.items()} == expected
    for side, hand in (('left', left), ('right', right)):
        mid = 0 if side == 'left' else 1
        mesh = markers[(f'hand_{side}/mesh', mid)]
        assert len(mesh.points) == 3 * NUM_FACES
        pts = np.array([[p.x, p.y, p.z] for p in mesh.points])
        np.testing.assert_allclose(pts, hand.vertices[FACES.ravel()], rtol=0, atol=1e-7)
        assert len(mesh.colors) == 0 and (mesh.scale.x, mesh.scale.y, mesh.scale.z) == (1.0, 1.0, 1.0)
        assert mesh.pose.orientation.w == 1.0
        joints = markers[(f'hand_{side}/joints', mid)]
        np.testing.assert_allclose([[p.x, p.y, p.z] for p in joints.points], hand.joints_3d, atol=1e-7)
        assert joints.scale.x == pytest.approx(0.016)
        bones = markers[(f'hand_{side}/bones', mid)]
        assert len(bones.points) == 2 * len(BONES) == 40
        np.testing.assert_allclose(
            [[p.x, p.y, p.z] for p in bones.points], hand.joints_3d[np.asarray(BONES).ravel()], atol=1e-7
        )
        for m in (mesh, joints, bones):
            assert m.action == Marker.ADD and m.frame_locked is False
            assert (m.lifetime.sec, m.lifetime.nanosec) == (0, 300_000_000)
    # One colour per side, different between sides.
    lc, rc = markers[('hand_left/mesh', 0)].color, markers[('hand_right/mesh', 1)].color
    assert (lc.r, lc.g, lc.b) != (rc.r, rc.g, rc.b)


def test_point_count_is_constant_across_frames():
    builder = HandMarkerBuilder(FACES)
    counts = {
        len(by_key(builder.build(frame(make_hand('right')), header()))[('hand_right/mesh', 1)].points) for _ in range(3)
    }
    assert counts == {3 * NUM_FACES}


def test_header_is_copied_not_aliased():
    h = header(sec=42, nanosec=999, frame_id='cam_optical')
    array = HandMarkerBuilder(FACES).build(frame(make_hand('left')), h)
    h.frame_id, h.stamp.sec = 'changed', 0
    for m in array.markers:
        assert (m.header.frame_id, m.header.stamp.sec, m.header.stamp.nanosec) == ('cam_optical', 42, 999)


def test_all_values_finite_and_message_serialises():
    array = HandMarkerBuilder(FACES).build(frame(make_hand('left'), make_hand('right')), header())
    for m in array.markers:
        values = [v for p in m.points for v in (p.x, p.y, p.z)]
        values += [
            m.scale.x,
            m.scale.y,
            m.scale.z,
            m.color.r,
            m.color.g,
            m.color.b,
            m.color.a,
            m.pose.position.x,
            m.pose.orientation.w,
        ]
        assert all(math.isfinite(v) for v in values)
        assert len(m.points) % (3 if m.type == Marker.TRIANGLE_LIST else 1) == 0 and m.points
    back = deserialize_message(serialize_message(array), MarkerArray)
    assert len(back.markers) == 6 and len(back.markers[0].points) == 3 * NUM_FACES


def test_vanished_hand_gets_one_delete_then_nothing():
    builder = HandMarkerBuilder(FACES)
    builder.build(frame(make_hand('left'), make_hand('right')), header())
    second = builder.build(frame(make_hand('right')), header(sec=6))
    deletes = [m for m in second.markers if m.action == Marker.DELETE]
    assert sorted((m.ns, m.id) for m in deletes) == [
        ('hand_left/bones', 0),
        ('hand_left/joints', 0),
        ('hand_left/mesh', 0),
    ]
    assert all(m.header.stamp.sec == 6 and not m.points for m in deletes)
    assert not any(m.type == Marker.TRIANGLE_LIST and not m.points and m.action == Marker.ADD for m in second.markers)
    third = builder.build(frame(make_hand('right')), header(sec=7))
    assert all(m.action == Marker.ADD for m in third.markers) and len(third.markers) == 3
    # Re-appearance publishes the same ids again; no hands at all deletes the right hand once.
    fourth = by_key(builder.build(frame(make_hand('left'), make_hand('right')), header()))
    assert fourth[('hand_left/mesh', 0)].action == Marker.ADD
    empty = builder.build(frame(), header())
    assert sorted(m.ns for m in empty.markers) == sorted(
        f'hand_{s}/{p}' for s in ('left', 'right') for p in ('mesh', 'joints', 'bones')
    )
    assert all(m.action == Marker.DELETE for m in empty.markers)
    assert builder.build(frame(), header()).markers == []


def test_non_finite_hand_is_skipped_and_its_markers_deleted():
    builder = HandMarkerBuilder(FACES)
    builder.build(frame(make_hand('left'), make_hand('right')), header())
    bad = make_hand('left')
    bad.vertices[100, 2] = np.nan
    array = builder.build(frame(bad, make_hand('right')), header())
    left = [m for m in array.markers if m.ns.startswith('hand_left')]
    assert len(left) == 3 and all(m.action == Marker.DELETE for m in left)
    assert builder.skipped_nonfinite == 1
    bad_joints = make_hand('right')
    bad_joints.joints_3d[3, 0] = np.inf
    array = builder.build(frame(bad_joints), header())
    assert all(m.action == Marker.DELETE for m in array.markers) and len(array.markers) == 3


def test_hand_without_vertices_or_faces_has_skeleton_only():
    builder = HandMarkerBuilder({'right': FACES})
    keys = set(by_key(builder.build(frame(make_hand('left'), make_hand('right', with_vertices=False)), header())))
    assert keys == {('hand_left/joints', 0), ('hand_left/bones', 0), ('hand_right/joints', 1), ('hand_right/bones', 1)}
    keys = set(by_key(HandMarkerBuilder().build(frame(make_hand('left')), header())))
    assert keys == {('hand_left/joints', 0), ('hand_left/bones', 0)}


def test_mesh_toggle_at_runtime_deletes_mesh_once():
    builder = HandMarkerBuilder(FACES)
    builder.build(frame(make_hand('right')), header())
    builder.mesh = False
    array = by_key(builder.build(frame(make_hand('right')), header()))
    assert array[('hand_right/mesh', 1)].action == Marker.DELETE
    assert array[('hand_right/joints', 1)].action == Marker.ADD


def test_best_scoring_hand_per_side_is_drawn():
    weak, strong = make_hand('right', score=0.3), make_hand('right', score=0.8, offset=1.0)
    array = by_key(HandMarkerBuilder(FACES).build(frame(weak, strong), header()))
    assert len(array) == 3
    assert array[('hand_right/joints', 1)].points[0].z == pytest.approx(float(strong.joints_3d[0, 2]))


def test_options_lifetime_colours_and_delete_all():
    builder = HandMarkerBuilder(
        FACES,
        lifetime_s=1.25,
        ns_prefix='cam1_hand',
        joint_radius_m=0.01,
        bone_width_m=0.002,
        colors={'left': (0, 1, 0, 0.5)},
        frame_locked=True,
    )
    array = by_key(builder.build(frame(make_hand('left')), header()))
    mesh = array[('cam1_hand_left/mesh', 0)]
    assert (mesh.lifetime.sec, mesh.lifetime.nanosec) == (1, 250_000_000) and mesh.frame_locked
    assert (mesh.color.r, mesh.color.g, mesh.color.b, mesh.color.a) == (0.0, 1.0, 0.0, 0.5)
    assert array[('cam1_hand_left/bones', 0)].scale.x == pytest.approx(0.002)
    cleared = builder.delete_all(header())
    assert len(cleared.markers) == 6 and all(m.action == Marker.DELETEALL for m in cleared.markers)
    assert {m.ns for m in cleared.markers} >= {'cam1_hand_left/mesh', 'cam1_hand_right/bones'}
    # After DELETEALL nothing is remembered, so no stray DELETEs follow.
    assert builder.build(frame(), header()).markers == []


def test_bad_configuration_and_inputs():
    with pytest.raises(ValueError, match=r'\(F, 3\)'):
        HandMarkerBuilder(np.zeros((5, 4), int))
    with pytest.raises(ValueError, match='integer'):
        HandMarkerBuilder(FACES.astype(float))
    with pytest.raises(ValueError, match='negative'):
        HandMarkerBuilder(-FACES)
    with pytest.raises(ValueError, match='side'):
        HandMarkerBuilder({'middle': FACES})
    with pytest.raises(ValueError, match='lifetime'):
        HandMarkerBuilder(FACES, lifetime_s=-1)
    with pytest.raises(ValueError, match='colour'):
        HandMarkerBuilder(FACES, colors={'left': (2, 0, 0, 1)})
    small = make_hand('left')
    small.vertices = small.vertices[:100]
    with pytest.raises(ValueError, match='faces index vertex'):
        HandMarkerBuilder(FACES).build(frame(small), header())


def test_build_marker_array_function_tracks_published_set():
    published = set()
    faces = {'left': FACES, 'right': FACES[:, ::-1]}
    right = make_hand('right')
    first = build_marker_array(frame(make_hand('left'), right), faces, header(), lifetime_s=0.5, published=published)
    assert len(first.markers) == 6 and len(published) == 6
    assert first.markers[0].lifetime.nanosec == 500_000_000
    right_mesh = by_key(first)[('hand_right/mesh', 1)]
    # Per-side faces: the right mesh uses the reversed winding it was given.
    np.testing.assert_allclose(
        [[p.x, p.y, p.z] for p in right_mesh.points[:6]], right.vertices[FACES[:2, ::-1].ravel()], atol=1e-7
    )
    second = build_marker_array(frame(make_hand('right')), faces, header(), published=published)
    assert sorted(m.ns for m in second.markers if m.action == Marker.DELETE) == [
        'hand_left/bones',
        'hand_left/joints',
        'hand_left/mesh',
    ]
    assert published == {('hand_right/mesh', 1), ('hand_right/joints', 1), ('hand_right/bones', 1)}
    # Without a published set: no DELETEs, lifetime cleans up.
    third = build_marker_array(frame(), faces, header())
    assert third.markers == []
