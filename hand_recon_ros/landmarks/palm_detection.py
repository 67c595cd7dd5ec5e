"""Palms found on the whole frame by MediaPipe's palm detector: where the crop stage puts a hand's first crop.

ACR finds hands at 24 x 24 map resolution; its keypoints often get a close-up hand's roll and extent wrong, and
the landmark network reads a badly placed crop poorly. MediaPipe's palm detector (``palm_detection_full.tflite``,
converted like the landmark network: ``MediaPipePalmNet``) looks at the letterboxed frame at 192 px and gives
each palm a box and 7 points (wrist, finger bases, thumb); the crop MediaPipe derives from them is the one its
landmark network was trained on. This module decodes the detector's 2016 anchor outputs (SSD anchors of strides 8
and 16, two per cell), merges overlapping detections by score-weighted averaging, maps them back through the
letterbox, and turns each into a crop (``palm_crop``): up from the wrist to the middle finger's base, centred half
a palm towards the fingers, 2.6 palm sizes wide.

Plain numpy / OpenCV / torch; no ROS import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

__all__ = ['PalmDetection', 'PalmDetector', 'decode_palms', 'letterbox', 'palm_crop', 'ssd_anchor_centres']

PALM_INPUT = 192
ANCHOR_STRIDES = (8, 16, 16, 16)  # one feature map per stride; consecutive equal strides share one grid
ANCHORS_PER_LAYER = 2  # aspect ratio 1 plus the interpolated scale; the anchors' size is fixed (1 x 1)
NUM_KEYPOINTS = 7
PALM_WRIST, PALM_MIDDLE_BASE = 0, 2  # the detector's points the crop's 'up' runs between
SCORE_CLIP = 100.0  # logits are clipped to +-this before the sigmoid


@lru_cache(maxsize=4)
def ssd_anchor_centres(input_size: int = PALM_INPUT) -> np.ndarray:
    """(2016, 2) anchor centres in [0, 1] of the detector input, in the order of its outputs."""
    centres = []
    layer = 0
    while layer < len(ANCHOR_STRIDES):
        stride = ANCHOR_STRIDES[layer]
        run = 1
        while layer + run < len(ANCHOR_STRIDES) and ANCHOR_STRIDES[layer + run] == stride:
            run += 1
        cells = -(-input_size // stride)
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing='ij')
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, run * ANCHORS_PER_LAYER, axis=0))
        layer += run
    return np.concatenate(centres).astype(np.float64)


def decode_palms(
    regressors: np.ndarray, logits: np.ndarray, min_score: float = 0.5, input_size: int = PALM_INPUT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs ((2016, 18), (2016,)) -> the anchors scoring at least ``min_score``: boxes (K, 4)
    as x0, y0, x1, y1, keypoints (K, 7, 2), scores (K,); coordinates in [0, 1] of the detector input."""
    anchors = ssd_anchor_centres(input_size)
    regressors = np.asarray(regressors, np.float64)
    logits = np.asarray(logits, np.float64).reshape(-1)
    if regressors.shape != (len(anchors), 4 + 2 * NUM_KEYPOINTS) or logits.shape != (len(anchors),):
        raise ValueError(f'expected ({len(anchors)}, 18) and ({len(anchors)},), got {regressors.shape}, {logits.shape}')
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -SCORE_CLIP, SCORE_CLIP)))
    keep = np.flatnonzero(scores >= min_score)
    raw = regressors[keep] / input_size
    centre = raw[:, :2] + anchors[keep]
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[keep][:, None, :]
    return boxes, keypoints, scores[keep]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = 0.3
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Best first: each detection absorbs the lower-scored ones overlapping it by more than ``iou``; its box and
    points become their score-weighted mean (the many anchors that fire on one palm sharpen it), its score the
    best one's. -> [(box (4,), keypoints (7, 2), score), ...]."""
    order = np.argsort(-scores, kind='stable')
    left = order.copy()
    merged = []
    while len(left):
        overlaps = _iou(boxes[left[0]], boxes[left])
        group = left[overlaps > iou]
        group = group if len(group) else left[:1]
        w = scores[group] / scores[group].sum()
        merged.append(
            (
                (boxes[group] * w[:, None]).sum(axis=0),
                (keypoints[group] * w[:, None, None]).sum(axis=0),
                float(scores[left[0]]),
            )
        )
        left = left[~np.isin(left, group)]
    return merged


