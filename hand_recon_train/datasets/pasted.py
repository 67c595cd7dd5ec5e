"""Overlapping hand pairs made from real photos: a teacher-labelled hand cut out of one photo and pasted onto
another photo's hand, so the network sees two real hands touching and overlapping.

The teacher (MediaPipe) cannot label interacting hands, but it labels single hands well. A pasted pair keeps
both hands' labels from before pasting: the pasted hand's keypoints move with the paste, the base hand's
keypoints under the pasted hand are marked hidden (no 2D target there; its root-relative 3D stays valid since
occlusion does not change it). The cut-out follows the hand's skeleton (thick bones plus the palm polygon,
feathered), so little of the donor's background comes along.

One side per hand (ACR has one centre map per side): the donor is mirrored when it has the base hand's side,
which turns a left hand into a right one (image flipped, world x negated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hand_recon_ros.conventions import BONES, SIDES

from ..teacher.labels import load_labels
from .common import FrameDataset, make_sample, read_image
from .teacher import DEFAULT_LABELS, select_frames

__all__ = ['PasteConfig', 'PastedHand', 'PastedPairsDataset', 'hand_mask', 'paste_hand', 'pair_from_frames']

_PALM = (0, 1, 5, 9, 13, 17)
_DEPTH_M = 0.5


@dataclass(frozen=True)
class PasteConfig:
    """``size_ratio``: pasted hand size / base hand size, uniform in the range; ``offset``: distance between the
    two hands' centres in base-hand sizes, uniform (small = heavy overlap); ``hidden_alpha``: mask value above
    which a base keypoint counts as hidden."""

    size_ratio: tuple[float, float] = (0.8, 1.2)
    offset: tuple[float, float] = (0.25, 0.75)
    hidden_alpha: float = 0.5
    bone_width: float = 0.13  # of the hand's size (longest side of its keypoint box)
    feather: float = 0.03


@dataclass
class PastedHand:
    side: str
    keypoints: np.ndarray  # (21, 2) pixels of the composed image
    visible: np.ndarray  # (21,) bool
    world: np.ndarray  # (21, 3) root-relative metres (teacher world landmarks)


def _hand_size(kps: np.ndarray) -> float:
    return float(max(np.ptp(kps[:, 0]), np.ptp(kps[:, 1]), 1.0))


def hand_mask(shape: tuple[int, int], kps: np.ndarray, bone_width: float = 0.13, feather: float = 0.03) -> np.ndarray:
    """Float mask in [0, 1] of a hand drawn from its 21 keypoints: thick bones and the filled palm, feathered."""
    h, w = shape
    size = _hand_size(kps)
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(kps).astype(np.int32)
    thick = max(int(round(bone_width * size)), 2)
    for p, c in BONES:
        cv2.line(mask, tuple(map(int, pts[p])), tuple(map(int, pts[c])), 255, thick, cv2.LINE_AA)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts[list(_PALM)]), 255, cv2.LINE_AA)
    for tip in (4, 8, 12, 16, 20):
        cv2.circle(mask, tuple(map(int, pts[tip])), max(thick // 2, 1), 255, -1, cv2.LINE_AA)
    sigma = max(feather * size, 0.5)
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)


def _mirror(image: np.ndarray, kps: np.ndarray, world: np.ndarray):
    w = image.shape[1]
    kps = kps.copy()
    kps[:, 0] = (w - 1) - kps[:, 0]
    world = world * np.array([-1.0, 1.0, 1.0])
    return image[:, ::-1].copy(), kps, world


def paste_hand(
    base: np.ndarray,
    base_kps: np.ndarray,
    donor: np.ndarray,
    donor_kps: np.ndarray,
    rng: np.random.Generator,
    config: PasteConfig | None = None,
):
    """Paste the donor hand over the base hand. Returns the composed image, the donor keypoints in it, and
    which base keypoints stay visible; ``None`` when the paste would leave the frame."""
    config = config or PasteConfig()
    h, w = base.shape[:2]
    base_size, donor_size = _hand_size(base_kps), _hand_size(donor_kps)
    scale = rng.uniform(*config.size_ratio) * base_size / donor_size
    angle = rng.uniform(0.0, 2.0 * np.pi)
    dist = rng.uniform(*config.offset) * base_size
    base_c = (base_kps.min(0) + base_kps.max(0)) / 2.0
    donor_c = (donor_kps.min(0) + donor_kps.max(0)) / 2.0
    target_c = base_c + dist * np.array([np.cos(angle), np.sin(angle)])
    A = np.array([[scale, 0.0, target_c[0] - scale * donor_c[0]], [0.0, scale, target_c[1] - scale * donor_c[1]]])
    moved = donor_kps @ A[:, :2].T + A[:, 2]
    if (moved < 0).any() or (moved[:, 0] >= w).any() or (moved[:, 1] >= h).any():
        return None
    mask = hand_mask(donor.shape[:2], donor_kps, config.bone_width, config.feather)
    warped = cv2.warpAffine(donor, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(mask, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    composed = base.astype(np.float32) * (1.0 - alpha) + warped.astype(np.float32) * alpha
    composed = np.clip(composed + 0.5, 0, 255).astype(np.uint8)
    bx = np.clip(np.round(base_kps).astype(int), 0, [w - 1, h - 1])
    base_visible = alpha[bx[:, 1], bx[:, 0], 0] < config.hidden_alpha
    return composed, moved, base_visible


def pair_from_frames(
    base_image,
    base_hand: dict,
    donor_image,
    donor_hand: dict,
    rng: np.random.Generator,
    config: PasteConfig | None = None,
) -> tuple[np.ndarray, list[PastedHand]] | None:
    """A two-hand image from a one-hand base frame and a donor hand (label dicts with ``side``, ``keypoints``,
    ``world``); the donor is mirrored if needed so the two sides differ."""
    config = config or PasteConfig()
    d_kps = np.asarray(donor_hand['keypoints'], np.float64)
    d_world = np.asarray(donor_hand['world'], np.float64)
    d_side = donor_hand['side']
    if d_side == base_hand['side']:
        donor_image, d_kps, d_world = _mirror(donor_image, d_kps, d_world)
        d_side = 'left' if d_side == 'right' else 'right'
    b_kps = np.asarray(base_hand['keypoints'], np.float64)
    out = paste_hand(base_image, b_kps, donor_image, d_kps, rng, config)
    if out is None:
        return None
    image, moved, base_visible = out
    hands = [
        PastedHand(base_hand['side'], b_kps, base_visible, np.asarray(base_hand['world'], np.float64)),
        PastedHand(d_side, moved, np.ones(21, bool), d_world),
    ]
    return image, hands


class PastedPairsDataset(FrameDataset):
    """``data.real`` entry ``{type: teacher_pairs, root: <realimgs-train>, split: train, options: {labels: ...}}``.

    Base frames: fully labelled teacher frames with exactly one hand; donors: any trusted hand of the split.
    Sample ``i`` is deterministic in (seed, i); a paste that leaves the frame is retried with other draws.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = 'train',
        input_size: int = 256,
        normalization: str = 'imagenet',
        labels: str = DEFAULT_LABELS,
        seed: int = 0,
        length: int | None = None,
        sources=None,
        verify_hashes: bool = False,
    ):
        self.root = Path(root)
        doc = load_labels(labels, root=self.root, verify_hashes=verify_hashes)
        frames, _ = select_frames(doc, split, sources)
        bases = [im for im in frames if len(im['hands']) == 1]
        donors = [
            (im, h)
            for im in doc['images']
            if im['split'] == split and (not sources or im['source'] in sources)
            for h in im['hands']
            if h['flags']['trusted']
        ]
        if not bases or not donors:
            raise ValueError(f'no one-hand frames or no trusted hands in {labels} for split {split!r}')
        self.donors, self.seed = donors, int(seed)
        super().__init__(bases, input_size, normalization)
        # several donors per base frame by default, so an epoch does not repeat one pairing
        self._length = int(length) if length else 4 * len(bases)

    def __len__(self) -> int:
        return self._length

    def compose(self, index: int):
        """The composed BGR image and its two hands (for the benchmark's held-out pairs and for looking)."""
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, index])
        base = self.annotations[index % len(self.annotations)]
        base_image = read_image(self.root / base['path'])
        for _ in range(8):
            donor_im, donor_hand = self.donors[int(rng.integers(len(self.donors)))]
            if donor_im['path'] == base['path']:
                continue
            out = pair_from_frames(
                base_image, base['hands'][0], read_image(self.root / donor_im['path']), donor_hand, rng
            )
            if out is not None:
                return out
        hand = base['hands'][0]
        return base_image, [
            PastedHand(
                hand['side'],
                np.asarray(hand['keypoints'], np.float64),
                np.ones(21, bool),
                np.asarray(hand['world'], np.float64),
            )
        ]

    def __getitem__(self, index: int) -> dict:
        image, hands = self.compose(index)
        kps = np.zeros((2, 21, 2))
        kp_valid = np.zeros((2, 21), bool)
        joints = np.zeros((2, 21, 3))
        valid = np.zeros(2, bool)
        for hand in hands:
            s = SIDES.index(hand.side)
            kps[s], kp_valid[s] = hand.keypoints, hand.visible
            joints[s] = hand.world + np.array([0.0, 0.0, _DEPTH_M])
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
            keypoints_valid=kp_valid,
        )
