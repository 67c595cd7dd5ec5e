"""Shared pieces of the real-dataset loaders: camera maths, interaction distance, the trainer sample dict.

Conventions (same as the synthetic data and the node): metres, camera optical frame (x right, y down,
z forward), pixel coordinates with the origin at the top-left corner, per-hand arrays ``[left, right]``,
joints in the 21-joint order of ``hand_recon_ros.conventions``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from hand_recon_ros.acr.centermaps import center_heatmaps
from hand_recon_ros.acr.preprocess import letterbox
from hand_recon_ros.conventions import ROOT_MIDDLE_MCP
from hand_recon_train.synth.generator import fit_weak_camera  # one implementation, shared

__all__ = [
    'SEG_IGNORE',
    'INTERACTION_REDUCTIONS',
    'world_to_camera',
    'project',
    'intrinsics_matrix',
    'interaction_distance',
    'is_close_interaction',
    'fit_weak_camera',
    'make_sample',
    'read_json',
    'read_image',
]

# Real datasets have no part segmentation: every pixel is ignore_index of F.cross_entropy, so train real data
# with ``loss.seg_epochs: 0`` (an all-ignored map makes the mean cross-entropy NaN).
SEG_IGNORE = -100
INTERACTION_REDUCTIONS = ('mean_nearest', 'min')


def read_json(path: str | os.PathLike):
    path = Path(path)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path} is not valid JSON: {exc}') from exc


def read_image(path: str | os.PathLike) -> np.ndarray:
    """BGR uint8; a missing or unreadable file is an error naming the path (cv2 alone returns None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'image not found: {path}')
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'cannot decode image {path}')
    return image


def world_to_camera(points_world, rotation, campos) -> np.ndarray:
    """``X_cam = R (X_world - campos)`` for (..., 3) points: R rotates world into camera axes and campos
    is the camera centre in world coordinates (InterHand2.6M's convention; any unit, kept as given)."""
    X = np.asarray(points_world, dtype=np.float64)
    R = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    c = np.asarray(campos, dtype=np.float64).reshape(3)
    if X.shape[-1:] != (3,):
        raise ValueError(f'points must have shape (..., 3), got {X.shape}')
    return (X - c) @ R.T


