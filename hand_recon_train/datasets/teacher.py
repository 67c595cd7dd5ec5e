"""Real photos labelled by the keypoint teacher (``hand_recon_train.teacher``) as training samples.

Each frame gives: centre maps and handedness (which hand is where), 2D keypoints, and weak root-relative 3D from
MediaPipe's world landmarks (metres; their axes follow the image's, checked: a pure scale maps their x, y onto the
keypoints within ~5 % of the hand's extent), from which ``make_sample`` fits the weak camera. No MANO targets.

Only frames the teacher labelled completely are used, so that no real hand is taught as background: every hand
``trusted`` (flip pass agrees, not a duplicate, on a dataset box), every dataset box matched, at most one hand
per side (ACR has one centre map per side).

``zoom_prob`` > 0 crops a share of the samples to a square around one of the frame's hands (``zoom_context`` times
its keypoint box, at full photo resolution), so that hands filling most of the frame, as close to a robot's camera
or in the annotated close-up sets, are seen in training: the photos mostly show hands at arm's length. Each index
has its own crop (drawn from ``seed`` and the index); ``length`` (default: the frame count, or four times it when
zooming) sets how many distinct samples the source offers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hand_recon_ros.conventions import SIDES

from ..teacher.labels import load_labels
from .common import FrameDataset, make_sample, read_image

__all__ = ['TeacherDataset', 'select_frames', 'DEFAULT_LABELS']

DEFAULT_LABELS = 'out/teacher/realimgs-train.labels.json'
_DEPTH_M = 0.5  # any depth: only root-relative 3D and the weak camera are used
_ZOOM_MIN_HAND_PX = 24.0  # smaller hands would be upsampled into blur: such frames are not zoomed


def select_frames(doc: dict, split: str, sources=None) -> tuple[list[dict], dict]:
    """Frames fit for training and the count of each reason a frame was left out."""
    keep, dropped = [], {}

    def drop(reason):
        dropped[reason] = dropped.get(reason, 0) + 1

    for im in doc['images']:
        if im['split'] != split or (sources and im['source'] not in sources):
            continue
        hands = im['hands']
        if im['boxes'] is not None and im['missed_boxes']:
            drop('teacher missed a boxed hand')
        elif im['boxes'] is None and len(hands) != 1:
            drop('crop without exactly one hand')
        elif not all(h['flags']['trusted'] for h in hands):
            drop('untrusted hand')
        elif len({h['side'] for h in hands}) != len(hands):
            drop('two hands of one side')
        elif im['boxes'] is not None and not hands and im['boxes']:
            drop('no hand found')
        else:
            keep.append(im)
    return keep, dropped


class TeacherDataset(FrameDataset):
    """``data.real`` entry ``{type: teacher, root: <realimgs-train>, split: train, options: {labels: ...}}``."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = 'train',
        input_size: int = 256,
        normalization: str = 'imagenet',
        labels: str = DEFAULT_LABELS,
        sources=None,
        verify_hashes: bool = False,
        zoom_prob: float = 0.0,
        zoom_context=(1.2, 2.5),
        seed: int = 0,
        length: int | None = None,
    ):
        if not 0.0 <= float(zoom_prob) <= 1.0:
            raise ValueError(f'zoom_prob must be in [0, 1], got {zoom_prob!r}')
        lo, hi = (float(v) for v in zoom_context)
        if not 1.0 <= lo <= hi:
            raise ValueError(f'zoom_context must be (low, high) with 1 <= low <= high, got {zoom_context!r}')
        self.zoom_prob, self.zoom_context, self.seed = float(zoom_prob), (lo, hi), int(seed)
        self.root = Path(root)
        doc = load_labels(labels, root=self.root, verify_hashes=verify_hashes)
        frames, self.dropped = select_frames(doc, split, sources)
        if not frames:
            raise ValueError(
                f'no usable teacher-labelled frames in {labels} for split {split!r} ' f'(left out: {self.dropped})'
            )
        super().__init__(frames, input_size, normalization)
        if length is not None and int(length) < 1:
            raise ValueError(f'length must be positive, got {length!r}')
        self._length = int(length) if length else len(frames) * (4 if self.zoom_prob > 0 else 1)

    def __len__(self) -> int:
        return self._length

    def zoom_window(self, im: dict, shape, rng: np.random.Generator):
        """-> (x0, y0, x1, y1) integer crop around one of ``im``'s hands, or None (no zoom for this draw)."""
        if not im['hands'] or rng.random() >= self.zoom_prob:
            return None
        hand = im['hands'][int(rng.integers(len(im['hands'])))]
        kp = np.asarray(hand['keypoints'], np.float64)
        lo, hi = kp.min(0), kp.max(0)
        extent = float((hi - lo).max())
        if extent < _ZOOM_MIN_HAND_PX:
            return None
        side = extent * rng.uniform(*self.zoom_context)
        centre = (lo + hi) / 2.0 + rng.uniform(-0.15, 0.15, 2) * side
        height, width = shape[:2]
        x0, y0 = np.floor(np.maximum(centre - side / 2.0, 0.0)).astype(int)
        x1 = int(np.ceil(min(centre[0] + side / 2.0, width)))
        y1 = int(np.ceil(min(centre[1] + side / 2.0, height)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        return int(x0), int(y0), x1, y1

    def __getitem__(self, index: int) -> dict:
        index = self._check_index(index)
        im = self.annotations[index % len(self.annotations)]
        image = read_image(self.root / im['path'])
        window = None
        if self.zoom_prob > 0:
            window = self.zoom_window(im, image.shape, np.random.default_rng([self.seed, index]))
        offset = np.zeros(2)
        if window is not None:
            x0, y0, x1, y1 = window
            image, offset = image[y0:y1, x0:x1], np.array([x0, y0], np.float64)
        kps = np.zeros((2, 21, 2))
        joints = np.zeros((2, 21, 3))
        valid = np.zeros(2, bool)
        for hand in im['hands']:
            s = SIDES.index(hand['side'])
            kps[s] = np.asarray(hand['keypoints'], np.float64) - offset
            joints[s] = np.asarray(hand['world'], np.float64) + np.array([0.0, 0.0, _DEPTH_M])
            valid[s] = True
        joints_valid = np.repeat(valid[:, None], 21, axis=1)
        return make_sample(
            image,
            None,
            joints,
            joints_valid,
            valid,
            self.input_size,
            self.normalization,
            index=index,
            keypoints_2d=kps,
            keypoints_valid=joints_valid,
        )
