"""Real backgrounds for synthetic hands: crops of the training photos that hold no hand.

A crop is kept only if it misses every hand the photos are known to hold (the dataset's boxes and the teacher's
keypoint boxes, both grown by a margin), so a synthetic scene never gains an unlabelled real hand. Photos without
boxes (the sign-digit crops are one hand filling the frame) give no backgrounds. Only the ``train`` split is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ['BackgroundBank']

_MARGIN = 0.25  # grow hand boxes by this share of their size on each side
_MIN_SIDE_PX = 48


class BackgroundBank:
    def __init__(self, labels: str | os.PathLike, root: str | os.PathLike, split: str = 'train'):
        from ..teacher.labels import load_labels

        self.root = Path(root)
        doc = load_labels(labels, root=self.root)
        self.entries = []
        for im in doc['images']:
            if im['split'] != split or im['boxes'] is None:
                continue
            boxes = [list(map(float, b)) for b in im['boxes']]
            for hand in im['hands']:
                kps = np.asarray(hand['keypoints'], np.float64)
                boxes.append([*kps.min(0), *kps.max(0)])
            self.entries.append((im['path'], np.asarray(boxes, np.float64).reshape(-1, 4)))
        if not self.entries:
            raise ValueError(f'no photos with hand boxes in {labels} for split {split!r}')

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def _free(x0, y0, x1, y1, boxes) -> bool:
        if not len(boxes):
            return True
        size = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
        lo, hi = boxes[:, :2] - _MARGIN * size, boxes[:, 2:] + _MARGIN * size
        overlap = (x0 < hi[:, 0]) & (lo[:, 0] < x1) & (y0 < hi[:, 1]) & (lo[:, 1] < y1)
        return not overlap.any()

    def sample(self, rng: np.random.Generator, h: int, w: int, tries: int = 12) -> np.ndarray | None:
        """A (h, w, 3) float32 BGR crop without hands, or None when the draws found none."""
        for _ in range(tries):
            path, boxes = self.entries[int(rng.integers(len(self.entries)))]
            image = cv2.imread(str(self.root / path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            H, W = image.shape[:2]
            # a crop of the target aspect, up to the largest that fits, at a few places
            fit = min(W / w, H / h)
            found = None
            for _ in range(4):
                scale = fit * rng.uniform(0.2, 1.0)
                cw, ch = int(w * scale), int(h * scale)
                if min(cw, ch) < _MIN_SIDE_PX:
                    continue
                x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
                if self._free(x0, y0, x0 + cw, y0 + ch, boxes):
                    found = (x0, y0, cw, ch)
                    break
            if found is None:
                continue
            x0, y0, cw, ch = found
            crop = image[y0 : y0 + ch, x0 : x0 + cw]
            if rng.uniform() < 0.5:
                crop = crop[:, ::-1]
            return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        return None
