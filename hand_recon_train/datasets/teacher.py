"""Real photos labelled by the keypoint teacher (``hand_recon_train.teacher``) as training samples.

Each frame gives: centre maps and handedness (which hand is where), 2D keypoints, and weak root-relative 3D from
MediaPipe's world landmarks (metres; their axes follow the image's, checked: a pure scale maps their x, y onto the
keypoints within ~5 % of the hand's extent), from which ``make_sample`` fits the weak camera. No MANO targets.

Only frames the teacher labelled completely are used, so that no real hand is taught as background: every hand
``trusted`` (flip pass agrees, not a duplicate, on a dataset box), every dataset box matched, at most one hand
per side (ACR has one centre map per side).
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
    ):
        self.root = Path(root)
        doc = load_labels(labels, root=self.root, verify_hashes=verify_hashes)
        frames, self.dropped = select_frames(doc, split, sources)
        if not frames:
            raise ValueError(
                f'no usable teacher-labelled frames in {labels} for split {split!r} ' f'(left out: {self.dropped})'
            )
        super().__init__(frames, input_size, normalization)

    def __getitem__(self, index: int) -> dict:
        im = self.annotations[self._check_index(index)]
        image = read_image(self.root / im['path'])
        kps = np.zeros((2, 21, 2))
        joints = np.zeros((2, 21, 3))
        valid = np.zeros(2, bool)
        for hand in im['hands']:
            s = SIDES.index(hand['side'])
            kps[s] = hand['keypoints']
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