def letterbox(image_rgb: np.ndarray, size: int = PALM_INPUT) -> tuple[np.ndarray, float, np.ndarray]:
    """The image scaled to fit ``size`` x ``size`` with its aspect kept, centred on black. -> (square image,
    scale, offset): input pixel = image pixel * scale + offset."""
    h, w = image_rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    offset = np.array([(size - nw) / 2, (size - nh) / 2])
    affine = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float64)
    square = cv2.warpAffine(image_rgb, affine, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return square, scale, offset


@dataclass(frozen=True)
class PalmDetection:
    box: np.ndarray  # (4,) x0, y0, x1, y1 image pixels
    keypoints: np.ndarray  # (7, 2) image pixels: wrist, finger bases, thumb (MediaPipe's order)
    score: float


def palm_crop(palm: PalmDetection, scale: float = 2.6, shift_up: float = 0.5) -> tuple[np.ndarray, float, float]:
    """The landmark crop MediaPipe places on a palm: (centre (2,), side in pixels, angle in radians of the crop's
    'up' in the image), as ``crop_stage.crop_from_keypoints`` gives it. Up runs from the wrist to the middle
    finger's base; the centre moves ``shift_up`` box heights that way; the side is ``scale`` times the box's longer
    side."""
    up = palm.keypoints[PALM_MIDDLE_BASE] - palm.keypoints[PALM_WRIST]
    length = float(np.linalg.norm(up))
    up = up / length if length > 1e-6 else np.array([0.0, -1.0])
    size = palm.box[2:] - palm.box[:2]
    centre = (palm.box[:2] + palm.box[2:]) / 2 + shift_up * float(size[1]) * up
    return centre, float(max(size.max(), 1.0) * scale), float(np.arctan2(up[1], up[0]))


class PalmDetector:
    """``detect(image_bgr) -> [PalmDetection, ...]``, best first. ``model``: ``MediaPipePalmNet`` (or any module
    with its outputs). ``min_score``: MediaPipe's 0.5; ``nms_iou``: overlap above which detections merge.
    ``device``: where the network runs (the model is moved there; decoding stays on the CPU)."""

    def __init__(
        self,
        model: torch.nn.Module,
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        autocast_dtype: torch.dtype | None = None,
        device: torch.device | str = 'cpu',
    ) -> None:
        if not 0.0 < float(min_score) < 1.0:
            raise ValueError(f'min_score must be in (0, 1), got {min_score}')
        if not 0.0 < float(nms_iou) <= 1.0:
            raise ValueError(f'nms_iou must be in (0, 1], got {nms_iou}')
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.min_score, self.nms_iou = float(min_score), float(nms_iou)
        self.autocast_dtype = autocast_dtype

    @torch.inference_mode()
    def _forward(self, square_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = torch.from_numpy(square_rgb[None]).to(self.device).float().div_(255.0)
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                out = self.model(batch)
        else:
            out = self.model(batch)
        return out['regressors'][0].float().cpu().numpy(), out['scores'][0].float().cpu().numpy()

    def detect(self, image_bgr: np.ndarray) -> list[PalmDetection]:
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        square, scale, offset = letterbox(rgb)
        regressors, logits = self._forward(square)
        boxes, keypoints, scores = decode_palms(regressors, logits, self.min_score)
        palms = []
        for box, points, score in weighted_nms(boxes, keypoints, scores, self.nms_iou):
            to_image = lambda xy: (xy * PALM_INPUT - offset) / scale  # noqa: E731
            corners = to_image(box.reshape(2, 2)).reshape(4)
            palms.append(PalmDetection(box=corners, keypoints=to_image(points), score=score))
        return palms
