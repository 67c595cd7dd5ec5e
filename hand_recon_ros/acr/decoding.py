"""Centre-map decoding: k x k NMS peaks, confidence threshold, parameter sampling, cross-hand prior.

Side index 0 = left, 1 = right (ACR's output order). Scores are ``sigmoid(raw centre logit)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

__all__ = [
    'LEFT',
    'RIGHT',
    'DecodeConfig',
    'Detections',
    'decode',
    'find_peaks',
    'interaction_coefficient',
    'nms_mask',
    'kernel_from_cam_scale',
]

LEFT, RIGHT = 0, 1
NUM_CAM = 3


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding options. Defaults follow the released ACR code (threshold 0.35, 5x5 NMS, top-1 per side).

    ``prior_gate``: ``'hard'`` = released gate (coefficient 1 within ``prior_radius`` map pixels, else 0;
    ``None`` = half the map width, i.e. 32 on a 64 map); ``'soft'`` = interaction field
    IF = gamma * (k_L + k_R + 1) with k from each hand's predicted camera scale, coefficient
    ``max(0, 1 - d / IF)``; ``'off'`` = never add the prior.

    ``side_separation`` (map pixels, top-1 decoding only): when the best left and best right peaks lie closer
    than this, they are usually ONE hand seen on both maps, and the other hand, if any, is a weaker peak that
    top-1 drops. The decoder then takes the pair of left and right peaks at least this far apart with the
    largest summed score (each above ``threshold``), marked ``side_assigned``; without such a pair it keeps
    the two tops as before. 0 = off (the released top-1 per side).
    """

    threshold: float = 0.35
    nms_kernel: int = 5
    max_per_side: int = 1
    min_distance: float = 4.0
    prior_gate: str = 'hard'
    prior_radius: float | None = None
    prior_gamma: float = 1.0
    hand_extent_m: float = 0.2
    side_separation: float = 0.0
    side_candidates: int = 4  # peaks per side searched for the pair

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f'threshold must be in [0, 1), got {self.threshold}')
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f'nms_kernel must be a positive odd integer, got {self.nms_kernel}')
        if self.max_per_side < 1:
            raise ValueError(f'max_per_side must be >= 1, got {self.max_per_side}')
        if self.min_distance < 0:
            raise ValueError(f'min_distance must be >= 0, got {self.min_distance}')
        if not (math.isfinite(self.side_separation) and self.side_separation >= 0):
            raise ValueError(f'side_separation must be a finite number >= 0, got {self.side_separation}')
        if self.side_candidates < 1:
            raise ValueError(f'side_candidates must be >= 1, got {self.side_candidates}')
        if self.prior_gate not in ('hard', 'soft', 'off'):
            raise ValueError(f"prior_gate must be 'hard', 'soft' or 'off', got {self.prior_gate!r}")


@dataclass
class Detections:
    """N detections as parallel tensors (row i is one hand)."""

    batch_index: torch.Tensor  # (N,) int64
    side: torch.Tensor  # (N,) int64, 0 left / 1 right
    score: torch.Tensor  # (N,) sigmoid confidence
    y: torch.Tensor  # (N,) int64 map row
    x: torch.Tensor  # (N,) int64 map column
    params: torch.Tensor | None = field(default=None)  # (N, 109) fused params (+ prior)
    prior_coefficient: torch.Tensor | None = field(default=None)  # (N,) weight the prior was added with
    side_assigned: torch.Tensor | None = field(default=None)  # (N,) bool: side set by the pair search

    def __len__(self) -> int:
        return int(self.batch_index.shape[0])

    def to_list(self) -> list[dict]:
        return [
            {
                'batch_index': int(self.batch_index[i]),
                'side': int(self.side[i]),
                'score': float(self.score[i]),
                'y': int(self.y[i]),
                'x': int(self.x[i]),
                'params': None if self.params is None else self.params[i],
                'prior_coefficient': None if self.prior_coefficient is None else float(self.prior_coefficient[i]),
                'side_assigned': False if self.side_assigned is None else bool(self.side_assigned[i]),
            }
            for i in range(len(self))
        ]


