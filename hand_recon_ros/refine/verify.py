"""Verification of refinement candidates against the joint head's pseudo ground truth.

Joint error: mean per-joint Euclidean distance (metres) over both hands' 21 joints, in the RIGHT
wrist's frame when the joint head gives the wrist-to-wrist vector (then the relative placement of the
hands counts, as in IHMR), else each hand relative to its own wrist. (IHMR uses the mean squared
error; the mean distance ranks large single-joint outliers less harshly and reads as an MPJPE.)

MLP rule: a candidate is accepted iff its joint error AND its collision error are both strictly lower
than the current ones; a NaN anywhere rejects. OPT rule: see :func:`select_snapshots`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, cast

import numpy as np
import torch
from numpy.typing import ArrayLike

__all__ = ['check_joint_head_output', 'joint_errors', 'accept_candidates', 'select_snapshots']


def check_joint_head_output(head_out: dict[str, Any], batch: int | None = None) -> dict[str, torch.Tensor | None]:
    """Normalise a JointHead output to batched tensors: joints_3d (B,2,21,3), relative_translation (B,3)
    or None, joints_2d (B,2,21,2) or None. Unbatched inputs (2,21,3) are accepted for one frame."""
    if not isinstance(head_out, dict) or 'joints_3d' not in head_out:
        raise TypeError("joint_head_out must be a dict with at least 'joints_3d' (B, 2, 21, 3)")
    out: dict[str, torch.Tensor | None] = {}
    for key, tail in (('joints_3d', (2, 21, 3)), ('joints_2d', (2, 21, 2)), ('relative_translation', (3,))):
        value = head_out.get(key)
        if value is None:
            out[key] = None
            continue
        value = torch.as_tensor(value, dtype=torch.float32)
        if value.dim() == len(tail):
            value = value[None]
        if tuple(value.shape[1:]) != tail:
            raise ValueError(f'{key} must have shape (B, {", ".join(map(str, tail))}), got {tuple(value.shape)}')
        if batch is not None and value.shape[0] != batch:
            raise ValueError(f'{key} has batch {value.shape[0]}, the state has {batch}')
        out[key] = value
    return out


def joint_errors(
    joints_left: torch.Tensor,
    joints_right: torch.Tensor,
    head: Mapping[str, torch.Tensor | None],
    squared: bool = False,
) -> torch.Tensor:
    """(B,) mean per-joint distance (metres) of the state's joints to the joint head's (differentiable).

    ``joints_*``: (B, 21, 3) camera frame. ``head``: output of :func:`check_joint_head_output`.
    ``squared``: mean squared distance instead (smoother objective for the optimiser).
    """
    # check_joint_head_output always fills joints_3d (it is the required key)
    target = cast(torch.Tensor, head['joints_3d']).to(joints_left.device, joints_left.dtype)
    target_left, target_right = target[:, 0], target[:, 1]
    rel = head.get('relative_translation')
    if rel is not None:
        origin = joints_right[:, :1]
        target_left = target_left + rel.to(target.device, target.dtype)[:, None]
        pred_left = joints_left - origin
    else:
        pred_left = joints_left - joints_left[:, :1]
        target_left = target_left - target_left[:, :1]
    pred_right = joints_right - joints_right[:, :1]
    target_right = target_right - target_right[:, :1]
    diff = torch.cat([pred_left - target_left, pred_right - target_right], dim=1)
    sq = (diff * diff).sum(-1)
    return sq.mean(-1) if squared else sq.clamp_min(1e-30).sqrt().mean(-1)


def _as_1d(x: ArrayLike | torch.Tensor, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    return a.reshape(-1) if a.ndim <= 1 else _bad(name, a.shape)


def _bad(name: str, shape: tuple[int, ...]) -> NoReturn:
    raise ValueError(f'{name} must be a scalar or a 1-D array over the batch, got shape {shape}')


def accept_candidates(
    prev_joint: ArrayLike | torch.Tensor,
    prev_collision: ArrayLike | torch.Tensor,
    cand_joint: ArrayLike | torch.Tensor,
    cand_collision: ArrayLike | torch.Tensor,
) -> np.ndarray:
    """(B,) bool: True only where the candidate lowers BOTH errors strictly (NaN compares False).

    Consequence of the strict rule: a pair without any penetration is never changed by the MLP stages,
    which is intended: the refinement exists to remove collisions, not to re-fit free hands.
    """
    arrays = [
        _as_1d(x, n)
        for x, n in (
            (prev_joint, 'prev_joint'),
            (prev_collision, 'prev_collision'),
            (cand_joint, 'cand_joint'),
            (cand_collision, 'cand_collision'),
        )
    ]
    size = max(a.size for a in arrays)
    if any(a.size not in (1, size) for a in arrays):
        raise ValueError(f'error arrays have incompatible sizes {[a.size for a in arrays]}')
    pj, pc, cj, cc = (np.broadcast_to(a, (size,)) for a in arrays)
    with np.errstate(invalid='ignore'):
        return (cj < pj) & (cc < pc)


def select_snapshots(
    joint_history: ArrayLike, collision_history: ArrayLike, joint_tolerance: float = 0.0, collision_drop: float = 0.1
) -> np.ndarray:
    """OPT rule (method-acr-ihmr.md §3.4): index (B,) of the snapshot each sample keeps.

    Histories are (S, B) with snapshot 0 = the stage's start. A snapshot is admissible when its joint
    error is <= start x (1 + joint_tolerance) and its collision <= start x (1 - collision_drop); the
    start is always admissible; among the admissible ones the lowest joint error wins (ties: earliest).
    IHMR uses joint_tolerance 0.001 and collision_drop 0.099; the default 0 tolerance here means a
    stage can never raise the joint error.
    """
    if joint_tolerance < 0 or not 0 <= collision_drop < 1:
        raise ValueError(
            f'need joint_tolerance >= 0 and 0 <= collision_drop < 1, got {joint_tolerance}, ' f'{collision_drop}'
        )
    j = np.asarray(joint_history, dtype=np.float64)
    c = np.asarray(collision_history, dtype=np.float64)
    if j.ndim != 2 or j.shape != c.shape or j.shape[0] < 1:
        raise ValueError(f'histories must both be (S, B) with S >= 1, got {j.shape} and {c.shape}')
    with np.errstate(invalid='ignore'):
        ok = (j <= j[:1] * (1.0 + joint_tolerance)) & (c <= c[:1] * (1.0 - collision_drop))
    ok &= np.isfinite(j) & np.isfinite(c)
    ok[0] = True
    return np.where(ok, np.where(np.isfinite(j), j, np.inf), np.inf).argmin(axis=0)
