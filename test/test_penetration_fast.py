"""The prepared-mesh penetration path (ray-crossing winding numbers, shared and shifted structures) against
a reference computed directly with libigl's fast winding number and point-mesh distance."""

import igl
import numpy as np
import pytest
import torch
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from hand_recon_ros.hand_model import penetration as pen
from hand_recon_ros.hand_model.model import load_hand_model


def reference_inside(query, verts, faces):
    """The former inside test: bounding-box prefilter, then fast winding number > 0.5."""
    inside = np.zeros(len(query), dtype=bool)
    box = np.flatnonzero(np.all((query >= verts.min(0)) & (query <= verts.max(0)), axis=1))
    if len(box):
        inside[box] = igl.fast_winding_number(verts, faces, np.ascontiguousarray(query[box])) > 0.5
    return inside


def reference_depths(query, verts, faces):
    """The former implementation: that inside test, then libigl's point-mesh distance."""
    inside = reference_inside(query, verts, faces)
    depth = np.zeros(len(query))
    idx = np.flatnonzero(inside)
    if len(idx):
        depth[idx] = np.sqrt(igl.point_mesh_squared_distance(np.ascontiguousarray(query[idx]), verts, faces)[0])
    return depth


@pytest.fixture(scope='module')
def hands():
    return load_hand_model()


def _posed(hm, side, rng, wrist, scale=1.0):
    with torch.no_grad():
        out = hm(
            side,
            torch.tensor(rng.normal(0, 0.5 * scale, (1, 3)), dtype=torch.float32),
            torch.tensor(rng.normal(0, 0.6 * scale, (1, 45)), dtype=torch.float32),
            torch.tensor(rng.normal(0, 1.0 * scale, (1, 10)), dtype=torch.float32),
        )
    v = out['vertices'][0] - out['joints'][0, :1] + torch.tensor(wrist, dtype=torch.float32)
    return np.ascontiguousarray(hm.watertight_vertices(side, v).double().numpy()), hm.watertight_faces(side)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 100_000), dx=st.floats(-0.2, -0.1), dy=st.floats(-0.04, 0.04), dz=st.floats(-0.04, 0.04))
def test_posed_hand_pairs_match_the_reference_exactly(hands, seed, dx, dy, dz):
    # Random poses (self-intersecting fingers included) at random overlaps: same inside decisions, and the
    # same depths to rounding (both use the same distance code).
    rng = np.random.default_rng(seed)
    vl, fl = _posed(hands, 'left', rng, [dx, dy, 0.5 + dz])
    vr, fr = _posed(hands, 'right', rng, [0.0, 0.0, 0.5])
    d_left, d_right = pen.penetration_depths(vl, fl, vr, fr)
    np.testing.assert_allclose(d_left, reference_depths(vl, vr, fr), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d_right, reference_depths(vr, vl, fl), rtol=0, atol=1e-12)
    # A translated solid (shared structures) gives the depths of the moved mesh.
    shift = rng.normal(0, 0.01, 3)
    moved_l, moved_r = pen.solid_depths(pen.prepare_mesh(vl, fl).translated(shift), pen.prepare_mesh(vr, fr))
    np.testing.assert_allclose(moved_l, reference_depths(vl + shift, vr, fr), rtol=0, atol=1e-9)
    np.testing.assert_allclose(moved_r, reference_depths(vr, vl + shift, fl), rtol=0, atol=1e-9)


def test_one_solid_serves_both_directions_and_its_copies(hands):
    rng = np.random.default_rng(3)
    vl, fl = _posed(hands, 'left', rng, [-0.176, 0.025, 0.5], scale=0.1)  # palm over palm, pushed in
    vr, fr = _posed(hands, 'right', rng, [0.0, 0.0, 0.5], scale=0.1)
    left, right = pen.prepare_mesh(vl, fl), pen.prepare_mesh(vr, fr)
    first = pen.solid_depths(left, right)
    assert first[0].any() and first[1].any()
    built = dict(right._shared)
    moved = right.translated([0.0, 0.01, 0.0])
    assert moved._shared is right._shared and np.allclose(moved.points, vr + [0.0, 0.01, 0.0])
    pen.solid_depths(left, moved)
    assert all(right._shared[k] is v for k, v in built.items())  # nothing rebuilt for the copy
    np.testing.assert_array_equal(pen.solid_depths(left, right)[0], first[0])


