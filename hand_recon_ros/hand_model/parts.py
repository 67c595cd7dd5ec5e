"""Hand part labels (16 parts = MANO joints) and ACR's 33-class segmentation layout.

Labels are computed at run time from whichever model is loaded (never shipped: a label file derived
from MANO's weights would be MANO data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from .model import HandModel

NUM_PARTS = 16
NUM_CLASSES = 1 + 2 * NUM_PARTS  # 0 background, 1..16 right parts, 17..32 left parts
BACKGROUND = 0
_CLASS_OFFSET = {'right': 1, 'left': 1 + NUM_PARTS}


def vertex_part_labels(weights: ArrayLike) -> np.ndarray:
    """(V, 16) skinning weights -> (V,) int64 part = argmax (ties -> lowest joint index)."""
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != NUM_PARTS:
        raise ValueError(f'weights must be (V, {NUM_PARTS}), got {w.shape}')
    return w.argmax(axis=1).astype(np.int64)


def face_part_labels(faces: ArrayLike, vertex_labels: ArrayLike, weights: ArrayLike | None = None) -> np.ndarray:
    """Majority vote of the three vertex labels; when all three differ, the part with the largest
    summed weight over the face's vertices (or, without weights, the first vertex's label)."""
    f = np.asarray(faces, dtype=np.int64)
    lab = np.asarray(vertex_labels, dtype=np.int64)[f]  # (F, 3)
    out = np.where(lab[:, 1] == lab[:, 2], lab[:, 1], lab[:, 0])  # a == b or a == c -> a
    undecided = (lab[:, 0] != lab[:, 1]) & (lab[:, 0] != lab[:, 2]) & (lab[:, 1] != lab[:, 2])
    if weights is not None and np.any(undecided):
        w = np.asarray(weights)[f[undecided]].sum(axis=1)  # (n, 16)
        out[undecided] = w.argmax(axis=1)
    return out


def part_counts(labels: ArrayLike) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_PARTS)


def class_id(side: str, part: ArrayLike) -> int | np.ndarray:
    """ACR 33-class id of a part (int or array) of one hand: right 1..16, left 17..32."""
    if side not in _CLASS_OFFSET:
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    p = np.asarray(part)
    if np.any((p < 0) | (p >= NUM_PARTS)):
        raise ValueError(f'part must be in [0, {NUM_PARTS}), got {part!s}')
    out = p + _CLASS_OFFSET[side]
    return int(out) if out.ndim == 0 else out.astype(np.int64)


def class_to_side_part(cls: int | np.integer) -> tuple[str | None, int]:
    """Inverse of class_id: -> (side or None for background, part or -1)."""
    c = int(cls)
    if not 0 <= c < NUM_CLASSES:
        raise ValueError(f'class must be in [0, {NUM_CLASSES}), got {cls}')
    if c == BACKGROUND:
        return None, -1
    return ('right', c - 1) if c <= NUM_PARTS else ('left', c - 1 - NUM_PARTS)


def model_vertex_classes(model: HandModel, side: str) -> int | np.ndarray:
    """(V,) ACR class per vertex of the loaded HandModel."""
    return class_id(side, model.part_labels(side))


def model_face_classes(model: HandModel, side: str) -> int | np.ndarray:
    """(F,) ACR class per face of the loaded HandModel (majority vote)."""
    labels = face_part_labels(model.faces(side), model.part_labels(side), model.skinning_weights(side))
    return class_id(side, labels)
