"""Camera models of the pipeline (numpy, no ROS types).

Pixel convention: continuous coordinates with the top-left image corner at (0, 0), u to the right,
v down, as ACR maps its outputs. ROS puts pixel *centres* at integers; the half-pixel difference is
ignored everywhere (it is far below keypoint noise).

Chain from the network to metres:
  network input ([-1, 1], padded square) --LetterboxTransform--> original pixels
  --solve_translation (true K)--> camera-frame translation of the root-relative hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    'LetterboxTransform',
    'weak_perspective_project',
    'weak_to_translation',
    'solve_translation',
    'solve_translations',
    'reprojection_errors',
    'project_points',
    'intrinsics_from_camera_info',
    'fallback_intrinsics',
    'DEFAULT_FALLBACK_FOV_DEG',
    'DegenerateTranslationError',
]

# Horizontal FOV assumed when CameraInfo is missing/broken: typical USB webcams and robot RGB
# cameras are 55-70 deg horizontally, 60 deg sits in that range; depth scales with 1/tan(fov/2).
DEFAULT_FALLBACK_FOV_DEG = 60.0


class DegenerateTranslationError(ValueError):
    """The 2D/3D correspondences do not determine a translation in front of the camera."""


def _as_points(x: ArrayLike, dim: int, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != dim:
        raise ValueError(f'{name} must have shape (..., {dim}), got {arr.shape}')
    return arr


def _check_K(K: ArrayLike) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'K must be 3x3, got {K.shape}')
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'K must be finite with positive focal lengths, got {K.tolist()}')
    return K


@dataclass(frozen=True)
class LetterboxTransform:
    """Pad an HxW image to a centred square with black borders, then resize to input_size (ACR §1.1).

    Like imgaug, the odd padding pixel goes to the right/bottom. ``scale`` maps padded-square pixels to
    input pixels.
    """

    height: int
    width: int
    input_size: int = 512

    def __post_init__(self) -> None:
        for name in ('height', 'width', 'input_size'):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')

    @property
    def padded_side(self) -> int:
        return max(self.height, self.width)

    @property
    def pad_left(self) -> int:
        return (self.padded_side - self.width) // 2

    @property
    def pad_top(self) -> int:
        return (self.padded_side - self.height) // 2

    @property
    def pad_right(self) -> int:
        return self.padded_side - self.width - self.pad_left

    @property
    def pad_bottom(self) -> int:
        return self.padded_side - self.height - self.pad_top

    @property
    def scale(self) -> float:
        return self.input_size / self.padded_side

    def to_input(self, uv: ArrayLike) -> np.ndarray:
        """Original-image pixels (..., 2) -> network-input pixels (..., 2)."""
        uv = _as_points(uv, 2, 'uv')
        return (uv + [self.pad_left, self.pad_top]) * self.scale

    def to_original(self, uv_input: ArrayLike) -> np.ndarray:
        """Network-input pixels (..., 2) -> original-image pixels (..., 2)."""
        uv_input = _as_points(uv_input, 2, 'uv_input')
        return uv_input / self.scale - [self.pad_left, self.pad_top]

    def normalized_to_original(self, p: ArrayLike) -> np.ndarray:
        """Normalised input coordinates in [-1, 1] (..., 2) -> original pixels: (p+1)/2*S_pad - pad."""
        p = _as_points(p, 2, 'p')
        return (p + 1.0) * (0.5 * self.padded_side) - [self.pad_left, self.pad_top]

    def original_to_normalized(self, uv: ArrayLike) -> np.ndarray:
        uv = _as_points(uv, 2, 'uv')
        return (uv + [self.pad_left, self.pad_top]) / (0.5 * self.padded_side) - 1.0

    def apply(self, image: np.ndarray, interpolation: int | None = None) -> np.ndarray:
        """Letterbox an HxW(xC) image: black centred padding, then resize (bicubic like ACR)."""
        import cv2

        image = np.asarray(image)
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f'image is {image.shape[:2]}, transform expects {(self.height, self.width)}')
        padded = cv2.copyMakeBorder(
            image, self.pad_top, self.pad_bottom, self.pad_left, self.pad_right, cv2.BORDER_CONSTANT, value=0
        )
        size = (self.input_size, self.input_size)
        return cv2.resize(padded, size, interpolation=cv2.INTER_CUBIC if interpolation is None else interpolation)


def weak_perspective_project(X_rootrel: ArrayLike, s: ArrayLike, tx: ArrayLike, ty: ArrayLike) -> np.ndarray:
    """Weak perspective of ACR: p = s * X[..., :2] + (tx, ty), normalised input coords in [-1, 1].

    X_rootrel: (..., N, 3) root-relative points in metres; s, tx, ty: scalars or (...,) arrays.
    Map to original pixels with ``LetterboxTransform.normalized_to_original``.
    """
    X = _as_points(X_rootrel, 3, 'X_rootrel')
    s, tx, ty = (np.asarray(v, dtype=np.float64)[..., None] for v in (s, tx, ty))
    return np.stack([s * X[..., 0] + tx, s * X[..., 1] + ty], axis=-1)


def weak_to_translation(s: float, tx: float, ty: float, K: ArrayLike, letterbox: LetterboxTransform) -> np.ndarray:
    """Closed-form metric translation from the weak-perspective camera (initial guess).

    A root-relative point X at depth t_z projects to u = fx (X + t_x)/t_z + cx under the real camera
    (hand depth extent << t_z). Weak perspective gives u = (s X + tx + 1)/2 * S_pad - pad_left.
    Matching the slope in X: fx/t_z = s S_pad/2  ->  t_z = 2 f / (s S_pad), f = sqrt(fx fy);
    matching the offset: t_x = t_z (u_c - cx)/fx with u_c = (tx + 1)/2 S_pad - pad_left the image of
    the root (v/t_y likewise). With S_pad = 512, cx = 256, no padding this is ACR's
    t = (tx/s, ty/s, f/(256 s)). Skew is ignored.
    """
    K = _check_K(K)
    if not isinstance(letterbox, LetterboxTransform):
        raise TypeError(f'letterbox must be a LetterboxTransform, got {type(letterbox).__name__}')
    s, tx, ty = float(s), float(tx), float(ty)
    if not np.isfinite([s, tx, ty]).all() or s <= 0:
        raise DegenerateTranslationError(
            f'weak-perspective camera needs finite values and s > 0, got ' f'{(s, tx, ty)}'
        )
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tz = 2.0 * np.sqrt(fx * fy) / (s * letterbox.padded_side)
    u_c, v_c = letterbox.normalized_to_original(np.array([tx, ty]))
    return np.array([tz * (u_c - cx) / fx, tz * (v_c - cy) / fy, tz])


def project_points(X_cam: ArrayLike, K: ArrayLike) -> np.ndarray:
    """(..., N, 3) camera-frame points -> (..., N, 2) pixels; NaN for points with Z <= 0."""
    X = _as_points(X_cam, 3, 'X_cam')
    K = _check_K(K)
    z = X[..., 2:3]
    in_front = z > 0
    xn = X[..., :2] / np.where(in_front, z, 1.0)
    uv = xn @ K[:2, :2].T + K[:2, 2]
    return np.where(in_front, uv, np.nan)


def reprojection_errors(joints_rootrel: ArrayLike, t: ArrayLike, keypoints_px: ArrayLike, K: ArrayLike) -> np.ndarray:
    """Per-joint pixel distance between the projection of joints_rootrel + t and keypoints_px."""
    uv = project_points(np.asarray(joints_rootrel, dtype=np.float64) + np.asarray(t, dtype=np.float64), K)
    return np.linalg.norm(uv - np.asarray(keypoints_px, dtype=np.float64), axis=-1)


def solve_translation(
    joints_rootrel: ArrayLike,
    keypoints_px: ArrayLike,
    K: ArrayLike,
    weights: ArrayLike | None = None,
    refine_iters: int = 5,
    min_depth: float = 1e-3,
) -> np.ndarray:
    """Metric translation t (3,) such that K (X_i + t) projects onto the keypoints.

    Linear step (DLT-like): with normalised image coordinates (x_i, y_i, 1) = K^-1 (u_i, v_i, 1),
    x_i (Z_i + t_z) = X_i + t_x and y_i (Z_i + t_z) = Y_i + t_y, i.e. two equations per joint that
    are linear in t:  t_x - x_i t_z = x_i Z_i - X_i,  t_y - y_i t_z = y_i Z_i - Y_i,
    solved by weighted least squares. That algebraic error is the pixel error times the depth
    (Z_i + t_z), so it over-weights far joints; ``refine_iters`` Gauss-Newton steps on the weighted
    pixel reprojection error fix that (a step is kept only if it lowers the error).

    Joints whose 3D/2D values are not finite get weight 0. Raises DegenerateTranslationError when fewer
    than 2 joints have positive weight, the system is rank deficient, or the solution puts a joint
    closer than ``min_depth`` metres to (or behind) the camera; callers can fall back to
    ``weak_to_translation``.
    """
    X = _as_points(joints_rootrel, 3, 'joints_rootrel')
    uv = _as_points(keypoints_px, 2, 'keypoints_px')
    if X.ndim != 2 or uv.shape != (X.shape[0], 2):
        raise ValueError(f'joints_rootrel (N, 3) and keypoints_px (N, 2) must match, got {X.shape}, {uv.shape}')
    K = _check_K(K)
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,):
        raise ValueError(f'weights must have shape ({n},), got {w.shape}')
    finite = np.isfinite(X).all(-1) & np.isfinite(uv).all(-1) & np.isfinite(w)
    w = np.where(finite & (w > 0), w, 0.0)
    used = w > 0
    if used.sum() < 2:
        raise DegenerateTranslationError(f'need >= 2 joints with finite values and positive weight, got {used.sum()}')
    X, uv, w = X[used], uv[used], w[used]

    xy = np.linalg.solve(K, np.concatenate([uv, np.ones((len(uv), 1))], axis=1).T).T[:, :2]
    m = len(X)
    A = np.zeros((2 * m, 3))
    A[0::2, 0] = 1.0
    A[1::2, 1] = 1.0
    A[0::2, 2] = -xy[:, 0]
    A[1::2, 2] = -xy[:, 1]
    b = np.empty(2 * m)
    b[0::2] = xy[:, 0] * X[:, 2] - X[:, 0]
    b[1::2] = xy[:, 1] * X[:, 2] - X[:, 1]
    sw = np.repeat(np.sqrt(w), 2)
    t, _, rank, _ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
    if rank < 3:
        raise DegenerateTranslationError('keypoints do not constrain the depth (all rays coincide?)')

    def cost(t_: np.ndarray) -> float:
        z = X[:, 2] + t_[2]
        if np.any(z < min_depth):
            return np.inf
        r = project_points(X + t_, K) - uv
        return float((w * (r * r).sum(-1)).sum())

    best = cost(t)
    for _ in range(refine_iters):
        P = X + t
        z = P[:, 2]
        if np.any(z < min_depth):
            break
        r = (project_points(P, K) - uv).reshape(-1)
        # d(u,v)/dP for u = fx x/z + s y/z + cx, v = fy y/z + cy; dP/dt = I.
        J = np.zeros((m, 2, 3))
        J[:, 0, 0] = K[0, 0] / z
        J[:, 0, 1] = K[0, 1] / z
        J[:, 0, 2] = -(K[0, 0] * P[:, 0] + K[0, 1] * P[:, 1]) / z**2
        J[:, 1, 1] = K[1, 1] / z
        J[:, 1, 2] = -K[1, 1] * P[:, 1] / z**2
        J = J.reshape(-1, 3) * sw[:, None]
        step = np.linalg.lstsq(J, -r * sw, rcond=None)[0]
        candidate = cost(t + step)
        if not candidate < best:
            break
        t, best = t + step, candidate
    if not np.isfinite(best):
        raise DegenerateTranslationError(f'solution t={t.tolist()} puts joints behind the camera')
    return t


def solve_translations(
    joints_rootrel: ArrayLike, keypoints_px: ArrayLike, K: ArrayLike, refine_iters: int = 5, min_depth: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """``solve_translation`` for H hands at once (equal joint weights): (H, N, 3), (H, N, 2) -> t (H, 3), ok (H,).

    The same linear step and Gauss-Newton refinement, vectorised over the hands through 3x3 normal equations
    (per-frame cost no longer grows by a Python-level solve per hand). A hand whose values are not all finite,
    whose rays coincide, or whose solution puts a joint closer than ``min_depth`` to the camera gets ok False
    (its t is NaN), where ``solve_translation`` raises.
    """
    X = _as_points(joints_rootrel, 3, 'joints_rootrel')
    uv = _as_points(keypoints_px, 2, 'keypoints_px')
    if X.ndim != 3 or uv.shape != X.shape[:2] + (2,):
        raise ValueError(f'joints_rootrel (H, N, 3) and keypoints_px (H, N, 2) must match, got {X.shape}, {uv.shape}')
    K = _check_K(K)
    fx, skew, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    h, n = X.shape[:2]
    finite = np.isfinite(X).all(axis=(1, 2)) & np.isfinite(uv).all(axis=(1, 2))
    X = np.where(finite[:, None, None], X, 0.0)
    uv = np.where(finite[:, None, None], uv, 0.0)
    # normalised image coordinates K^-1 (u, v, 1)
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    # linear step: t_x - x t_z = x Z - X, t_y - y t_z = y Z - Y, as normal equations A^T A t = A^T b
    bx, by = x * X[..., 2] - X[..., 0], y * X[..., 2] - X[..., 1]
    sx, sy, sxx = x.sum(1), y.sum(1), (x * x + y * y).sum(1)
    AtA = np.zeros((h, 3, 3))
    AtA[:, 0, 0] = AtA[:, 1, 1] = n
    AtA[:, 0, 2] = AtA[:, 2, 0] = -sx
    AtA[:, 1, 2] = AtA[:, 2, 1] = -sy
    AtA[:, 2, 2] = sxx
    Atb = np.stack([bx.sum(1), by.sum(1), -(x * bx + y * by).sum(1)], axis=-1)
    # the depth is undetermined when all rays coincide: the spread of (x, y) around its mean vanishes
    spread = sxx - (sx * sx + sy * sy) / n
    ok = finite & (spread > 1e-12 * np.maximum(sxx, 1e-300))
    AtA[~ok] = np.eye(3)
    t = np.linalg.solve(AtA, Atb[..., None])[..., 0]

    def cost(t_: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        P = X + t_[:, None, :]
        z = P[..., 2]
        zs = np.where(z > 0, z, 1.0)
        r = np.stack([(fx * P[..., 0] + skew * P[..., 1]) / zs + cx, fy * P[..., 1] / zs + cy], -1) - uv
        c = (r * r).sum(axis=(1, 2))
        return np.where((z >= min_depth).all(1), c, np.inf), P, zs, r

    best, P, z, r = cost(t)
    active = ok & np.isfinite(best)
    for _ in range(refine_iters):
        if not active.any():
            break
        # d(u, v)/dt for u = (fx X + skew Y)/Z + cx, v = fy Y/Z + cy (dP/dt = I); J (H, N, 2, 3)
        J: np.ndarray = np.zeros((h, n, 2, 3))
        J[..., 0, 0] = fx / z
        J[..., 0, 1] = skew / z
        J[..., 0, 2] = -(fx * P[..., 0] + skew * P[..., 1]) / z**2
        J[..., 1, 1] = fy / z
        J[..., 1, 2] = -fy * P[..., 1] / z**2
        J = J.reshape(h, 2 * n, 3)
        JtJ = np.einsum('hki,hkj->hij', J, J)
        Jtr = np.einsum('hki,hk->hi', J, r.reshape(h, 2 * n))
        JtJ[~active] = np.eye(3)
        step = np.linalg.solve(JtJ, -Jtr[..., None])[..., 0]
        candidate, P_c, z_c, r_c = cost(t + step)
        take = active & (candidate < best)  # a step is kept only if it lowers the error, as in the single
        t = np.where(take[:, None], t + step, t)
        best = np.where(take, candidate, best)
        P, z, r = (np.where(take[(...,) + (None,) * (a.ndim - 1)], a, b) for a, b in ((P_c, P), (z_c, z), (r_c, r)))
        active = take
    ok &= np.isfinite(best)
    return np.where(ok[:, None], t, np.nan), ok


def intrinsics_from_camera_info(
    k: ArrayLike,
    p: ArrayLike,
    width: int,
    height: int,
    use_rectified: bool = False,
    fallback_fov_deg: float = DEFAULT_FALLBACK_FOV_DEG,
) -> tuple[np.ndarray, str]:
    """Pick a usable K (3, 3) from CameraInfo arrays; returns (K, source).

    k: CameraInfo.k (9,), p: CameraInfo.p (12,). With ``use_rectified`` (images from image_rect)
    the left 3x3 of P is preferred, k is the next choice. A matrix is rejected when it has
    non-finite entries, fx or fy <= 0, or a principal point outside the image. If none is usable,
    ``fallback_intrinsics`` is returned with source 'fallback_fov'; otherwise source is 'camera_info'.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    candidates = []
    if use_rectified:
        p_arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if p_arr.size == 12:
            candidates.append(p_arr.reshape(3, 4)[:, :3])
    k_arr = np.asarray(k, dtype=np.float64).reshape(-1)
    if k_arr.size == 9:
        candidates.append(k_arr.reshape(3, 3))
    for K in candidates:
        if _plausible_intrinsics(K, width, height):
            K = K / K[2, 2]
            return K.copy(), 'camera_info'
    return fallback_intrinsics(width, height, fallback_fov_deg), 'fallback_fov'


def _plausible_intrinsics(K: np.ndarray, width: int, height: int) -> bool:
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] <= 0:
        return False
    if np.any(K[2, :2] != 0) or K[1, 0] != 0:
        return False
    cx, cy = K[0, 2] / K[2, 2], K[1, 2] / K[2, 2]
    return 0.0 <= cx <= width and 0.0 <= cy <= height


def fallback_intrinsics(width: int, height: int, fov_deg: float = DEFAULT_FALLBACK_FOV_DEG) -> np.ndarray:
    """Pinhole K with square pixels, the given horizontal FOV and the principal point at the centre."""
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f'fov_deg must be in (0, 180), got {fov_deg}')
    f = 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
