"""Evaluation metrics for two-hand reconstruction (numpy; torch tensors are accepted).

Inputs are in metres, every metric returns millimetres. Point sets are (..., N, 3); per-sample
metrics return an array over the leading dimensions (a float for a single sample). A sample whose
points are all invalid gives NaN, which ``summarize`` skips.

Protocols (method-acr-ihmr.md §4):
  * IntagHand / ACR: ``root=ROOT_MIDDLE_MCP, scale_bone=(0, 9)`` (``INTAGHAND_PROTOCOL``);
  * IHMR: ``root=ROOT_WRIST``, no scale (``IHMR_PROTOCOL``); I-MPJPE with per-axis alignment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Union, cast

import numpy as np
from numpy.typing import ArrayLike

from hand_recon_ros.conventions import ROOT_MIDDLE_MCP, ROOT_WRIST
from hand_recon_ros.geometry.procrustes import per_axis_align, procrustes_align, scale_translation_align

__all__ = [
    'mpjpe',
    'mpvpe',
    'pa_mpjpe',
    'pa_mpvpe',
    'i_mpjpe',
    'mrrpe',
    'penetration_from_depths',
    'summarize',
    'INTAGHAND_PROTOCOL',
    'IHMR_PROTOCOL',
    'I_MPJPE_ALIGNMENTS',
]

INTAGHAND_PROTOCOL = {'root': ROOT_MIDDLE_MCP, 'scale_bone': (ROOT_WRIST, ROOT_MIDDLE_MCP)}
IHMR_PROTOCOL = {'root': ROOT_WRIST, 'scale_bone': None}
I_MPJPE_ALIGNMENTS = ('per_axis', 'isotropic')
_M_TO_MM = 1000.0
# a float for a single sample, an array over the leading dimensions otherwise
Metric = Union[float, np.ndarray]


def _host(x: Any) -> Any:
    return x.detach().cpu().numpy() if type(x).__module__.startswith('torch') else x


def _np(x: Any, name: str) -> np.ndarray:
    if type(x).__module__.startswith('torch'):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] != 3:
        raise ValueError(f'{name} must have shape (..., N, 3), got {arr.shape}')
    return arr


def _check_pair(pred: Any, gt: Any, pred_name: str = 'pred', gt_name: str = 'gt') -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _np(pred, pred_name), _np(gt, gt_name)
    if pred.shape != gt.shape:
        raise ValueError(f'{pred_name} {pred.shape} and {gt_name} {gt.shape} must have the same shape')
    return pred, gt


def _valid(valid: Any, shape: tuple[int, ...]) -> np.ndarray:
    if valid is None:
        return np.ones(shape)
    v = np.asarray(
        valid.detach().cpu().numpy() if type(valid).__module__.startswith('torch') else valid, dtype=np.float64
    )
    if v.shape != shape:
        raise ValueError(f'valid must have shape {shape}, got {v.shape}')
    return v


def _zero_invalid(points: np.ndarray, v: np.ndarray | None) -> np.ndarray:
    """Invalid points may hold NaN; zero them so they cannot poison a weighted alignment."""
    return points if v is None else np.where(v[..., None] > 0, points, 0.0)


def _mean_error_mm(pred: np.ndarray, gt: np.ndarray, valid: Any = None) -> Metric:
    err = np.linalg.norm(pred - gt, axis=-1)
    v = _valid(valid, err.shape)
    count = v.sum(-1)
    total = (np.where(v > 0, err, 0.0) * v).sum(-1)
    out = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0) * _M_TO_MM
    return out[()] if out.ndim == 0 else out


def _align_to_root(
    pred_pts: np.ndarray,
    gt_pts: np.ndarray,
    pred_joints: np.ndarray,
    gt_joints: np.ndarray,
    root: int | None,
    scale_bone: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract each side's root joint; optionally rescale pred by the GT/pred length of one bone."""
    if root is not None:
        pred_pts = pred_pts - pred_joints[..., root : root + 1, :]
        gt_pts = gt_pts - gt_joints[..., root : root + 1, :]
    if scale_bone is not None:
        a, b = scale_bone
        len_pred = np.linalg.norm(pred_joints[..., b, :] - pred_joints[..., a, :], axis=-1)
        len_gt = np.linalg.norm(gt_joints[..., b, :] - gt_joints[..., a, :], axis=-1)
        ratio = np.divide(len_gt, len_pred, out=np.full(len_gt.shape, np.nan), where=len_pred > 0)
        pred_pts = pred_pts * ratio[..., None, None]
    return pred_pts, gt_pts


