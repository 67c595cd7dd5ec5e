"""Alignment of point sets: similarity Procrustes, scale+translation, per-axis standardisation.

Every function is batched over leading dimensions ((..., N, D) point sets, D = 3 usually) and takes
numpy arrays or torch tensors (the result has the input's type; torch keeps gradients).
``weights`` (..., N) are per-point non-negative weights (a 0/1 validity mask works). All functions align
``source`` onto ``target``; degenerate sources (all points equal) get scale 0 instead of NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ['similarity_procrustes', 'procrustes_align', 'scale_translation_align', 'per_axis_align']

# numpy arrays or torch tensors; the result has the type of the inputs (torch if either is torch)
Points = Union[np.ndarray, 'torch.Tensor']


def _is_torch(x: object) -> bool:
    return type(x).__module__.startswith('torch')


# The private helpers below dispatch on numpy vs torch at run time, so their arguments are typed Any.
def _prepare(source: Any, target: Any, weights: Any) -> tuple[Any, Any, Any]:
    w: Any
    if _is_torch(source) or _is_torch(target):
        import torch

        ref = source if _is_torch(source) else target
        dtype = ref.dtype if ref.is_floating_point() else torch.float64
        source = torch.as_tensor(source, dtype=dtype, device=ref.device)
        target = torch.as_tensor(target, dtype=dtype, device=ref.device)
        w = (
            torch.ones(source.shape[:-1], dtype=dtype, device=ref.device)
            if weights is None
            else torch.as_tensor(weights, dtype=dtype, device=ref.device)
        )
    else:
        source = np.asarray(source, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        w = np.ones(source.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    if source.shape != target.shape or source.ndim < 2:
        raise ValueError(
            f'source and target must both be (..., N, D), got {tuple(source.shape)} and ' f'{tuple(target.shape)}'
        )
    if tuple(w.shape) != tuple(source.shape[:-1]):
        raise ValueError(f'weights must have shape {tuple(source.shape[:-1])}, got {tuple(w.shape)}')
    return source, target, w


def _centre(source: Any, target: Any, w: Any) -> tuple[Any, Any, Any, Any]:
    wsum = w.sum(-1)[..., None, None]
    if _is_torch(source):
        wsum = wsum.clamp_min(1e-300 if wsum.dtype.itemsize == 8 else 1e-30)
    else:
        wsum = np.maximum(wsum, 1e-300)
    wn = w[..., None] / wsum
    mu_s = (wn * source).sum(-2)[..., None, :]
    mu_t = (wn * target).sum(-2)[..., None, :]
    return source - mu_s, target - mu_t, mu_s, mu_t


def _safe_div(a: Any, b: Any) -> Any:
    if _is_torch(a):
        import torch

        return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def _similarity_torch(
    xc: torch.Tensor, yc: torch.Tensor, wx: torch.Tensor, mu_x: torch.Tensor, mu_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    M = yc.transpose(-1, -2) @ wx
    U, S, Vh = torch.linalg.svd(M)
    sign = torch.sign(torch.linalg.det(U @ Vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.ones_like(S)
    d = torch.cat([d[..., :-1], sign[..., None]], dim=-1)
    R = U @ torch.diag_embed(d) @ Vh
    var_x = (wx * xc).sum((-1, -2))
    s = _safe_div((S * d).sum(-1), var_x)
    t = mu_y[..., 0, :] - s[..., None] * (R @ mu_x[..., 0, :, None])[..., 0]
    return s, R, t


def similarity_procrustes(
    source: Points, target: Points, weights: Points | None = None
) -> tuple[Points, Points, Points]:
    """(s, R, t) minimising sum_i w_i |s R x_i + t - y_i|^2, with det(R) = +1 (reflection fixed).

    Shapes: s (...,), R (..., D, D), t (..., D). Apply as ``s * x @ R^T + t``.
    """
    x, y, w = _prepare(source, target, weights)
    xc, yc, mu_x, mu_y = _centre(x, y, w)
    wx = xc * w[..., None]
    if _is_torch(x):
        return _similarity_torch(xc, yc, wx, mu_x, mu_y)
    M = np.swapaxes(yc, -1, -2) @ wx
    U, S, Vh = np.linalg.svd(M)
    sign = np.sign(np.linalg.det(U @ Vh))
    sign = np.where(sign == 0, 1.0, sign)
    d = np.ones_like(S)
    d[..., -1] = sign
    R = (U * d[..., None, :]) @ Vh
    var_x = (wx * xc).sum((-1, -2))
    s = _safe_div((S * d).sum(-1), var_x)
    t = mu_y[..., 0, :] - s[..., None] * (R @ mu_x[..., 0, :, None])[..., 0]
    return s, R, t


def procrustes_align(source: Points, target: Points, weights: Points | None = None) -> Points:
    """``source`` after the best similarity transform onto ``target`` (for PA-MPJPE / PA-MPVPE)."""
    s, R, t = similarity_procrustes(source, target, weights)
    x, _, _ = _prepare(source, target, weights)
    return (
        s[..., None, None] * (x @ R.swapaxes(-1, -2) if not _is_torch(x) else x @ R.transpose(-1, -2)) + t[..., None, :]
    )


def scale_translation_align(source: Points, target: Points, weights: Points | None = None) -> Points:
    """Isotropic scale + translation (no rotation) least-squares alignment of source onto target."""
    x, y, w = _prepare(source, target, weights)
    xc, yc, _, mu_y = _centre(x, y, w)
    wx = xc * w[..., None]
    s = _safe_div((wx * yc).sum((-1, -2)), (wx * xc).sum((-1, -2)))
    return s[..., None, None] * xc + mu_y


def per_axis_align(source: Points, target: Points, weights: Points | None = None) -> Points:
    """IHMR's I-MPJPE alignment: standardise each axis of source, then give it target's mean and std.

    An anisotropic scale + translation, no rotation; an axis without spread in source gets scale 0.
    """
    x, y, w = _prepare(source, target, weights)
    xc, yc, _, mu_y = _centre(x, y, w)
    wsum = w.sum(-1)[..., None]
    wsum = wsum.clamp_min(1e-300) if _is_torch(x) else np.maximum(wsum, 1e-300)
    wv = w[..., None]
    std_x = ((wv * xc * xc).sum(-2) / wsum) ** 0.5
    std_y = ((wv * yc * yc).sum(-2) / wsum) ** 0.5
    return xc * _safe_div(std_y, std_x)[..., None, :] + mu_y
