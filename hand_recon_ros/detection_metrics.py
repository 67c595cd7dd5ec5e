"""Image-space metrics for hands found in real photos: position-checked matching, recall / precision,
handedness, 2D keypoint error and PCK, two-hand frames (numpy + scipy, no torch, no ROS).

Matching rule (the real-image benchmark's): a predicted hand can match a labelled hand only if the centroid of its
21 keypoints lies within half the labelled hand's box size (the longer side) of that box's centre; among those
pairs the matching is one-to-one and minimises the total centroid distance (Hungarian). A prediction with no match
is a false positive; a labelled hand with no match is a miss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from hand_recon_ros.metrics import pa_mpjpe

__all__ = [
    'keypoint_box',
    'box_size',
    'box_iou',
    'keypoint_centroid',
    'match_hands',
    'keypoint_errors_px',
    'LabelledHand',
    'PredictedHand',
    'DetectionTally',
]


def keypoint_box(keypoints: ArrayLike) -> np.ndarray:
    """[x0, y0, x1, y1] around the finite keypoints of one hand ((21, 2) pixels)."""
    k = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    k = k[np.isfinite(k).all(axis=1)]
    if len(k) == 0:
        raise ValueError('keypoint_box: no finite keypoint')
    return np.array([k[:, 0].min(), k[:, 1].min(), k[:, 0].max(), k[:, 1].max()])


def box_size(box: ArrayLike) -> float:
    """The longer side of [x0, y0, x1, y1]."""
    b = np.asarray(box, dtype=np.float64)
    return float(max(b[2] - b[0], b[3] - b[1]))


def box_iou(a: ArrayLike, b: ArrayLike) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def keypoint_centroid(keypoints: ArrayLike) -> np.ndarray:
    k = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    k = k[np.isfinite(k).all(axis=1)]
    if len(k) == 0:
        raise ValueError('keypoint_centroid: no finite keypoint')
    return k.mean(axis=0)


def match_hands(pred_centroids: Sequence[ArrayLike], gt_boxes: Sequence[ArrayLike]) -> list[tuple[int, int]]:
    """One-to-one (pred index, labelled index) pairs under the position check (module docstring)."""
    p = np.asarray(pred_centroids, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if len(p) == 0 or len(g) == 0:
        return []
    centres = (g[:, :2] + g[:, 2:]) / 2
    half = np.maximum(g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]) / 2
    dist = np.linalg.norm(p[:, None, :] - centres[None, :, :], axis=-1)
    allowed = dist <= half[None, :]
    cost = np.where(allowed, dist, 1e9)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def keypoint_errors_px(pred: ArrayLike, gt: ArrayLike, visible: ArrayLike | None = None) -> np.ndarray:
    """Per-joint pixel distance; NaN where the label is missing or not visible."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    if pred.shape != gt.shape:
        raise ValueError(f'keypoint shapes differ: {pred.shape} vs {gt.shape}')
    err = np.linalg.norm(pred - gt, axis=1)
    if visible is not None:
        err = np.where(np.asarray(visible, dtype=bool).reshape(-1), err, np.nan)
    return err


@dataclass
class LabelledHand:
    box: np.ndarray  # [x0, y0, x1, y1] pixels
    side: str | None = None  # 'left' / 'right' / None (unknown)
    keypoints: np.ndarray | None = None  # (21, 2) pixels or None
    visible: np.ndarray | None = None  # (21,) bool
    joints_cam: np.ndarray | None = None  # (21, 3) metres, camera frame (3D sets only)
    joints_valid: np.ndarray | None = None


@dataclass
class PredictedHand:
    keypoints: np.ndarray  # (21, 2) pixels
    side: str
    score: float = 1.0
    joints_cam: np.ndarray | None = None  # (21, 3) metres, camera frame, when the method gives 3D
    side_share: float = 1.0  # ACR: its side's share of the two centre maps at the peak