def intrinsics_matrix(focal, princpt) -> np.ndarray:
    fx, fy = (float(v) for v in np.asarray(focal, dtype=np.float64).reshape(2))
    cx, cy = (float(v) for v in np.asarray(princpt, dtype=np.float64).reshape(2))
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        raise ValueError(f'invalid intrinsics focal={focal!r} princpt={princpt!r}')
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def project(points_cam, K) -> np.ndarray:
    """Pinhole projection (..., 3) -> (..., 2) pixels; points at or behind the camera give NaN."""
    X = np.asarray(points_cam, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    z = X[..., 2:3]
    with np.errstate(divide='ignore', invalid='ignore'):
        uv = np.where(z > 0, X[..., :2] / z, np.nan)
    return uv * K[..., [0, 1], [0, 1]] + K[..., :2, 2]  # K may be batched (..., 3, 3)


def interaction_distance(
    joints_left, joints_right, valid_left=None, valid_right=None, reduce: str = 'mean_nearest'
) -> float:
    """How close two hands are (same unit as the joints); NaN when a hand has no valid joint.

    ``'mean_nearest'``: for every valid joint of each hand, the distance to the nearest valid joint of the
    other hand, averaged over the joints of both hands (symmetric). ``'min'``: the closest joint pair.
    """
    if reduce not in INTERACTION_REDUCTIONS:
        raise ValueError(f'reduce must be one of {INTERACTION_REDUCTIONS}, got {reduce!r}')
    a, b = np.asarray(joints_left, np.float64), np.asarray(joints_right, np.float64)
    va = np.ones(len(a), bool) if valid_left is None else np.asarray(valid_left, bool)
    vb = np.ones(len(b), bool) if valid_right is None else np.asarray(valid_right, bool)
    a, b = a[va], b[vb]
    if len(a) == 0 or len(b) == 0:
        return float('nan')
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    if reduce == 'min':
        return float(d.min())
    return float(np.concatenate([d.min(axis=1), d.min(axis=0)]).mean())


def is_close_interaction(
    joints_left, joints_right, valid_left=None, valid_right=None, threshold: float = 0.04, reduce: str = 'mean_nearest'
) -> bool:
    """Closely interacting = both hands have valid joints and ``interaction_distance < threshold``.

    Default: the mean nearest-joint distance under 40 mm (metres in, like every loader output). The paper
    subsets (IntagHand/IHMR "close" splits) are not published as a rule, so this one is parameterised.
    """
    d = interaction_distance(joints_left, joints_right, valid_left, valid_right, reduce)
    return bool(np.isfinite(d) and d < threshold)


def make_sample(
    image_bgr: np.ndarray,
    K: np.ndarray | None,
    joints_cam: np.ndarray | None,
    joints_valid: np.ndarray,
    hand_valid: np.ndarray,
    input_size: int,
    normalization: str = 'imagenet',
    mano: dict | None = None,
    index: int = 0,
    keypoints_2d: np.ndarray | None = None,
    keypoints_valid: np.ndarray | None = None,
) -> dict:
    """One real frame -> the trainer's sample dict (``SynthDataset`` keys where real data has them).

    The frame is letterboxed to ``input_size`` (centred black bars, as at inference); ``K`` becomes network
    pixels. Keys: ``image`` (3, S, S), ``K``, ``valid`` (2,), ``joints_3d`` (2, 21, 3) camera frame m (invalid
    joints zeroed), ``joints_valid`` (2, 21), ``joints_2d`` (2, 21, 2) in [-1, 1], ``joints_vis`` (valid and
    inside the frame), ``cam`` (weak camera fitted to the visible joints, middle-MCP relative),
    ``center_maps`` (2, S/8, S/8; centre of the visible-keypoint box), ``seg`` (all ``SEG_IGNORE``),
    ``global_orient`` / ``hand_pose`` / ``betas`` (camera frame, zero without MANO) and ``has_mano`` (2,).
    No ``vertices``: real datasets give them only through MANO files this project cannot use.

    2D-only annotations: ``joints_cam=None`` (all 3D invalid, ``cam`` zero) with ``keypoints_2d`` (2, 21, 2)
    original pixels and ``keypoints_valid``; ``K=None`` gives a zero ``K`` (unknown intrinsics).
    """
    if normalization not in ('imagenet', 'pm1'):
        raise ValueError(f"normalization must be 'imagenet' or 'pm1', got {normalization!r}")
    height, width = image_bgr.shape[:2]
    tensor, info = letterbox(image_bgr, int(input_size), bgr=True, normalization=normalization)
    S = int(input_size)
    joints_valid = np.asarray(joints_valid, bool).reshape(2, 21)
    if joints_cam is None:
        joints_cam, joints_valid = np.zeros((2, 21, 3)), np.zeros((2, 21), bool)
    joints_cam = np.asarray(joints_cam, np.float64).reshape(2, 21, 3)
    joints_valid = joints_valid & np.isfinite(joints_cam).all(-1)
    hand_valid = np.asarray(hand_valid, bool).reshape(2)
    K_net = np.zeros((3, 3))
    if K is not None:
        K = np.asarray(K, np.float64).reshape(3, 3)
        K_net = K.copy()
        K_net[:2] *= info.scale
        K_net[0, 2] += info.pad_left * info.scale
        K_net[1, 2] += info.pad_top * info.scale
    if keypoints_2d is not None:
        uv = np.asarray(keypoints_2d, np.float64).reshape(2, 21, 2)
        kp_valid = np.ones((2, 21), bool) if keypoints_valid is None else np.asarray(keypoints_valid, bool)
        uv = np.where(kp_valid.reshape(2, 21)[..., None], uv, np.nan)
    elif K is None:
        raise ValueError('make_sample needs K to project the 3D joints, or keypoints_2d')
    else:
        uv = project(np.where(joints_valid[..., None], joints_cam, np.nan), K)  # original pixels
    inside = (
        np.isfinite(uv).all(-1) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    )
    uv_net = np.nan_to_num(info.to_network(np.nan_to_num(uv)))
    norm = uv_net / (S / 2.0) - 1.0
    valid = hand_valid & (inside.sum(-1) >= 2)
    content = np.array(
        [
            info.pad_left * info.scale,
            info.pad_top * info.scale,
            (info.pad_left + width) * info.scale,
            (info.pad_top + height) * info.scale,
        ]
    )
    cam = np.zeros((2, 3))
    centers, boxes, sides = [], [], []
    for s in range(2):
        if not valid[s]:
            continue
        rel = joints_cam[s] - joints_cam[s, ROOT_MIDDLE_MCP]
        both = inside[s] & joints_valid[s]
        if joints_valid[s, ROOT_MIDDLE_MCP] and both.sum() >= 2:
            cam[s] = fit_weak_camera(rel[both], norm[s][both])
        pts = uv_net[s][inside[s]]
        lo = np.clip(pts.min(0), content[:2], content[2:])
        hi = np.clip(pts.max(0), content[:2], content[2:])
        centers.append((lo + hi) / 2.0 / 8.0 - 0.5)
        boxes.append((hi - lo) / 8.0)
        sides.append(s)
    maps = center_heatmaps(centers, boxes, sides, S // 8) if centers else np.zeros((2, S // 8, S // 8), np.float32)

    mano = mano or {}
    has_mano = np.asarray(mano.get('has_mano', np.zeros(2, bool)), bool).reshape(2) & valid
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {
        'image': tensor[0].contiguous(),
        'seg': torch.full((S // 2, S // 2), SEG_IGNORE, dtype=torch.int64),
        'center_maps': torch.from_numpy(maps),
        'valid': torch.from_numpy(valid.copy()),
        'global_orient': f32(np.where(has_mano[:, None], mano.get('global_orient', np.zeros((2, 3))), 0.0)),
        'hand_pose': f32(np.where(has_mano[:, None], mano.get('hand_pose', np.zeros((2, 45))), 0.0)),
        'betas': f32(np.where(has_mano[:, None], mano.get('betas', np.zeros((2, 10))), 0.0)),
        'has_mano': torch.from_numpy(has_mano.copy()),
        'cam': f32(cam),
        'joints_3d': f32(np.where(joints_valid[..., None], joints_cam, 0.0)),
        'joints_valid': torch.from_numpy(joints_valid.copy()),
        'joints_2d': f32(np.where(inside[..., None], norm, 0.0)),
        'joints_vis': torch.from_numpy(inside.copy()),
        'K': f32(K_net),
        'index': torch.tensor(int(index)),
    }


class FrameDataset:
    """Shared part of the real-data datasets: input size / normalisation checks, length, index checks."""

    def __init__(self, annotations, input_size: int = 256, normalization: str = 'imagenet'):
        self.annotations = annotations
        self.input_size, self.normalization = int(input_size), normalization
        if self.input_size < 8 or self.input_size % 8:
            raise ValueError(f'input_size must be a positive multiple of 8, got {input_size!r}')
        if normalization not in ('imagenet', 'pm1'):
            raise ValueError(f"normalization must be 'imagenet' or 'pm1', got {normalization!r}")

    def __len__(self) -> int:
        return len(self.annotations)

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} frames')
        return int(index)