def test_queries_on_projected_edges_and_on_the_surface_fall_back_exactly():
    # Axis-aligned unit-grid box queried at its own vertices (on the surface) and at grid points inside:
    # whatever the ray hits exactly, the answer equals the reference.
    m = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    v, f = np.asarray(m.vertices), np.asarray(m.faces, dtype=np.int64)
    for _ in range(2):
        v, f = trimesh.remesh.subdivide(v, f)
    v, f = np.asarray(v), np.asarray(f, dtype=np.int64)
    grid = np.stack(np.meshgrid(*[np.linspace(-0.06, 0.06, 13)] * 3), -1).reshape(-1, 3)
    query = np.concatenate([grid, v, v[:50] * 0.999999999])
    solid = pen.prepare_mesh(v, f)
    np.testing.assert_array_equal(solid.inside(query), reference_inside(query, v, f))
    off_surface = np.all(np.abs(np.abs(grid) - 0.05) > 1e-12, axis=1)  # on it: the fallback decides
    np.testing.assert_array_equal(solid.inside(grid[off_surface]), np.all(np.abs(grid[off_surface]) < 0.05, axis=1))


def test_open_mesh_uses_the_fast_winding_number():
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    v, f = np.asarray(m.vertices), np.asarray(m.faces, dtype=np.int64)
    open_faces = f[1:]  # one hole: crossings are not a winding number
    query = np.random.default_rng(0).uniform(-0.06, 0.06, (400, 3))
    solid = pen.prepare_mesh(v, open_faces)
    np.testing.assert_array_equal(solid.inside(query), igl.fast_winding_number(v, open_faces, query) > 0.5)
    assert not pen._is_closed(open_faces) and pen._is_closed(f)


def test_prepare_mesh_validates():
    with pytest.raises(ValueError, match='vertices'):
        pen.prepare_mesh(np.zeros((4, 2)), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match='NaN'):
        pen.prepare_mesh(np.full((3, 3), np.nan), np.array([[0, 1, 2]]))


def test_rotated_solid_gives_the_depths_of_the_rotated_mesh(hands):
    # A rotated (and translated) copy maps the queries into the built mesh: same depths as building the
    # rotated vertices from scratch, and nothing rebuilt.
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(7)
    vl, fl = _posed(hands, 'left', rng, [-0.176, 0.025, 0.5], scale=0.1)
    vr, fr = _posed(hands, 'right', rng, [0.0, 0.0, 0.5], scale=0.1)
    left, right = pen.prepare_mesh(vl, fl), pen.prepare_mesh(vr, fr)
    pen.solid_depths(left, right)
    built = dict(left._shared)
    wrist = vl[0]
    for angles in ([0.0, 0.0, 0.0], [0.05, -0.1, 0.02], [0.3, 0.2, -0.4]):
        rot = Rotation.from_rotvec(angles).as_matrix()
        moved_vl = (vl - wrist) @ rot.T + wrist + [0.0, 0.002, 0.0]
        moved = left.rotated(rot, wrist).translated([0.0, 0.002, 0.0])
        np.testing.assert_allclose(moved.points, moved_vl, rtol=0, atol=1e-15)
        got = pen.solid_depths(moved, right)
        want = (reference_depths(moved_vl, vr, fr), reference_depths(vr, moved_vl, fl))
        assert want[0].any() and want[1].any()
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    assert all(left._shared[k] is v for k, v in built.items())
    twice = left.rotated(rot, wrist).rotated(rot.T, wrist)
    np.testing.assert_allclose(twice.points, vl, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match='rotation'):
        left.rotated(np.diag([1.0, 1.0, -1.0]), wrist)


def test_depth_search_on_a_face_subset_equals_the_whole_mesh(hands):
    # Shallow overlaps search only the faces near the inside points; the depths and closest faces must be
    # those of the whole-mesh tree.
    rng = np.random.default_rng(11)
    subset_runs = 0
    for dy in (0.04, 0.035, 0.03, 0.025):
        vl, fl = _posed(hands, 'left', rng, [-0.176, dy, 0.5], scale=0.1)
        vr, fr = _posed(hands, 'right', rng, [0.0, 0.0, 0.5], scale=0.1)
        solid = pen.prepare_mesh(vr, fr)
        depth, idx, face_ids, closest = solid.depths(vl)
        assert len(idx)
        subset_runs += 'aabb' not in solid._shared  # no whole-mesh tree: the subset path ran
        sq, full_faces, full_closest = pen.prepare_mesh(vr, fr).closest(vl[idx])
        np.testing.assert_allclose(depth[idx], np.sqrt(sq), rtol=0, atol=1e-15)
        np.testing.assert_allclose(closest, full_closest, rtol=0, atol=1e-15)
    assert subset_runs >= 2
