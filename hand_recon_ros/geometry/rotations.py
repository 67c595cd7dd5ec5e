"""Rotation conversions (batched, differentiable, float32/float64).

All functions take torch tensors with arbitrary leading batch dimensions; numpy arrays are accepted
too and then a numpy array (float64) comes back, so geometry code outside torch can share them.

Conventions:
  * rotation matrices act on column vectors (x' = R x);
  * quaternions are (x, y, z, w), the order of ROS ``geometry_msgs/Quaternion`` and scipy;
    ``matrix_to_quaternion`` returns the representative with w >= 0;
  * axis-angle vectors are axis * angle (radians), angle in [0, pi].
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    'rot6d_to_matrix',
    'matrix_to_rot6d',
    'axis_angle_to_matrix',
    'matrix_to_axis_angle',
    'matrix_to_quaternion',
    'quaternion_to_matrix',
    'axis_angle_to_quaternion',
    'quaternion_to_axis_angle',
]

ROT6D_LAYOUTS = ('interleaved', 'split')


def _numpy_compatible(fn: Callable[..., torch.Tensor]) -> Callable[..., Any]:
    """Let a torch function take/return numpy arrays (computed in float64); the signatures below show the
    torch form, a numpy array (or nested list) in gives a float64 numpy array out."""

    @functools.wraps(fn)
    def wrapper(x: torch.Tensor | np.ndarray | list | tuple, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return fn(x, *args, **kwargs)
        if isinstance(x, (np.ndarray, list, tuple)):
            out = fn(torch.as_tensor(np.asarray(x, dtype=np.float64)), *args, **kwargs)
            return out.numpy()
        raise TypeError(f'{fn.__name__}: expected a torch.Tensor or numpy array, got {type(x).__name__}')

    return wrapper


def _check_last_dims(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if not x.is_floating_point():
        raise TypeError(f'{name} must be floating point, got {x.dtype}')
    if tuple(x.shape[x.dim() - len(shape) :]) != shape or x.dim() < len(shape):
        raise ValueError(f'{name} must have shape (..., {", ".join(map(str, shape))}), got {tuple(x.shape)}')


def _small_angle_threshold(dtype: torch.dtype) -> float:
    # Below this squared angle the Taylor series is exact to machine precision and avoids 0/0.
    return 1e-12 if dtype == torch.float64 else 1e-6


@_numpy_compatible
def rot6d_to_matrix(x: torch.Tensor, layout: str = 'interleaved') -> torch.Tensor:
    """(..., 6) continuous 6D representation -> (..., 3, 3) rotation matrix.

    ``layout='interleaved'`` is the ACR/SPIN/ROMP convention: the 6 numbers are a row-major 3x2
    matrix, so the first basis vector is elements (0, 2, 4) and the second (1, 3, 5).
    ``layout='split'`` takes (0, 1, 2) and (3, 4, 5) (Zhou et al. / pytorch3d). The first vector is
    normalised, the second is made orthogonal to it (Gram-Schmidt), the third is their cross product;
    they become the matrix columns.
    """
    _check_last_dims(x, (6,), 'rot6d')
    if layout == 'interleaved':
        a1, a2 = x[..., 0::2], x[..., 1::2]
    elif layout == 'split':
        a1, a2 = x[..., :3], x[..., 3:]
    else:
        raise ValueError(f'layout must be one of {ROT6D_LAYOUTS}, got {layout!r}')
    eps = torch.finfo(x.dtype).eps
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(eps)
    a2_orth = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2_orth / a2_orth.norm(dim=-1, keepdim=True).clamp_min(eps)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


@_numpy_compatible
def matrix_to_rot6d(R: torch.Tensor, layout: str = 'interleaved') -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 6): the first two columns in the given layout."""
    _check_last_dims(R, (3, 3), 'R')
    if layout == 'interleaved':
        return R[..., :, :2].reshape(*R.shape[:-2], 6)
    if layout == 'split':
        return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)
    raise ValueError(f'layout must be one of {ROT6D_LAYOUTS}, got {layout!r}')


