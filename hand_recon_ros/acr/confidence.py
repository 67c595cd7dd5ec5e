"""Per-hand and per-joint confidences read from the network's maps (published in Hand.msg).

- handedness score: this side's centre probability / (left + right) at the hand's centre cell;
- joint confidence: the part-segmentation probability, at each joint's projected pixel, of the hand parts
  the joint sits on (its own part and its parent's; a fingertip: the distal part). A joint hidden by the
  other hand or an object shows another class there, so its confidence drops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hand_recon_ros import conventions
from hand_recon_ros.geometry.camera import LetterboxTransform
from hand_recon_ros.hand_model import parts

# Distal MANO part of each fingertip joint (tips are rows 16..20 = thumb, index, middle, ring, pinky).
_TIP_PARTS = (15, 3, 6, 12, 9)


def _joint_parts() -> tuple[tuple[int, ...], ...]:
    out: list[tuple[int, ...]] = []
    for src in conventions.MANO16_TIPS_TO_21:
        if src >= conventions.NUM_MANO_JOINTS:
            out.append((_TIP_PARTS[src - conventions.NUM_MANO_JOINTS],))
        elif src == 0:
            out.append((0,))
        else:
            out.append((src, conventions.MANO_PARENTS[src]))
    return tuple(out)


JOINT_PARTS = _joint_parts()  # per joint of the 21-joint order: the MANO parts (0..15) it lies on


def _class_mask(side: str) -> np.ndarray:
    """(21, 33) 1 where the class belongs to the joint (this side's parts)."""
    mask = np.zeros((conventions.NUM_JOINTS, parts.NUM_CLASSES), np.float32)
    for j, joint_parts in enumerate(JOINT_PARTS):
        mask[j, [int(parts.class_id(side, p)) for p in joint_parts]] = 1.0
    return mask


_CLASS_MASKS = {side: _class_mask(side) for side in conventions.SIDES}


def handedness_scores(
    center_logits: torch.Tensor, batch_index: Sequence[int], side: Sequence[int], y: Sequence[int], x: Sequence[int]
) -> list[float]:
    """(B, 2, h, w) centre logits and detections -> P(own side) / (P(left) + P(right)) per detection."""
    if len(batch_index) == 0:
        return []
    probs = torch.sigmoid(center_logits.detach().float()[list(batch_index), :, list(y), list(x)])  # (N, 2)
    own = probs[torch.arange(len(side)), list(side)]
    total = probs.sum(dim=1)
    ratio = torch.where(total > 0, own / total.clamp_min(1e-12), torch.full_like(own, 0.5))
    return ratio.clamp(0.0, 1.0).tolist()


def joint_confidences(
    seg_logits: torch.Tensor, keypoints_2d: np.ndarray, side: str, image_size: tuple[int, int], input_size: int
) -> np.ndarray:
    """(33, hs, ws) segmentation logits of one image + (21, 2) keypoints in original pixels -> (21,) in [0, 1].

    Joints outside the original image get 0 (the network never saw them).
    """
    height, width = image_size
    kp = np.asarray(keypoints_2d, np.float64).reshape(conventions.NUM_JOINTS, 2)
    inside = (kp[:, 0] >= 0) & (kp[:, 0] < width) & (kp[:, 1] >= 0) & (kp[:, 1] < height)
    inside &= np.isfinite(kp).all(axis=1)
    out = np.zeros(conventions.NUM_JOINTS, np.float32)
    if not inside.any():
        return out
    hs, ws = seg_logits.shape[-2:]
    uv_in = LetterboxTransform(int(height), int(width), int(input_size)).to_input(kp[inside])
    cols = np.clip(np.floor(uv_in[:, 0] * ws / input_size), 0, ws - 1).astype(np.int64)
    rows = np.clip(np.floor(uv_in[:, 1] * hs / input_size), 0, hs - 1).astype(np.int64)
    logits = seg_logits.detach()[
        :, torch.from_numpy(rows).to(seg_logits.device), torch.from_numpy(cols).to(seg_logits.device)
    ]  # (33, n)
    probs = torch.softmax(logits.float(), dim=0).T.cpu().numpy()  # (n, 33)
    mask = _CLASS_MASKS[side][inside]
    out[inside] = np.clip((probs * mask).sum(axis=1), 0.0, 1.0)
    return out
