"""Rotation conversions: known values, round trips (incl. angles near 0 and pi), gradients."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hand_recon_ros.geometry import rotations as rot


def _random_axis_angles(n, seed, angles=None):
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    if angles is None:
        angles = rng.uniform(0, np.pi, size=n)
    return axes * np.asarray(angles)[:, None]


EDGE_ANGLES = [0.0, 1e-12, 1e-8, 1e-4, 0.3, np.pi / 2, np.pi - 1e-3, np.pi - 1e-7, np.pi]


def test_axis_angle_to_matrix_known_values():
    R = rot.axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    R = rot.axis_angle_to_matrix(np.array([np.pi, 0.0, 0.0]))
    np.testing.assert_allclose(R, np.diag([1.0, -1.0, -1.0]), atol=1e-15)
    np.testing.assert_array_equal(rot.axis_angle_to_matrix(np.zeros(3)), np.eye(3))


def test_quaternion_known_values_xyzw_order():
    # 90 degrees about z: (0, 0, sin 45, cos 45) in ROS (x, y, z, w) order.
    q = rot.axis_angle_to_quaternion(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(q, [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    R = rot.quaternion_to_matrix(np.array([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)]))
    np.testing.assert_allclose(R @ [1.0, 0, 0], [0, 1, 0], atol=1e-15)


def test_matches_scipy_on_random_rotations():
    aa = Rotation.random(500, random_state=3).as_rotvec()
    ref = Rotation.from_rotvec(aa)
    R = rot.axis_angle_to_matrix(aa)
    np.testing.assert_allclose(R, ref.as_matrix(), atol=1e-14)
    q_ref = ref.as_quat()
    q_ref *= np.sign(q_ref[:, 3:])
    np.testing.assert_allclose(rot.matrix_to_quaternion(R), q_ref, atol=1e-14)
    np.testing.assert_allclose(rot.axis_angle_to_quaternion(aa), q_ref, atol=1e-14)
    np.testing.assert_allclose(rot.quaternion_to_matrix(q_ref), ref.as_matrix(), atol=1e-14)


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_axis_angle_round_trip_near_zero_and_pi(dtype, tol):
    aa = torch.as_tensor(_random_axis_angles(len(EDGE_ANGLES) * 20, 5, EDGE_ANGLES * 20), dtype=dtype)
    R = rot.axis_angle_to_matrix(aa)
    back = rot.matrix_to_axis_angle(R)
    assert back.dtype == dtype and torch.isfinite(back).all()
    # Near pi, aa and -aa are the same rotation: compare matrices, and angles directly.
    torch.testing.assert_close(rot.axis_angle_to_matrix(back), R, atol=tol * 10, rtol=0)
    angles = aa.norm(dim=-1)
    torch.testing.assert_close(back.norm(dim=-1), angles, atol=max(tol, 1e-3 if dtype == torch.float32 else 0), rtol=0)
    away_from_pi = angles < np.pi - 1e-2
    torch.testing.assert_close(back[away_from_pi], aa[away_from_pi], atol=tol * 10, rtol=0)


def test_rotation_matrices_are_orthonormal_with_det_one():
    aa = torch.as_tensor(_random_axis_angles(300, 7), dtype=torch.float32)
    x6 = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
    for R in (
        rot.axis_angle_to_matrix(aa),
        rot.rot6d_to_matrix(x6),
        rot.rot6d_to_matrix(x6, 'split'),
        rot.quaternion_to_matrix(torch.randn(300, 4, generator=torch.Generator().manual_seed(1))),
    ):
        eye = torch.eye(3).expand(300, 3, 3)
        torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.linalg.det(R), torch.ones(300), atol=1e-5, rtol=0)


def test_rot6d_layouts():
    R = Rotation.random(50, random_state=11).as_matrix()
    x_inter = rot.matrix_to_rot6d(R)
    # interleaved: row-major 3x2, first column at (0, 2, 4).
    np.testing.assert_array_equal(x_inter[:, [0, 2, 4]], R[:, :, 0])
    np.testing.assert_array_equal(x_inter[:, [1, 3, 5]], R[:, :, 1])
    x_split = rot.matrix_to_rot6d(R, layout='split')
    np.testing.assert_array_equal(x_split[:, :3], R[:, :, 0])
    np.testing.assert_allclose(rot.rot6d_to_matrix(x_inter), R, atol=1e-14)
    np.testing.assert_allclose(rot.rot6d_to_matrix(x_split, layout='split'), R, atol=1e-14)
    # The layouts differ: decoding with the wrong one gives another rotation.
    assert np.abs(rot.rot6d_to_matrix(x_inter, layout='split') - R).max() > 0.1


def test_rot6d_gram_schmidt_on_unnormalised_input():
    # ACR convention: (a1x, a2x, a1y, a2y, a1z, a2z); a1 = (2, 0, 0), a2 = (1, 3, 0).
    R = rot.rot6d_to_matrix(np.array([2.0, 1.0, 0.0, 3.0, 0.0, 0.0]))
    np.testing.assert_allclose(R, np.eye(3), atol=1e-15)


@pytest.mark.parametrize(
    'fn,shape',
    [
        (rot.axis_angle_to_matrix, (3,)),
        (rot.matrix_to_axis_angle, (3, 3)),
        (rot.rot6d_to_matrix, (6,)),
        (rot.quaternion_to_matrix, (4,)),
        (rot.matrix_to_quaternion, (3, 3)),
        (rot.axis_angle_to_quaternion, (3,)),
    ],
)
def test_gradients_are_finite_at_identity_and_pi(fn, shape):
    aa = torch.as_tensor(_random_axis_angles(len(EDGE_ANGLES), 2, EDGE_ANGLES))
    if shape == (3,):
        x = aa.clone()
    elif shape == (3, 3):
        x = rot.axis_angle_to_matrix(aa)
    elif shape == (6,):
        x = rot.matrix_to_rot6d(rot.axis_angle_to_matrix(aa))
    else:
        x = rot.axis_angle_to_quaternion(aa)
    x = x.detach().requires_grad_(True)
    out = fn(x)
    (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_axis_angle_gradient_matches_finite_differences():
    aa = torch.tensor([[0.3, -0.2, 0.5], [1e-9, 0.0, 0.0], [0.0, 2.5, 0.1]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (aa,))
    R = rot.axis_angle_to_matrix(torch.tensor([[0.3, -0.2, 0.5], [0.0, 2.5, 0.1]], dtype=torch.float64))
    assert torch.autograd.gradcheck(rot.matrix_to_axis_angle, (R.requires_grad_(True),))


def test_bad_input_raises():
    with pytest.raises(ValueError, match='shape'):
        rot.axis_angle_to_matrix(torch.zeros(4))
    with pytest.raises(ValueError, match='layout'):
        rot.rot6d_to_matrix(torch.zeros(6), layout='columns')
    with pytest.raises(TypeError):
        rot.axis_angle_to_matrix(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError):
        rot.axis_angle_to_matrix('x')