@dataclass
class DetectionTally:
    """Accumulates frames of one method on one label set; ``summary()`` gives the table row."""

    pck_threshold: float = 0.1
    n_labelled: int = 0
    n_predicted: int = 0
    n_matched: int = 0
    side_known: int = 0
    side_correct: int = 0
    errors_px: list = field(default_factory=list)  # per matched hand: mean joint error (px)
    errors_rel: list = field(default_factory=list)  # per matched hand: mean error / box size
    pck_hits: int = 0
    pck_joints: int = 0
    two_hand_frames: int = 0
    two_hand_found: int = 0
    # matching is by position only: on overlapping hands one location can fall inside both boxes, so "found"
    # alone can count a hand seen twice (once per side map); this one also needs both sides right
    two_hand_found_sides: int = 0
    mpjpe_mm: list = field(default_factory=list)  # wrist-aligned, per matched 3D hand
    pa_mpjpe_mm: list = field(default_factory=list)  # after similarity Procrustes (the hand's pose and shape only)
    root_depth_mm: list = field(default_factory=list)  # |z_pred - z_true| of the wrist

    def add_frame(self, labelled: list[LabelledHand], predicted: list[PredictedHand]) -> list[tuple[int, int]]:
        self.n_labelled += len(labelled)
        self.n_predicted += len(predicted)
        cents = [keypoint_centroid(p.keypoints) for p in predicted]
        pairs = match_hands(cents, [h.box for h in labelled])
        self.n_matched += len(pairs)
        if len(labelled) >= 2:
            self.two_hand_frames += 1
            self.two_hand_found += int(len(pairs) >= 2)
            right_sides = {
                labelled[gi].side
                for pi, gi in pairs
                if labelled[gi].side is not None and predicted[pi].side == labelled[gi].side
            }
            self.two_hand_found_sides += int(len(right_sides) >= 2)
        for pi, gi in pairs:
            gt, pr = labelled[gi], predicted[pi]
            if gt.side is not None:
                self.side_known += 1
                self.side_correct += int(gt.side == pr.side)
            if gt.keypoints is not None:
                err = keypoint_errors_px(pr.keypoints, gt.keypoints, gt.visible)
                ok = np.isfinite(err)
                if ok.any():
                    size = box_size(gt.box)
                    self.errors_px.append(float(err[ok].mean()))
                    self.errors_rel.append(float(err[ok].mean() / size))
                    self.pck_hits += int((err[ok] <= self.pck_threshold * size).sum())
                    self.pck_joints += int(ok.sum())
            if gt.joints_cam is not None and pr.joints_cam is not None:
                valid = (
                    np.ones(len(gt.joints_cam), bool) if gt.joints_valid is None else np.asarray(gt.joints_valid, bool)
                )
                if valid[0] and valid.sum() > 1:
                    p = np.asarray(pr.joints_cam, np.float64)
                    g = np.asarray(gt.joints_cam, np.float64)
                    d = np.linalg.norm((p - p[0]) - (g - g[0]), axis=1)[valid]
                    self.mpjpe_mm.append(float(d.mean() * 1000))
                    self.pa_mpjpe_mm.append(float(pa_mpjpe(p, g, valid)))
                    self.root_depth_mm.append(float(abs(p[0, 2] - g[0, 2]) * 1000))
        return pairs

    def summary(self) -> dict[str, Any]:
        def ratio(a: float, b: float) -> float:
            return a / b if b else math.nan

        def mean(x: Sequence[float]) -> float:
            return float(np.mean(x)) if x else math.nan

        return {
            'labelled': self.n_labelled,
            'predicted': self.n_predicted,
            'matched': self.n_matched,
            'recall': ratio(self.n_matched, self.n_labelled),
            'precision': ratio(self.n_matched, self.n_predicted),
            'handedness': ratio(self.side_correct, self.side_known),
            'handedness_n': self.side_known,
            'err_px': mean(self.errors_px),
            'err_rel': mean(self.errors_rel),
            'pck': ratio(self.pck_hits, self.pck_joints),
            'two_hand_frames': self.two_hand_frames,
            'both_found': ratio(self.two_hand_found, self.two_hand_frames),
            'both_found_sides': ratio(self.two_hand_found_sides, self.two_hand_frames),
            'mpjpe_mm': mean(self.mpjpe_mm),
            'pa_mpjpe_mm': mean(self.pa_mpjpe_mm),
            'root_depth_mm': mean(self.root_depth_mm),
            'n_3d': len(self.mpjpe_mm),
        }