def _skew(v: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack(
        [
            torch.stack([zero, -z, y], -1),
            torch.stack([z, zero, -x], -1),
            torch.stack([-y, x, zero], -1),
        ],
        dim=-2,
    )


@_numpy_compatible
def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3), Rodrigues: R = I + A [v]x + B [v]x^2 with the unnormalised v.

    A = sin(t)/t and B = (1 - cos t)/t^2 = 2 sin^2(t/2)/t^2 (cancellation-free form); both switch to
    their Taylor series near t = 0 so values and gradients stay finite at the identity.
    """
    _check_last_dims(aa, (3,), 'axis_angle')
    theta2 = (aa * aa).sum(-1)
    small = theta2 < _small_angle_threshold(aa.dtype)
    safe_theta2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe_theta2.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, 2.0 * torch.sin(0.5 * theta) ** 2 / safe_theta2)
    K = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(K.shape)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


@_numpy_compatible
def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (x, y, z, w), normalised here -> (..., 3, 3)."""
    _check_last_dims(q, (4,), 'quaternion')
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(q.dtype).eps)
    x, y, z, w = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        dim=-2,
    )


@_numpy_compatible
def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (x, y, z, w) with w >= 0.

    Shepperd's method: of the four algebraically equal formulas, use the one whose pivot
    (4w^2, 4x^2, 4y^2 or 4z^2) is largest, so no division by a small number happens anywhere,
    in particular near 180 degrees where w -> 0.
    """
    _check_last_dims(R, (3, 3), 'R')
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    pivots = torch.stack(
        [
            1 + m00 + m11 + m22,  # 4 w^2
            1 + m00 - m11 - m22,  # 4 x^2
            1 - m00 + m11 - m22,  # 4 y^2
            1 - m00 - m11 + m22,  # 4 z^2
        ],
        dim=-1,
    )
    # The largest pivot is >= 1 (they sum to 4); clamping the others keeps the unused candidates
    # (and their gradients) finite.
    r = 2.0 * pivots.clamp_min(0.25).sqrt()  # = 4 * |component|
    d21, d02, d10 = m21 - m12, m02 - m20, m10 - m01
    s01, s02, s12 = m01 + m10, m02 + m20, m12 + m21
    candidates = torch.stack(
        [
            torch.stack([d21 / r[..., 0], d02 / r[..., 0], d10 / r[..., 0], r[..., 0] / 4], -1),
            torch.stack([r[..., 1] / 4, s01 / r[..., 1], s02 / r[..., 1], d21 / r[..., 1]], -1),
            torch.stack([s01 / r[..., 2], r[..., 2] / 4, s12 / r[..., 2], d02 / r[..., 2]], -1),
            torch.stack([s02 / r[..., 3], s12 / r[..., 3], r[..., 3] / 4, d10 / r[..., 3]], -1),
        ],
        dim=-2,
    )
    best = pivots.argmax(dim=-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = torch.where(q[..., 3:4] < 0, -q, q)
    return q / q.norm(dim=-1, keepdim=True)


@_numpy_compatible
def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (x, y, z, w) -> (..., 3) axis-angle with angle in [0, pi].

    angle = 2 atan2(|v|, w) after flipping to w >= 0. The factor angle/|v| tends to 2/w at the
    identity, where its Taylor series is used instead of 0/0.
    """
    _check_last_dims(q, (4,), 'quaternion')
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(q.dtype).eps)
    q = torch.where(q[..., 3:4] < 0, -q, q)
    v, w = q[..., :3], q[..., 3]
    sin_half2 = (v * v).sum(-1)
    small = sin_half2 < _small_angle_threshold(q.dtype)
    sin_half = torch.where(small, torch.ones_like(sin_half2), sin_half2).sqrt()
    angle = 2.0 * torch.atan2(sin_half, w)
    safe_w = torch.where(small, w, torch.ones_like(w))
    # atan2(s, w)/s ~= 1/w - s^2/(3 w^3) for small s (w ~ |q| there).
    factor = torch.where(small, 2.0 / safe_w - 2.0 * sin_half2 / (3.0 * safe_w**3), angle / sin_half)
    return v * factor[..., None]


@_numpy_compatible
def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3), through the quaternion: stable at 0 and at pi, never NaN."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


@_numpy_compatible
def axis_angle_to_quaternion(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 4) quaternion (x, y, z, w); sin(t/2)/t uses Taylor near 0."""
    _check_last_dims(aa, (3,), 'axis_angle')
    theta2 = (aa * aa).sum(-1)
    small = theta2 < _small_angle_threshold(aa.dtype)
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    half_sinc = torch.where(small, 0.5 - theta2 / 48.0, torch.sin(0.5 * theta) / theta)
    w = torch.where(small, 1.0 - theta2 / 8.0, torch.cos(0.5 * theta))
    return torch.cat([aa * half_sinc[..., None], w[..., None]], dim=-1)
