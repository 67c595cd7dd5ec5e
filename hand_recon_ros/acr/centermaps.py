"""Training targets: scale-adaptive Gaussian centre heat maps with collision-aware centre repulsion.

Kernel size (ACR supplement): ``k = k_min + delta_k * (d / (sqrt(2) * W_b))**2`` with k_min = 2,
delta_k = 7. Reading used here: ``d`` = diagonal of the hand's box in map pixels, ``W_b`` = map width,
so ``sqrt(2) * W_b`` is the map diagonal and ``d / (sqrt(2) W_b)`` is in [0, 1]: k runs from 2 (tiny
hand) to 9 (hand box as large as the map), matching the 2..9 range of the paper. ``k`` plays the role of
ROMP's Gaussian radius: the blob covers (2r+1)^2 pixels with r = floor(k), sigma = (2r+1)/6, and the
least distance of two centres is k_a + k_b + 1.

All coordinates are map pixels (x, y), origin at the centre of the top-left pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ['K_MIN', 'DELTA_K', 'COLLISION_FACTOR', 'center_heatmaps', 'draw_gaussian', 'kernel_size', 'repel_centers']

K_MIN = 2.0
DELTA_K = 7.0
COLLISION_FACTOR = 0.2


def kernel_size(box_wh: ArrayLike, map_size: int, k_min: float = K_MIN, delta_k: float = DELTA_K) -> np.ndarray:
    """k for boxes (..., 2) of (width, height) in map pixels; boxes larger than the map count as the map."""
    if map_size < 1:
        raise ValueError(f'map_size must be >= 1, got {map_size}')
    box = np.asarray(box_wh, dtype=np.float64)
    if box.shape[-1:] != (2,):
        raise ValueError(f'box_wh must have shape (..., 2), got {box.shape}')
    if np.any(box < 0):
        raise ValueError('box sizes must be non-negative')
    diagonal = np.hypot(box[..., 0], box[..., 1])
    ratio = np.minimum(diagonal / (math.sqrt(2.0) * map_size), 1.0)
    return k_min + delta_k * ratio**2


def draw_gaussian(heatmap: np.ndarray, center_xy: Sequence[float] | np.ndarray, k: float) -> np.ndarray:
    """Max-merge a Gaussian of radius floor(k) centred on the nearest pixel; that pixel becomes exactly 1."""
    radius = int(math.floor(k))
    sigma = (2 * radius + 1) / 6.0
    h, w = heatmap.shape
    cx, cy = int(round(float(center_xy[0]))), int(round(float(center_xy[1])))
    if not (0 <= cx < w and 0 <= cy < h):
        return heatmap
    y0, y1 = max(0, cy - radius), min(h, cy + radius + 1)
    x0, x1 = max(0, cx - radius), min(w, cx + radius + 1)
    ys = np.arange(y0, y1)[:, None] - cy
    xs = np.arange(x0, x1)[None, :] - cx
    blob = np.exp(-(xs**2 + ys**2) / (2.0 * sigma**2))
    np.maximum(heatmap[y0:y1, x0:x1], blob, out=heatmap[y0:y1, x0:x1])
    heatmap[cy, cx] = 1.0
    return heatmap


def repel_centers(centers_xy: ArrayLike, ks: ArrayLike, map_size: int, factor: float = COLLISION_FACTOR) -> np.ndarray:
    """Collision-aware centres: pairs closer than k_a + k_b + 1 are pushed apart along their axis.

    For each pair (a < b, in order) with distance d < least = k_a + k_b + 1:
    offset = factor * (least - d) / d * (c_b - c_a); c_a -= offset / 2; c_b += offset / 2 (ROMP's rule,
    in map pixels). Coincident centres are split along +x with |offset| = factor * least (the limit of
    the rule). Results are clipped to the map.
    """
    centers = np.array(centers_xy, dtype=np.float64).reshape(-1, 2)
    ks = np.asarray(ks, dtype=np.float64).reshape(-1)
    if ks.shape[0] != centers.shape[0]:
        raise ValueError(f'{centers.shape[0]} centres but {ks.shape[0]} kernel sizes')
    n = centers.shape[0]
    for a in range(n):
        for b in range(a + 1, n):
            delta = centers[b] - centers[a]
            dist = float(np.hypot(*delta))
            least = ks[a] + ks[b] + 1.0
            if dist >= least:
                continue
            if dist == 0.0:
                offset = np.array([factor * least, 0.0])
            else:
                offset = factor * (least - dist) / dist * delta
            centers[a] -= offset / 2.0
            centers[b] += offset / 2.0
    return np.clip(centers, 0.0, map_size - 1.0)


def center_heatmaps(
    centers_xy: ArrayLike,
    boxes_wh: ArrayLike,
    sides: ArrayLike,
    map_size: int,
    collision_aware: bool = True,
    factor: float = COLLISION_FACTOR,
) -> np.ndarray:
    """(2, map, map) float32 targets, channel 0 = left hands, 1 = right hands.

    Repulsion is applied across all hands of the image, both sides: a left and a right hand share the
    image, and the cross-hand prior is read at the other hand's centre, so their peaks must stay apart.
    """
    centers = np.asarray(centers_xy, dtype=np.float64).reshape(-1, 2)
    boxes = np.asarray(boxes_wh, dtype=np.float64).reshape(-1, 2)
    sides = np.asarray(sides, dtype=np.int64).reshape(-1)
    if not (centers.shape[0] == boxes.shape[0] == sides.shape[0]):
        raise ValueError(
            f'centers ({centers.shape[0]}), boxes ({boxes.shape[0]}) and sides ({sides.shape[0]}) '
            'must have the same length'
        )
    if np.any((sides != 0) & (sides != 1)):
        raise ValueError('sides must be 0 (left) or 1 (right)')
    ks = kernel_size(boxes, map_size) if len(boxes) else np.zeros(0)
    if collision_aware and len(centers) > 1:
        centers = repel_centers(centers, ks, map_size, factor)
    maps = np.zeros((2, map_size, map_size), dtype=np.float32)
    for center, k, side in zip(centers, ks, sides):
        draw_gaussian(maps[side], center, float(k))
    return maps
