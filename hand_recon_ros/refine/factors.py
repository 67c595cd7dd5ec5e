"""Two-hand state of the refinement, its flat parameter vector, and the factors (slices) IHMR updates.

Translation convention: ``HandParams.translation`` is the camera-frame position (metres, optical frame)
of the hand's WRIST (joint 0 of the 21-joint order), not smplx's ``transl`` and not the middle MCP the
pipeline anchors its camera solve at. The wrist is chosen because MANO's global orientation rotates
about the wrist: an orientation or shape change then leaves the hand's position alone, so the factors
stay independent, and IHMR's translation factor is wrist-to-wrist.

Flat vector layout (``PARAM_DIM`` = 122, the MLP input next to the image feature)::

    [0:3]     translation : left wrist - right wrist (IHMR's relative translation)
    [3:6]     left_orient  (axis-angle)     [6:9]     right_orient
    [9:54]    left finger pose (15 x axis-angle)     [54:99]  right finger pose
    [99:109]  left betas                              [109:119] right betas
    [119:122] wrist midpoint (l + r) / 2, camera frame; no stage updates it

A new relative translation keeps the midpoint fixed, so both wrists move by half the change and the
pair stays where the camera saw it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.results import REFINE_FACTORS, HandResult

if TYPE_CHECKING:
    from hand_recon_ros.hand_model.model import HandModel

__all__ = [
    'HandParams',
    'TwoHandState',
    'PARAM_DIM',
    'FACTOR_SLICES',
    'FACTOR_SIZES',
    'REFINE_FACTORS',
    'extract_factor',
    'apply_factor',
    'wrists_from_vector',
    'forward_hands',
    'should_refine',
    'gate_mask',
    'DEFAULT_GATE_M',
]

PARAM_DIM = 122
_FINGERS_LEFT, _FINGERS_RIGHT = slice(9, 54), slice(54, 99)
_BETAS_LEFT, _BETAS_RIGHT = slice(99, 109), slice(109, 119)
_MIDPOINT = slice(119, 122)
# Each factor is a set of columns of the flat vector; 'fingers' and 'shape' cover both hands (IHMR).
FACTOR_SLICES = {
    'translation': (slice(0, 3),),
    'left_orient': (slice(3, 6),),
    'right_orient': (slice(6, 9),),
    'fingers': (_FINGERS_LEFT, _FINGERS_RIGHT),
    'shape': (_BETAS_LEFT, _BETAS_RIGHT),
}
FACTOR_SIZES = {name: sum(s.stop - s.start for s in slices) for name, slices in FACTOR_SLICES.items()}
assert tuple(FACTOR_SLICES) == REFINE_FACTORS
# Which hands' meshes a factor changes (the other hand's mesh can be reused).
FACTOR_SIDES = {
    'translation': (),
    'left_orient': ('left',),
    'right_orient': ('right',),
    'fingers': SIDES,
    'shape': SIDES,
}

# Hands whose wrists are farther apart than this cannot touch unless both reach out with straight
# fingers (wrist-to-fingertip is ~0.18 m for an adult hand); beyond it the refinement is skipped free.
DEFAULT_GATE_M = 0.3

_FIELDS = (('global_orient', 3), ('hand_pose', 45), ('betas', 10), ('translation', 3))

# {side: (vertices (B, V, 3), joints (B, 21, 3))} as forward_hands returns it (the refiner rebuilds the pairs
# with tuple(), hence the open length).
HandMeshes = dict[str, tuple[torch.Tensor, ...]]


def _as_tensor(x: ArrayLike | torch.Tensor, name: str, width: int) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32) if not isinstance(x, torch.Tensor) else x
    if not t.is_floating_point():
        raise TypeError(f'{name} must be floating point, got {t.dtype}')
    if t.dim() not in (1, 2) or t.shape[-1] != width:
        raise ValueError(f'{name} must have shape ({width},) or (B, {width}), got {tuple(t.shape)}')
    return t


@dataclass
class HandParams:
    """One hand: axis-angle global orientation and finger pose (MANO, full 45-d pose), betas, wrist
    position in the camera frame (metres). Each field is (K,) or batched (B, K)."""

    global_orient: torch.Tensor
    hand_pose: torch.Tensor
    betas: torch.Tensor
    translation: torch.Tensor

    def __post_init__(self) -> None:
        for name, width in _FIELDS:
            setattr(self, name, _as_tensor(getattr(self, name), name, width))
        dims = {getattr(self, name).dim() for name, _ in _FIELDS}
        batches = {getattr(self, name).shape[0] for name, _ in _FIELDS} if dims == {2} else {1}
        if len(dims) != 1 or len(batches) != 1:
            raise ValueError('HandParams fields must all be unbatched (K,) or all (B, K) with the same B')

    @property
    def batched(self) -> bool:
        return self.global_orient.dim() == 2

    def as_batch(self) -> HandParams:
        if self.batched:
            return self
        return HandParams(*(getattr(self, n)[None] for n, _ in _FIELDS))

    @classmethod
    def from_hand_result(cls, hand: HandResult) -> HandParams:
        """From a ``results.HandResult`` (mano_pose = root 3 + fingers 45, wrist_position)."""
        pose = np.asarray(hand.mano_pose, np.float32)
        return cls(
            torch.from_numpy(pose[:3].copy()),
            torch.from_numpy(pose[3:].copy()),
            torch.from_numpy(np.asarray(hand.mano_shape, np.float32).copy()),
            torch.from_numpy(np.asarray(hand.wrist_position, np.float32).copy()),
        )


@dataclass
class TwoHandState:
    """Both hands of one frame (or a batch); a side is None when that hand was not detected."""

    left: HandParams | None = None
    right: HandParams | None = None

    @property
    def is_pair(self) -> bool:
        return self.left is not None and self.right is not None

    @classmethod
    def from_hand_results(cls, hands: Iterable[HandResult]) -> TwoHandState:
        """The best hand per side of a list of ``HandResult`` (the first one met, i.e. by score order)."""
        found: dict[str, HandParams] = {}
        for hand in hands:
            found.setdefault(hand.handedness, HandParams.from_hand_result(hand))
        return cls(left=found.get('left'), right=found.get('right'))

    def to_vector(self) -> torch.Tensor:
        """(B, PARAM_DIM) flat vector (B = 1 for an unbatched state). Needs both hands."""
        if not self.is_pair:
            raise ValueError('the flat two-hand vector needs both hands (left and right)')
        assert self.left is not None and self.right is not None  # is_pair above; narrows the Optionals
        left, right = self.left.as_batch(), self.right.as_batch()
        if left.global_orient.shape[0] != right.global_orient.shape[0]:
            raise ValueError('left and right hands have different batch sizes')
        return torch.cat(
            [
                left.translation - right.translation,
                left.global_orient,
                right.global_orient,
                left.hand_pose,
                right.hand_pose,
                left.betas,
                right.betas,
                0.5 * (left.translation + right.translation),
            ],
            dim=1,
        )

    @classmethod
    def from_vector(cls, vec: torch.Tensor, batched: bool = True) -> TwoHandState:
        vec = _check_vector(vec)
        wl, wr = wrists_from_vector(vec)
        left = HandParams(vec[:, 3:6], vec[:, _FINGERS_LEFT], vec[:, _BETAS_LEFT], wl)
        right = HandParams(vec[:, 6:9], vec[:, _FINGERS_RIGHT], vec[:, _BETAS_RIGHT], wr)
        if not batched:
            if vec.shape[0] != 1:
                raise ValueError(f'an unbatched state needs a batch of 1, got {vec.shape[0]}')
            left = HandParams(*(getattr(left, n)[0] for n, _ in _FIELDS))
            right = HandParams(*(getattr(right, n)[0] for n, _ in _FIELDS))
        return cls(left=left, right=right)


def _check_vector(vec: torch.Tensor) -> torch.Tensor:
    if not isinstance(vec, torch.Tensor) or vec.dim() != 2 or vec.shape[1] != PARAM_DIM:
        shape = tuple(vec.shape) if isinstance(vec, torch.Tensor) else type(vec).__name__
        raise ValueError(f'the two-hand vector must be a (B, {PARAM_DIM}) tensor, got {shape}')
    return vec


def _check_factor(factor: str) -> tuple[slice, ...]:
    if factor not in FACTOR_SLICES:
        raise ValueError(f'unknown factor {factor!r}; factors are {REFINE_FACTORS}')
    return FACTOR_SLICES[factor]


def extract_factor(vec: torch.Tensor, factor: str) -> torch.Tensor:
    """(B, FACTOR_SIZES[factor]) values of one factor."""
    slices = _check_factor(factor)
    vec = _check_vector(vec)
    return torch.cat([vec[:, s] for s in slices], dim=1)


def apply_factor(vec: torch.Tensor, factor: str, values: torch.Tensor) -> torch.Tensor:
    """A new vector with one factor replaced by ``values`` (B, K); differentiable, ``vec`` untouched."""
    slices = _check_factor(factor)
    vec = _check_vector(vec)
    k = FACTOR_SIZES[factor]
    if values.shape != (vec.shape[0], k):
        raise ValueError(f'{factor} values must have shape ({vec.shape[0]}, {k}), got {tuple(values.shape)}')
    pieces, pos, start = [], 0, 0
    for s in slices:
        pieces.append(vec[:, start : s.start])
        pieces.append(values[:, pos : pos + s.stop - s.start])
        pos += s.stop - s.start
        start = s.stop
    pieces.append(vec[:, start:])
    return torch.cat(pieces, dim=1)


def wrists_from_vector(vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left wrist, right wrist), each (B, 3), camera frame."""
    vec = _check_vector(vec)
    rel, mid = vec[:, 0:3], vec[:, _MIDPOINT]
    return mid + 0.5 * rel, mid - 0.5 * rel


