"""The depth image an RGB-D camera registered to the colour camera would give of a synthetic sample.

The generator's own depth buffer is internal (supersampled, hands only); this renders the sample's valid hands with
its K at the colour image's size, puts a wall behind them, and optionally adds what real depth cameras do: pixels
without a reading, noise that grows with distance, and a registration error between depth and colour.
"""

from __future__ import annotations

import numpy as np

from hand_recon_ros.conventions import SIDES

from .raster import rasterize

__all__ = ['sample_depth_image']


def sample_depth_image(
    raw: dict,
    hand_model,
    background_m: float = 1.5,
    holes: float = 0.0,
    relative_noise: float = 0.0,
    shift_px: tuple[int, int] = (0, 0),
    seed: int = 0,
) -> np.ndarray:
    """(H, W) float32 metres for a generator sample (``SynthDataset.raw``): its hands in front of a wall at
    ``background_m``; ``holes``: share of pixels with no reading (0); ``relative_noise``: Gaussian noise of this
    share of each depth; ``shift_px``: (x, y) pixels the depth image is off the colour image (registration)."""
    height, width = raw['image'].shape[:2]
    vertices, faces, offset = [], [], 0
    for i, side in enumerate(SIDES):
        if raw['valid'][i]:
            vertices.append(np.asarray(raw['vertices'][i], np.float64))
            faces.append(np.asarray(hand_model.faces(side), np.int64) + offset)
            offset += len(raw['vertices'][i])
    depth = np.full((height, width), np.inf, np.float32)
    if vertices:
        K = np.asarray(raw['K'], np.float64)
        depth = rasterize(np.concatenate(vertices), np.concatenate(faces), K, height, width).depth_image()
    depth[~np.isfinite(depth)] = background_m
    rng = np.random.default_rng(seed)
    if relative_noise > 0:
        depth = depth * (1.0 + relative_noise * rng.standard_normal(depth.shape)).astype(np.float32)
    if holes > 0:
        depth[rng.random(depth.shape) < holes] = 0.0
    dx, dy = int(shift_px[0]), int(shift_px[1])
    if dx or dy:
        depth = np.roll(depth, (dy, dx), axis=(0, 1))
    return depth.astype(np.float32)
