"""Synthetic hands with known parameters and the error measures used to check the keypoint fit
(test/test_hand_fit.py, benchmarks/bench_fit.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike

from ..geometry import rotations
from .fit import _kinematics

if TYPE_CHECKING:
    from .model import HandModel

DEFAULT_K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) rotations uniform over SO(3) (normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return rotations.quaternion_to_matrix(q)


def sample_hands(
    hand_model: HandModel,
    side: str,
    n: int,
    rng: np.random.Generator,
    depth: tuple[float, float] = (0.3, 0.8),
    K: np.ndarray = DEFAULT_K,
    image_size: tuple[int, int] = (640, 480),
    betas_std: float = 0.5,
    bank_share: float = 0.3,
) -> dict[str, np.ndarray]:
    """n hands with plausible poses: pose-PCA coefficients drawn like the synthetic-data generator (Gaussian with
    the bank's spread, or a bank pose), clipped to the bank's range (= within the fit's joint limits); betas
    N(0, betas_std^2) clipped to +-2; uniform random global rotation; the wrist at a depth in ``depth`` metres
    on a ray through the central 60 % of the image. -> dict of numpy arrays: global_orient, hand_pose (model
    convention), full_pose (45), betas, transl, root, joints (camera frame), keypoints_2d (pixels)."""
    kin = _kinematics(hand_model, side)
    mean, std = kin.bank_mean.numpy(), kin.bank_std.numpy()
    lo, hi = kin.bank_lo.numpy(), kin.bank_hi.numpy()
    coeffs = mean + rng.normal(size=(n, len(mean))) * std
    bank = rng.uniform(size=n) < bank_share
    if bank.any() and kin.bank is not None:
        # a bank pose: the extremes the Gaussian rarely reaches (fists, wide spreads)
        picks = kin.bank.numpy()[rng.integers(len(kin.bank), size=int(bank.sum()))]
        coeffs[bank] = mean + (picks - mean) * rng.uniform(0.6, 1.1, (len(picks), 1))
    coeffs = np.clip(coeffs, lo, hi)
    betas = np.clip(rng.normal(0.0, betas_std, (n, 10)), -2.0, 2.0)
    R = random_rotations(rng, n)
    w, h = image_size
    uv = np.stack([rng.uniform(0.2 * w, 0.8 * w, n), rng.uniform(0.2 * h, 0.8 * h, n)], 1)
    z = rng.uniform(depth[0], depth[1], n)
    rays = np.concatenate([uv, np.ones((n, 1))], 1) @ np.linalg.inv(K).T
    root = rays * z[:, None]
    c = torch.as_tensor(coeffs)
    full_pose = kin.finger_pose(c)
    rel = kin.joints_rel(torch.as_tensor(R), full_pose, torch.as_tensor(betas)).numpy()
    joints = rel + root[:, None]
    proj = joints @ K.T
    kp = proj[..., :2] / proj[..., 2:]
    hand_pose = coeffs if kin.use_pca else (full_pose - kin.model_mean).numpy()
    transl = root - kin.shaped_root(torch.as_tensor(betas)).numpy()
    return dict(
        global_orient=rotations.matrix_to_axis_angle(R),
        rotation=R,
        hand_pose=hand_pose,
        full_pose=full_pose.numpy(),
        betas=betas,
        transl=transl,
        root=root,
        joints=joints,
        joints_rel=rel,
        keypoints_2d=kp,
        K=np.asarray(K, np.float64),
    )


def joint_error_mm(pred: ArrayLike, gt: ArrayLike) -> np.ndarray:
    """(N,) mean per-joint distance in mm after moving both wrists to the origin (root-relative MPJPE)."""
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    return 1000.0 * np.linalg.norm((p - p[:, :1]) - (g - g[:, :1]), axis=-1).mean(1)


def pose_error_deg(pred_full_pose: ArrayLike, gt_full_pose: ArrayLike) -> np.ndarray:
    """(N,) mean geodesic angle (degrees) between the 15 finger-joint rotations of two 45-D poses."""
    a = rotations.axis_angle_to_matrix(np.asarray(pred_full_pose, np.float64).reshape(-1, 15, 3))
    b = rotations.axis_angle_to_matrix(np.asarray(gt_full_pose, np.float64).reshape(-1, 15, 3))
    rel = np.einsum('njab,njac->njbc', a, b)
    cos = np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos)).mean(1)


def rotation_error_deg(pred_orient: ArrayLike, gt_orient: ArrayLike) -> np.ndarray:
    """(N,) geodesic angle (degrees) between two global orientations (axis-angle)."""
    a = rotations.axis_angle_to_matrix(np.asarray(pred_orient, np.float64))
    b = rotations.axis_angle_to_matrix(np.asarray(gt_orient, np.float64))
    cos = np.clip((np.trace(np.einsum('nab,nac->nbc', a, b), axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos))