def _max_filter_cv2(maps: np.ndarray, kernel: int) -> np.ndarray:
    """(N, H, W) float32 k x k max filter, outside = -inf: what max_pool2d(stride 1, padding k//2) computes,
    ~25x faster on CPU (a max is exact, so the values are identical)."""
    element = np.ones((kernel, kernel), np.uint8)
    out = np.empty_like(maps)
    for i in range(maps.shape[0]):
        out[i] = cv2.dilate(maps[i], element, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
    return out


def nms_mask(center_logits: torch.Tensor, kernel: int = 5) -> torch.Tensor:
    """True where a pixel equals the max of its k x k neighbourhood (plateaus keep every pixel)."""
    # NaN: torch's max propagates it to the whole window, cv2's may not, so such maps take the torch path
    if (
        center_logits.device.type == 'cpu'
        and center_logits.dtype == torch.float32
        and center_logits.dim() == 4
        and center_logits.numel()
        and not bool(torch.isnan(center_logits).any())
    ):
        logits = center_logits.detach().contiguous()
        b, c, h, w = logits.shape
        pooled_np = _max_filter_cv2(logits.numpy().reshape(b * c, h, w), kernel)
        return logits == torch.from_numpy(pooled_np).reshape(b, c, h, w)
    pooled = nn.functional.max_pool2d(center_logits, kernel, stride=1, padding=kernel // 2)
    return center_logits == pooled


def _check_center_logits(center_logits: torch.Tensor) -> None:
    if not isinstance(center_logits, torch.Tensor) or center_logits.dim() != 4 or center_logits.shape[1] != 2:
        shape = tuple(center_logits.shape) if isinstance(center_logits, torch.Tensor) else type(center_logits)
        raise ValueError(f'center_logits must be a (B, 2, H, W) tensor [left, right], got {shape}')


def find_peaks(
    center_logits: torch.Tensor,
    threshold: float = 0.35,
    nms_kernel: int = 5,
    max_per_side: int = 1,
    min_distance: float = 4.0,
) -> Detections:
    """Peaks per (image, side), best first; ties go to the first pixel in raster order.

    With ``max_per_side > 1`` a peak closer than ``min_distance`` map pixels to an already kept peak of the
    same side is dropped (plateaus and near-duplicates that survive the NMS window).
    """
    _check_center_logits(center_logits)
    logits = center_logits.detach().float()
    b, sides, h, w = logits.shape
    scores = torch.sigmoid(logits)
    candidate = nms_mask(logits, nms_kernel) & (scores > threshold)
    # Only candidates can be kept: a stable descending sort of them alone gives the same order as sorting
    # the whole map (ties stay in raster order), and the Python loop then walks plain lists.
    scores_np = scores.reshape(b * sides, h * w).cpu().numpy()
    candidate_np = candidate.reshape(b * sides, h * w).cpu().numpy()
    rows: list[tuple[int, int, float, int, int]] = []
    for row in range(b * sides):
        idx = np.flatnonzero(candidate_np[row])
        if idx.size == 0:
            continue
        row_scores = scores_np[row, idx]
        order = np.argsort(-row_scores, kind='stable')
        kept: list[tuple[int, int]] = []
        for s, flat_index in zip(row_scores[order].tolist(), idx[order].tolist()):
            if len(kept) == max_per_side:
                break
            y, x = divmod(flat_index, w)
            if any(math.hypot(y - ky, x - kx) < min_distance for ky, kx in kept):
                continue
            kept.append((y, x))
            rows.append((row // sides, row % sides, s, y, x))
    if rows:
        bi, si, sc, ys, xs = zip(*rows)
    else:
        bi = si = sc = ys = xs = ()
    return Detections(
        batch_index=torch.tensor(bi, dtype=torch.long),
        side=torch.tensor(si, dtype=torch.long),
        score=torch.tensor(sc, dtype=torch.float32),
        y=torch.tensor(ys, dtype=torch.long),
        x=torch.tensor(xs, dtype=torch.long),
    )


def _separated_pairs(peaks: Detections, top: Detections, separation: float) -> Detections:
    """Top-1 detections per (image, side), except where an image's two tops lie closer than ``separation``:
    there the left/right pair of ``peaks`` (several per side, best first) at least that far apart with the
    largest summed score, when one exists."""
    rows: list[tuple[int, int, float, int, int, bool]] = []
    by_image: dict[int, list[list[int]]] = {}
    for i, (b, s) in enumerate(zip(peaks.batch_index.tolist(), peaks.side.tolist())):
        by_image.setdefault(b, [[], []])[s].append(i)
    ys, xs, scores = peaks.y.tolist(), peaks.x.tolist(), peaks.score.tolist()
    chosen: dict[int, tuple[int, int]] = {}
    for b, (left, right) in by_image.items():
        if not left or not right or math.hypot(ys[left[0]] - ys[right[0]], xs[left[0]] - xs[right[0]]) >= separation:
            continue
        best, best_sum = None, -1.0
        for i in left:
            for j in right:
                if math.hypot(ys[i] - ys[j], xs[i] - xs[j]) >= separation and scores[i] + scores[j] > best_sum:
                    best, best_sum = (i, j), scores[i] + scores[j]
        if best is not None:
            chosen[b] = best
    for i in range(len(top)):
        b = int(top.batch_index[i])
        if b not in chosen:
            rows.append((b, int(top.side[i]), float(top.score[i]), int(top.y[i]), int(top.x[i]), False))
    for b, pair in chosen.items():
        rows += [(b, peaks_side, scores[k], ys[k], xs[k], True) for peaks_side, k in zip((LEFT, RIGHT), pair)]
    rows.sort(key=lambda r: (r[0], r[1]))
    columns = list(zip(*rows)) if rows else [()] * 6
    return Detections(
        batch_index=torch.tensor(columns[0], dtype=torch.long),
        side=torch.tensor(columns[1], dtype=torch.long),
        score=torch.tensor(columns[2], dtype=torch.float32),
        y=torch.tensor(columns[3], dtype=torch.long),
        x=torch.tensor(columns[4], dtype=torch.long),
        side_assigned=torch.tensor(columns[5], dtype=torch.bool),
    )


def kernel_from_cam_scale(
    cam_scale: float, map_size: int, hand_extent_m: float = 0.2, k_min: float = 2.0, delta_k: float = 7.0
) -> float:
    """Gaussian kernel size k of a hand from its weak-perspective scale (for the soft interaction field).

    The box side is estimated as ``s * hand_extent_m`` in normalised [-1, 1] units (``* map/2`` in map
    pixels), and k uses the ACR formula of :mod:`centermaps` with a square box.
    """
    side_px = abs(cam_scale) * hand_extent_m * map_size / 2.0
    diag = math.sqrt(2.0) * side_px
    return k_min + delta_k * min(diag / (math.sqrt(2.0) * map_size), 1.0) ** 2


def interaction_coefficient(
    distance: float,
    gate: str = 'hard',
    radius: float = 32.0,
    k_left: float = 0.0,
    k_right: float = 0.0,
    gamma: float = 1.0,
) -> float:
    """Weight of the cross-hand prior for two centres ``distance`` map pixels apart (0 outside the field)."""
    if gate == 'off':
        return 0.0
    if gate == 'hard':
        return 1.0 if distance <= radius else 0.0
    if gate == 'soft':
        field_size = gamma * (k_left + k_right + 1.0)
        return max(0.0, 1.0 - distance / field_size)
    raise ValueError(f"gate must be 'hard', 'soft' or 'off', got {gate!r}")


def _sample(tensor: torch.Tensor, b: int, side: int, y: int, x: int) -> torch.Tensor:
    """One hand's vector from a per-pixel map (B, 2, C, H, W) or a per-image vector (B, 2, C)."""
    return tensor[b, side, :, y, x] if tensor.dim() == 5 else tensor[b, side]


def decode(outputs: dict[str, torch.Tensor], config: DecodeConfig | None = None) -> Detections:
    """Peaks + 109 parameters per hand, with the other hand's prior added to params[3:] (inverse query).

    ``outputs``: the network's dict with ``center_maps`` (B, 2, h, w), ``params`` (B, 2, 109[, h, w]) and
    ``prior`` (B, 2, 106[, h, w]). For a map, the prior of hand A is read at the peak of the nearest hand
    of the other side (B); for a vector it was already attended with B's centre map inside the network.
    """
    config = config or DecodeConfig()
    for key in ('center_maps', 'params', 'prior'):
        if key not in outputs:
            raise ValueError(f'outputs is missing {key!r}; got keys {sorted(outputs)}')
    center = outputs['center_maps']
    dets = find_peaks(center, config.threshold, config.nms_kernel, config.max_per_side, config.min_distance)
    if config.side_separation > 0 and config.max_per_side == 1:
        peaks = find_peaks(center, config.threshold, config.nms_kernel, config.side_candidates, config.min_distance)
        dets = _separated_pairs(peaks, dets, config.side_separation)
    else:
        dets.side_assigned = torch.zeros(len(dets), dtype=torch.bool)
    params_src = outputs['params'].detach()
    prior_src = outputs['prior'].detach()
    map_size = center.shape[-1]
    radius = config.prior_radius if config.prior_radius is not None else map_size / 2.0
    n = len(dets)
    params = torch.zeros(n, params_src.shape[2], dtype=params_src.dtype)
    coeffs = torch.zeros(n, dtype=params_src.dtype)
    batch_index, sides, ys, xs = (t.tolist() for t in (dets.batch_index, dets.side, dets.y, dets.x))
    for i in range(n):
        b, side, y, x = batch_index[i], sides[i], ys[i], xs[i]
        own = _sample(params_src, b, side, y, x).clone()
        others = [j for j in range(n) if batch_index[j] == b and sides[j] != side]
        if others:
            dist = [math.hypot(y - ys[j], x - xs[j]) for j in others]
            j = others[min(range(len(others)), key=dist.__getitem__)]
            d = min(dist)
            oy, ox = ys[j], xs[j]
            k_own = k_other = 0.0
            if config.prior_gate == 'soft':
                other_scale = float(_sample(params_src, b, 1 - side, oy, ox)[0])
                k_own = kernel_from_cam_scale(float(own[0]), map_size, config.hand_extent_m)
                k_other = kernel_from_cam_scale(other_scale, map_size, config.hand_extent_m)
            c = interaction_coefficient(d, config.prior_gate, radius, k_own, k_other, config.prior_gamma)
            if c > 0.0:
                # inverse query: this hand's prior map read at the *other* hand's centre
                own[NUM_CAM:] += c * _sample(prior_src, b, side, oy, ox)
            coeffs[i] = c
        params[i] = own
    dets.params = params
    dets.prior_coefficient = coeffs
    return dets