def mpjpe(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    root: int = ROOT_WRIST,
    scale_bone: tuple[int, int] | None = None,
    valid: ArrayLike | None = None,
) -> Metric:
    """Mean per-joint position error (mm) after root alignment (``root=None``: none).

    ``scale_bone=(i, j)`` rescales the prediction so that its i-j bone has the GT length (IntagHand
    uses (0, 9) with root 9). ``valid`` (..., N) masks joints out.
    """
    pred, gt = _check_pair(pred, gt)
    pred_a, gt_a = _align_to_root(pred, gt, pred, gt, root, scale_bone)
    return _mean_error_mm(pred_a, gt_a, valid)


def mpvpe(
    pred_verts: ArrayLike,
    gt_verts: ArrayLike,
    pred_joints: ArrayLike | None = None,
    gt_joints: ArrayLike | None = None,
    *,
    root: int = ROOT_WRIST,
    scale_bone: tuple[int, int] | None = None,
) -> Metric:
    """Mean per-vertex position error (mm); root and bone scale come from the joints (as in MPJPE)."""
    pred_verts, gt_verts = _check_pair(pred_verts, gt_verts, 'pred_verts', 'gt_verts')
    if root is not None or scale_bone is not None:
        if pred_joints is None or gt_joints is None:
            raise ValueError(
                'mpvpe needs pred_joints and gt_joints for root alignment / bone scale '
                '(pass root=None, scale_bone=None for raw vertex errors)'
            )
        pred_joints, gt_joints = _check_pair(pred_joints, gt_joints, 'pred_joints', 'gt_joints')
    pred_a, gt_a = _align_to_root(pred_verts, gt_verts, pred_joints, gt_joints, root, scale_bone)
    return _mean_error_mm(pred_a, gt_a)


def pa_mpjpe(pred: ArrayLike, gt: ArrayLike, valid: ArrayLike | None = None) -> Metric:
    """MPJPE after similarity Procrustes alignment (rotation, isotropic scale, translation), mm."""
    pred, gt = _check_pair(pred, gt)
    v = None if valid is None else _valid(valid, pred.shape[:-1])
    pred, gt = _zero_invalid(pred, v), _zero_invalid(gt, v)
    return _mean_error_mm(cast(np.ndarray, procrustes_align(pred, gt, v)), gt, v)  # numpy in, numpy out


def pa_mpvpe(pred_verts: ArrayLike, gt_verts: ArrayLike) -> Metric:
    """MPVPE after similarity Procrustes alignment of the vertices, mm."""
    pred_verts, gt_verts = _check_pair(pred_verts, gt_verts, 'pred_verts', 'gt_verts')
    return _mean_error_mm(cast(np.ndarray, procrustes_align(pred_verts, gt_verts)), gt_verts)


