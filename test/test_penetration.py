"""Two-mesh penetration depths, IHMR metrics and the differentiable collision loss on known geometry."""

import numpy as np
import pytest
import torch
import trimesh

from hand_recon_ros.hand_model import penetration as pen

RADIUS = 0.05


def _sphere(centre, subdivisions=3):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=RADIUS)
    return np.asarray(m.vertices) + centre, np.asarray(m.faces, dtype=np.int64)


def _sphere_inradius(verts, faces, centre):
    """Smallest distance from the centre to any face plane (the polyhedron contains this ball)."""
    tri = verts[faces] - centre
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return np.abs((n * tri[:, 0]).sum(1)).min()


def _box(extents, centre, subdivisions=0):
    m = trimesh.creation.box(extents=extents)
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    for _ in range(subdivisions):
        v, f = trimesh.remesh.subdivide(v, f)
    return np.asarray(v) + centre, np.asarray(f, dtype=np.int64)


def test_separated_meshes_have_zero_depth_and_zero_loss():
    va, fa = _sphere([0.0, 0.0, 0.0])
    vb, fb = _sphere([0.2, 0.01, 0.0])
    da, db = pen.penetration_depths(va, fa, vb, fb)
    assert not da.any() and not db.any()
    assert pen.penetration_metrics(va, fa, vb, fb) == {'ave_p_mm': 0.0, 'max_p_mm': 0.0, 'n_inside': 0}
    ta = torch.tensor(va, requires_grad=True)
    tb = torch.tensor(vb, requires_grad=True)
    loss = pen.collision_loss(ta, fa, tb, fb)
    assert loss.item() == 0.0
    loss.backward()
    assert not ta.grad.any() and not tb.grad.any()
    # Touching bounding boxes but still disjoint (sphere in the box corner region).
    vc, fc = _sphere([0.09, 0.09, 0.0])
    assert not np.concatenate(pen.penetration_depths(va, fa, vc, fc)).any()


@pytest.mark.parametrize('depth', [0.004, 0.013, 0.031])
def test_box_pushed_into_box_has_max_depth_d(depth):
    # A: 10 cm cube at the origin, faces subdivided; B: a large slab whose -x face sits at 0.05 - d.
    va, fa = _box([0.1, 0.1, 0.1], [0, 0, 0], subdivisions=3)
    vb, fb = _box([0.2, 0.4, 0.4], [0.05 - depth + 0.1, 0, 0])
    da, db = pen.penetration_depths(va, fa, vb, fb)
    assert da.max() == pytest.approx(depth, abs=1e-9)
    on_front_face = np.isclose(va[:, 0], 0.05)
    np.testing.assert_allclose(da[on_front_face], depth, atol=1e-9)
    inside = va[:, 0] > 0.05 - depth
    np.testing.assert_allclose(da[inside], va[inside, 0] - (0.05 - depth), atol=1e-9)
    assert not da[~inside].any() and not db.any()
    m = pen.penetration_metrics(va, fa, vb, fb)
    assert m['max_p_mm'] == pytest.approx(depth * 1000, abs=1e-6)
    assert m['n_inside'] == inside.sum()
    assert m['ave_p_mm'] == pytest.approx(1000 * da[inside].sum() / (len(va) + len(vb)))


def test_sphere_overlap_matches_analytic_depth():
    gap = 0.07  # centre distance < 2 r: analytic max depth 2 r - gap = 30 mm
    ca, cb = np.zeros(3), np.array([gap, 0.01, -0.005])
    va, fa = _sphere(ca, subdivisions=4)
    vb, fb = _sphere(cb, subdivisions=4)
    r_in = _sphere_inradius(vb, fb, cb)
    assert RADIUS - r_in < 3e-4
    da, db = pen.penetration_depths(va, fa, vb, fb)
    dist = np.linalg.norm(va - cb, axis=1)
    inside = da > 0
    # Inside test brackets the true ball: certainly inside the inscribed ball, never outside r.
    assert inside[dist < r_in - 1e-9].all() and not inside[dist > RADIUS].any()
    # Depth to the polyhedron lies between the inscribed and circumscribed sphere depths.
    assert np.all(da[inside] <= RADIUS - dist[inside] + 1e-12)
    assert np.all(da[inside] >= r_in - dist[inside] - 1e-12)
    analytic_max = 2 * RADIUS - np.linalg.norm(cb - ca)
    assert abs(da.max() - analytic_max) < 3e-4 and abs(db.max() - analytic_max) < 3e-4
    # Symmetric configuration: both directions see the same number of vertices inside (up to the mesh).
    assert abs(int((db > 0).sum()) - int(inside.sum())) <= 0.05 * inside.sum()
    # Exact winding number agrees with the fast one.
    da_exact, db_exact = pen.penetration_depths(va, fa, vb, fb, exact=True)
    np.testing.assert_allclose(da_exact, da, atol=1e-12)
    np.testing.assert_allclose(db_exact, db, atol=1e-12)


