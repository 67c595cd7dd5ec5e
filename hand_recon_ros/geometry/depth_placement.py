"""Metric placement of a hand from a depth image registered to the colour camera (RGB-D robots).

Why: from one colour image a hand's distance is only as good as the hand model's size (a hand 10 % larger than the
model's is placed 10 % farther; the InterHand2.6M root depth error is ~360 mm). An aligned depth image measures the
distance of the hand's skin. Scaling every camera-frame point of the hand about the camera centre by one factor
keeps every projection (the keypoints, the overlay) and moves distance and size together: exactly what one image
leaves open, now fixed by the measurement.

Per keypoint the reading is the median of the valid depths in a small window around its pixel (depth cameras read
0 or NaN at edges and holes). The skin the camera sees lies in front of the joints (inside finger and palm):
``surface_offset_m`` is added to each reading. Each reading proposes a scale, (reading + offset) / model depth; the
proposal the most readings agree with (within ``max_disagreement_m`` of the scaled hand) is taken, and the median
of those readings' proposals is the scale. Readings of what lies behind the hand (seen past its edge or between
fingers) or in front of it (the other hand, an object) disagree with the hand's own and are left out. A scale
needs at least ``min_points`` agreeing keypoints and must lie within ``scale_range`` (a monocular placement is off
by tens of percent, not by a factor of two); otherwise the hand keeps its placement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ['DepthFix', 'DepthPlacementConfig', 'depth_fix', 'depth_pixels', 'depth_joints', 'read_depth']


@dataclass(frozen=True)
class DepthPlacementConfig:
    surface_offset_m: float = 0.008  # joint centres lie about this far behind the skin the camera sees
    window_px: int = 5  # side of the window read around each keypoint (depth-image pixels)
    min_points: int = 6  # keypoints whose readings agree, at least
    max_disagreement_m: float = 0.04  # a reading this far from the scaled model's joint is not the hand's
    scale_range: tuple[float, float] = (0.5, 2.0)  # a larger correction means the readings are not of this hand
    min_depth_m: float = 0.05  # readings outside [min, max] are invalid (sensor's blind zone, saturated far field)
    max_depth_m: float = 20.0

    def __post_init__(self) -> None:
        if not self.surface_offset_m >= 0.0:
            raise ValueError(f'surface_offset_m must be >= 0, got {self.surface_offset_m}')
        if int(self.window_px) < 1:
            raise ValueError(f'window_px must be >= 1, got {self.window_px}')
        if int(self.min_points) < 1:
            raise ValueError(f'min_points must be >= 1, got {self.min_points}')
        if not self.max_disagreement_m > 0.0:
            raise ValueError(f'max_disagreement_m must be > 0, got {self.max_disagreement_m}')
        low, high = self.scale_range
        if not 0.0 < low <= 1.0 <= high:
            raise ValueError(f'scale_range must hold 1 within (0, inf), got {self.scale_range}')
        if not 0.0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f'need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}')


@dataclass(frozen=True)
class DepthFix:
    """How a hand is moved onto the depth image: multiply its camera-frame points by ``scale``."""

    scale: float
    points: int  # keypoints whose readings agreed
    readings: int  # keypoints with a valid reading at all


def depth_pixels(image_size: tuple[int, int], depth_size: tuple[int, int]) -> tuple[float, float]:
    """(x, y) factors from colour-image pixels to depth-image pixels, both (height, width). A depth image registered
    to the colour camera at another resolution has the same field of view: the same aspect ratio. Other shapes are
    not registered to this camera: ValueError."""
    (h, w), (hd, wd) = image_size, depth_size
    if min(h, w, hd, wd) <= 0:
        raise ValueError(f'empty image: colour {w}x{h}, depth {wd}x{hd}')
    sx, sy = wd / w, hd / h
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise ValueError(
            f'depth image {wd}x{hd} is not registered to the {w}x{h} colour image (other aspect ratio): publish the '
            'depth aligned to the colour camera (e.g. aligned_depth_to_color)'
        )
    return sx, sy


def read_depth(depth_m: np.ndarray, pixels: np.ndarray, config: DepthPlacementConfig | None = None) -> np.ndarray:
    """(N,) median valid depth (metres) in a window around each (x, y) depth-image pixel; NaN where none is valid."""
    config = config or DepthPlacementConfig()
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f'depth image must be (H, W), got shape {depth_m.shape}')
    height, width = depth_m.shape
    half = int(config.window_px) // 2
    out = np.full(len(pixels), np.nan)
    for i, (x, y) in enumerate(np.asarray(pixels, np.float64)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        cx, cy = int(np.floor(x)), int(np.floor(y))
        x0, x1 = max(cx - half, 0), min(cx + half + 1, width)
        y0, y1 = max(cy - half, 0), min(cy + half + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue  # outside the depth image
        window = depth_m[y0:y1, x0:x1].astype(np.float64).ravel()
        valid = window[np.isfinite(window) & (window >= config.min_depth_m) & (window <= config.max_depth_m)]
        if valid.size:
            out[i] = float(np.median(valid))
    return out


def depth_fix(
    joints_cam: np.ndarray,
    keypoints_2d: np.ndarray,
    depth_m: np.ndarray,
    image_size: tuple[int, int],
    config: DepthPlacementConfig | None = None,
) -> DepthFix | None:
    """The scale that puts a hand (``joints_cam`` (J, 3) metres, camera frame; ``keypoints_2d`` (J, 2) colour-image
    pixels, their projections) onto ``depth_m`` (H, W) metres; None when too few readings agree (hand outside the
    depth image, holes, occluded). ``image_size``: (height, width) of the colour image."""
    config = config or DepthPlacementConfig()
    joints = np.asarray(joints_cam, np.float64)
    sx, sy = depth_pixels(image_size, np.asarray(depth_m).shape[:2])
    pixels = np.asarray(keypoints_2d, np.float64) * np.array([sx, sy])
    readings = read_depth(depth_m, pixels, config)
    z = joints[:, 2]
    usable = np.isfinite(readings) & (z > 1e-3)
    if usable.sum() < config.min_points:
        return None
    target, z = readings[usable] + config.surface_offset_m, z[usable]
    ratios = target / z
    # each reading proposes a scale; the one most readings agree with wins (background seen past the hand's edge, or
    # a hand in front, disagree with the hand's own readings); a proposal outside scale_range is not this hand's
    support = (np.abs(target[None, :] - ratios[:, None] * z[None, :]) <= config.max_disagreement_m).sum(1)
    low, high = config.scale_range
    for i in sorted(range(len(ratios)), key=lambda i: (-support[i], ratios[i])):
        if support[i] < config.min_points:
            return None
        if not low <= ratios[i] <= high:
            continue
        agree = np.abs(target - ratios[i] * z) <= config.max_disagreement_m
        scale = float(np.median(ratios[agree]))
        agree = np.abs(target - scale * z) <= config.max_disagreement_m
        if agree.sum() >= config.min_points and low <= scale <= high:
            return DepthFix(scale=scale, points=int(agree.sum()), readings=int(usable.sum()))
    return None


def depth_joints(
    world_joints: np.ndarray,
    keypoints_2d: np.ndarray,
    K: np.ndarray,
    depth_m: np.ndarray,
    image_size: tuple[int, int],
    config: DepthPlacementConfig | None = None,
    hand_extent_m: float = 0.1,
    min_points: int = 8,
) -> np.ndarray | None:
    """(J, 3) camera-frame joints measured by the depth image where it reads the hand, for a fit to follow: each
    keypoint with a reading within ``hand_extent_m`` of the hand's median reading is its pixel's ray at that depth
    (+ the surface offset); the other joints are ``world_joints`` (a landmark network's metric 3D, axes as the
    camera's) moved and scaled onto those. None with fewer than ``min_points`` such readings."""
    config = config or DepthPlacementConfig()
    world = np.asarray(world_joints, np.float64)
    keypoints = np.asarray(keypoints_2d, np.float64)
    sx, sy = depth_pixels(image_size, np.asarray(depth_m).shape[:2])
    readings = read_depth(depth_m, keypoints * np.array([sx, sy]), config)
    valid = np.isfinite(readings)
    if valid.sum() < min_points:
        return None
    near = valid & (np.abs(readings - np.median(readings[valid])) <= hand_extent_m)
    if near.sum() < min_points:
        return None
    K = np.asarray(K, np.float64)
    z = readings[near] + config.surface_offset_m
    rays = np.linalg.solve(K, np.concatenate([keypoints[near], np.ones((int(near.sum()), 1))], 1).T).T
    measured = rays / rays[:, 2:] * z[:, None]
    centred = world[near] - world[near].mean(0)
    spread = float((centred**2).sum())
    if spread <= 1e-12:
        return None
    scale = float((centred * (measured - measured.mean(0))).sum()) / spread
    if scale <= 0:
        return None
    out = scale * (world - world[near].mean(0)) + measured.mean(0)
    out[near] = measured
    return out