def i_mpjpe(
    pred_left: ArrayLike,
    pred_right: ArrayLike,
    gt_left: ArrayLike,
    gt_right: ArrayLike,
    *,
    alignment: str = 'per_axis',
    valid_left: ArrayLike | None = None,
    valid_right: ArrayLike | None = None,
) -> Metric:
    """Interacting-hand MPJPE (mm): both hands' joints aligned JOINTLY, no rotation, so the error
    includes the relative placement of the two hands.

    ``alignment='per_axis'`` (default) is IHMR's ``inter_mpjpe_3d``: each axis of the prediction is
    standardised and given the GT mean and std. It is the default because I-MPJPE is IHMR's metric and
    only this variant reproduces its numbers. ``'isotropic'`` fits one scale + translation by least
    squares: frame independent and it cannot hide depth-scale errors by stretching one axis, so prefer
    it for new comparisons.
    """
    if alignment not in I_MPJPE_ALIGNMENTS:
        raise ValueError(f'alignment must be one of {I_MPJPE_ALIGNMENTS}, got {alignment!r}')
    pl, gl = _check_pair(pred_left, gt_left, 'pred_left', 'gt_left')
    pr, gr = _check_pair(pred_right, gt_right, 'pred_right', 'gt_right')
    pred = np.concatenate([pl, pr], axis=-2)
    gt = np.concatenate([gl, gr], axis=-2)
    v = None
    if valid_left is not None or valid_right is not None:
        v = np.concatenate([_valid(valid_left, pl.shape[:-1]), _valid(valid_right, pr.shape[:-1])], axis=-1)
    align = per_axis_align if alignment == 'per_axis' else scale_translation_align
    pred, gt = _zero_invalid(pred, v), _zero_invalid(gt, v)
    return _mean_error_mm(cast(np.ndarray, align(pred, gt, v)), gt, v)


def mrrpe(
    pred_left_root: ArrayLike, pred_right_root: ArrayLike, gt_left_root: ArrayLike, gt_right_root: ArrayLike
) -> Metric:
    """Mean relative-root position error (mm): |(r - l)_pred - (r - l)_gt| for root positions (..., 3)."""
    arrays = []
    for name, x in (
        ('pred_left_root', pred_left_root),
        ('pred_right_root', pred_right_root),
        ('gt_left_root', gt_left_root),
        ('gt_right_root', gt_right_root),
    ):
        a = np.asarray(_host(x), dtype=np.float64)
        if a.shape[-1:] != (3,):
            raise ValueError(f'{name} must have shape (..., 3), got {a.shape}')
        arrays.append(a)
    pl, pr, gl, gr = arrays
    out = np.linalg.norm((pr - pl) - (gr - gl), axis=-1) * _M_TO_MM
    return out[()] if out.ndim == 0 else out


def penetration_from_depths(depth_a: ArrayLike, depth_b: ArrayLike) -> dict[str, float]:
    """IHMR's AVE-P / MAX-P (mm) from per-vertex penetration depths (metres, 0 = not inside).

    AVE-P = mean over all vertices of both hands, zeros included; MAX-P = the largest depth.
    """
    d = np.concatenate(
        [np.asarray(depth_a, dtype=np.float64).reshape(-1), np.asarray(depth_b, dtype=np.float64).reshape(-1)]
    )
    if d.size == 0 or not np.isfinite(d).all() or (d < 0).any():
        raise ValueError('penetration depths must be a non-empty set of finite values >= 0')
    return {
        'ave_p_mm': float(d.mean() * _M_TO_MM),
        'max_p_mm': float(d.max() * _M_TO_MM),
        'n_inside': int((d > 0).sum()),
    }


def summarize(samples: Iterable[Mapping[str, Any]], counts: bool = False) -> dict[str, Any]:
    """Average per-sample metric dicts into one row of a table.

    Each key's mean is taken over the samples where it is a finite number (a missing hand can be None
    or NaN; a key with no number at all gives NaN). Keys holding only strings/bools (labels) are
    dropped. The result holds 'num_samples' and, with ``counts``, 'n_<key>' = samples used per key.
    """
    samples = list(samples)
    keys: list[str] = []
    for s in samples:
        if not isinstance(s, dict):
            raise TypeError(f'summarize expects dicts, got {type(s).__name__}')
        keys.extend(k for k in s if k not in keys)
    out: dict[str, Any] = {'num_samples': len(samples)}
    for k in keys:
        present = [s[k] for s in samples if s.get(k) is not None]
        if present and all(isinstance(v, (str, bool)) for v in present):
            continue
        values: list[float] = []
        for v in present:
            if isinstance(v, (str, bool)):
                continue
            v = float(np.asarray(v))
            if math.isfinite(v):
                values.append(v)
        out[k] = float(np.mean(values)) if values else float('nan')
        if counts:
            out[f'n_{k}'] = len(values)
    return out