def test_metrics_restrict_queries_and_batch_helper():
    va, fa = _sphere([0.0, 0.0, 0.0])
    vb, fb = _sphere([0.06, 0.0, 0.0])
    da, db = pen.penetration_depths(va, fa, vb, fb)
    # Query only the first half of a's vertices.
    n = len(va) // 2
    m = pen.penetration_metrics(va, fa, vb, fb, n_query_a=n)
    assert m['ave_p_mm'] == pytest.approx(1000 * (da[:n].sum() + db.sum()) / (n + len(vb)))
    shift = np.array([[0.0, 0, 0], [0.5, 0, 0]])
    batch_a = np.stack([va, va + shift[1]])
    batch_b = np.stack([vb, vb])
    bda, bdb = pen.penetration_depths_batch(batch_a, fa, batch_b, fb)
    np.testing.assert_array_equal(bda[0], da)
    np.testing.assert_array_equal(bdb[0], db)
    assert not bda[1].any() and not bdb[1].any()


def test_collision_loss_value_matches_depths():
    va, fa = _sphere([0.0, 0.0, 0.0])
    vb, fb = _sphere([0.065, 0.005, 0.0])
    da, db = pen.penetration_depths(va, fa, vb, fb)
    ta = torch.tensor(np.stack([va, va + [1.0, 0, 0]]))
    tb = torch.tensor(np.stack([vb, vb]))
    loss = pen.collision_loss(ta, fa, tb, fb)
    assert loss.shape == (2,)
    assert loss[0].item() == pytest.approx(da.sum() + db.sum(), rel=1e-9)
    assert loss[1].item() == 0.0
    mean = pen.collision_loss(ta[0], fa, tb[0], fb, reduction='mean')
    assert mean.item() == pytest.approx((da.sum() + db.sum()) / (len(va) + len(vb)), rel=1e-9)
    loss32 = pen.collision_loss(ta[0].float(), torch.as_tensor(fa), tb[0].float(), torch.as_tensor(fb))
    assert loss32.dtype == torch.float32 and loss32.item() == pytest.approx(loss[0].item(), rel=1e-5)


def test_collision_loss_gradient_known_direction_on_boxes():
    depth = 0.013
    va, fa = _box([0.1, 0.1, 0.1], [0, 0, 0], subdivisions=2)
    vb, fb = _box([0.2, 0.4, 0.4], [0.05 - depth + 0.1, 0, 0])
    ta = torch.tensor(va, requires_grad=True)
    tb = torch.tensor(vb, requires_grad=True)
    pen.collision_loss(ta, fa, tb, fb).backward()
    inside = va[:, 0] > 0.05 - depth
    # Each penetrating vertex is pulled toward -x (out of B) by a unit gradient ...
    expected = np.zeros_like(va)
    expected[inside, 0] = 1.0
    np.testing.assert_allclose(ta.grad.numpy(), expected, atol=1e-9)
    # ... and B's face is pushed toward +x with the same total force.
    np.testing.assert_allclose(tb.grad.numpy().sum(0), [-inside.sum(), 0, 0], atol=1e-9)


def test_gradient_step_pushes_spheres_apart():
    va, fa = _sphere([0.0, 0.0, 0.0])
    vb, fb = _sphere([0.07, 0.02, 0.0])
    ta = torch.tensor(va, requires_grad=True)
    tb = torch.tensor(vb, requires_grad=True)
    loss = pen.collision_loss(ta, fa, tb, fb)
    loss.backward()
    assert ta.grad.abs().sum() > 0 and tb.grad.abs().sum() > 0
    # Net force on A points away from B's centre, on B away from A's.
    direction = (vb.mean(0) - va.mean(0)) / np.linalg.norm(vb.mean(0) - va.mean(0))
    assert float(-ta.grad.sum(0).numpy() @ direction) < 0
    assert float(-tb.grad.sum(0).numpy() @ direction) > 0
    with torch.no_grad():
        stepped = pen.collision_loss(ta - 1e-3 * ta.grad, fa, tb - 1e-3 * tb.grad, fb)
    assert stepped.item() < 0.9 * loss.item()


def test_bad_inputs_raise():
    va, fa = _sphere([0.0, 0.0, 0.0], subdivisions=1)
    with pytest.raises(ValueError, match='faces index'):
        pen.penetration_depths(va, fa + 1000, va, fa)
    bad = va.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        pen.penetration_depths(bad, fa, va, fa)
    with pytest.raises(TypeError):
        pen.penetration_depths(va, fa.astype(float), va, fa)
    with pytest.raises(TypeError):
        pen.collision_loss(va, fa, va, fa)
    with pytest.raises(ValueError, match='reduction'):
        pen.collision_loss(torch.tensor(va), fa, torch.tensor(va), fa, reduction='max')
    inside = pen.inside_mask(np.array([[0.0, 0, 0], [1.0, 0, 0]]), va, fa)
    assert inside.tolist() == [True, False]