def forward_hands(hand_model: HandModel, vec: torch.Tensor, sides: Iterable[str] = SIDES) -> HandMeshes:
    """Meshes of the state: {side: (vertices (B, V, 3), joints (B, 21, 3))}, camera frame, metres.

    The MANO output is shifted so its wrist joint lands on the state's wrist position.
    """
    vec = _check_vector(vec)
    wrists = dict(zip(SIDES, wrists_from_vector(vec)))
    cols = {'left': (slice(3, 6), _FINGERS_LEFT, _BETAS_LEFT), 'right': (slice(6, 9), _FINGERS_RIGHT, _BETAS_RIGHT)}
    out: HandMeshes = {}
    for side in sides:
        orient, fingers, betas = cols[side]
        res = hand_model(side, vec[:, orient], vec[:, fingers], vec[:, betas])
        shift = (wrists[side] - res['joints'][:, 0])[:, None]
        out[side] = (res['vertices'] + shift, res['joints'] + shift)
    return out


def should_refine(state: TwoHandState, gate_m: float = DEFAULT_GATE_M) -> bool:
    """True when both hands are present and (for at least one sample) their wrists are within ``gate_m``."""
    if gate_m is None or not np.isfinite(gate_m) or gate_m < 0:
        raise ValueError(f'gate_m must be a finite distance >= 0 (metres), got {gate_m!r}')
    if not isinstance(state, TwoHandState):
        raise TypeError(f'state must be a TwoHandState, got {type(state).__name__}')
    if not state.is_pair:
        return False
    return bool(gate_mask(state.to_vector(), gate_m).any())


def gate_mask(vec: torch.Tensor, gate_m: float) -> torch.Tensor:
    """(B,) bool: samples whose wrists are within ``gate_m`` metres (finite states only)."""
    gap = torch.linalg.vector_norm(_check_vector(vec)[:, 0:3], dim=-1)
    return (gap <= gate_m) & torch.isfinite(vec).all(dim=1)
