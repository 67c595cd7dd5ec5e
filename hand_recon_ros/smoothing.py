"""Temporal smoothing (One-Euro filter) and hand tracking with stable track ids. numpy only, no ROS.

The One-Euro filter (Casiez et al., CHI 2012) is a low-pass whose cutoff rises with speed: strong
smoothing while a hand holds still, little lag while it moves. It works on message timestamps, so
replayed bags and dropped frames behave the same as live input.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from hand_recon_ros.results import HandResult

__all__ = ['OneEuroParams', 'OneEuroFilter', 'QuaternionOneEuroFilter', 'HandTracker', 'Track', 'SPEED_SCALES']


@dataclass
class OneEuroParams:
    """Shared by every filter built from it, so changing a field retunes live filters at once."""

    min_cutoff: float = 1.0  # Hz; lower = smoother at rest
    beta: float = 0.0  # cutoff gain per unit of speed (units/s); higher = less lag when moving
    d_cutoff: float = 1.0  # Hz; cutoff of the speed estimate

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.beta >= 0):
            raise ValueError(f'One-Euro parameters need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {self}')
        if not all(math.isfinite(v) for v in (self.min_cutoff, self.beta, self.d_cutoff)):
            raise ValueError(f'One-Euro parameters must be finite, got {self}')

    def update(self, **changes: float) -> None:
        """Change fields in place (all-or-nothing: an invalid value leaves the parameters unchanged)."""
        unknown = set(changes) - {'min_cutoff', 'beta', 'd_cutoff'}
        if unknown:
            raise ValueError(f'unknown One-Euro parameter(s): {sorted(unknown)}')
        candidate = dataclasses.replace(self, **{k: float(v) for k, v in changes.items()})
        for k in changes:
            setattr(self, k, getattr(candidate, k))


def _alpha(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
    # Smoothing factor of a first-order low-pass with this cutoff sampled every dt seconds.
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Element-wise One-Euro filter over arrays of a fixed shape.

    The first sample passes through. A sample whose time is not after the previous one (dt <= 0:
    duplicate or out-of-order stamp) does not change the state and the previous output is returned.
    """

    def __init__(self, params: Optional[OneEuroParams] = None, speed_scale: float = 1.0):
        # speed_scale converts this signal's speed into the units beta is tuned for (see HandTracker).
        if not (speed_scale > 0 and math.isfinite(speed_scale)):
            raise ValueError(f'speed_scale must be a finite value > 0, got {speed_scale}')
        self.params = params if params is not None else OneEuroParams()
        self.speed_scale = float(speed_scale)
        self.reset()

    def reset(self) -> None:
        self._x: Optional[np.ndarray] = None
        self._raw: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None
        self._t: Optional[float] = None
        self._updates = 0

    @property
    def derivative(self) -> Optional[np.ndarray]:
        """The filtered speed of the raw signal (units per second); None before a second sample."""
        return None if self._dx is None or self._updates == 0 else self._dx.copy()

    @property
    def value(self) -> Optional[np.ndarray]:
        return None if self._x is None else self._x.copy()

    @property
    def shape(self) -> Optional[Tuple[int, ...]]:
        return None if self._x is None else self._x.shape

    def __call__(self, x: ArrayLike, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f'timestamp must be finite, got {t}')
        if not np.isfinite(x).all():
            raise ValueError('One-Euro filter input contains non-finite values')
        if self._x is None:
            self._x, self._raw, self._dx, self._t = x.copy(), x.copy(), np.zeros_like(x), t
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f'input shape changed from {self._x.shape} to {x.shape}; reset() the filter first')
        assert self._raw is not None and self._dx is not None and self._t is not None  # set together with _x
        dt = t - self._t
        if dt <= 0:
            return self._x.copy()
        p = self.params
        dx = (x - self._raw) / dt  # speed of the signal itself (as in the paper), not of the lagging output
        self._dx += _alpha(p.d_cutoff, dt) * (dx - self._dx)
        cutoff = p.min_cutoff + (p.beta * self.speed_scale) * np.abs(self._dx)
        self._x += _alpha(cutoff, dt) * (x - self._x)
        self._raw, self._t = x.copy(), t
        self._updates += 1
        return self._x.copy()


class QuaternionOneEuroFilter:
    """One-Euro on (x, y, z, w) quaternions: align the sign with the last output, filter, re-normalise.

    q and -q are the same rotation; without the alignment a sign flip in the input would drag the
    filtered value through zero. Fine for the small frame-to-frame rotations of a tracked hand.
    """

    def __init__(self, params: Optional[OneEuroParams] = None, speed_scale: float = 1.0):
        self._filter = OneEuroFilter(params, speed_scale)
        self._last: Optional[np.ndarray] = None

    @property
    def params(self) -> OneEuroParams:
        return self._filter.params

    def reset(self) -> None:
        self._filter.reset()
        self._last = None

    def __call__(self, q: ArrayLike, t: float) -> np.ndarray:
        quat = np.asarray(q, np.float64)
        if quat.shape != (4,):
            raise ValueError(f'quaternion must have shape (4,), got {quat.shape}')
        norm = np.linalg.norm(quat)
        if not (np.isfinite(norm) and norm > 1e-9):
            raise ValueError(f'quaternion must be finite and non-zero, got {quat}')
        quat = quat / norm
        if self._last is not None and float(np.dot(quat, self._last)) < 0:
            quat = -quat
        out = self._filter(quat, t)
        n = np.linalg.norm(out)
        out = out / n if n > 1e-9 else quat  # averaging near-opposite inputs could shrink to ~0
        self._last = out
        return out.copy()


# Smoothed HandResult fields -> speed scale. One beta serves all of them because each signal's speed is
# first converted to roughly "metres per second of hand motion": ~1000 px per metre for a hand at
# arm's length, ~0.1 m per radian (a hand's radius) for rotations and MANO parameters.
SPEED_SCALES = {
    'joints_3d': 1.0,
    'wrist_position': 1.0,
    'vertices': 1.0,
    'keypoints_2d': 1e-3,
    'center_2d': 1e-3,
    'mano_pose': 0.1,
    'mano_shape': 0.1,
    'weak_camera': 0.1,
    'wrist_orientation': 0.2,  # a unit quaternion moves half as fast as the angle
}
_COPIED_ARRAYS = ('joint_confidence',)


@dataclass
class Track:
    track_id: int
    side: str
    first_seen: float
    last_seen: float
    last_wrist: np.ndarray  # raw wrist of the last associated detection
    filters: Dict[str, OneEuroFilter]
    orientation: QuaternionOneEuroFilter
    hits: int = 1


class HandTracker:
    """Stable track ids and One-Euro smoothing for the hands of successive frames.

    mode 'per_side': at most one track per side (the highest-scoring detection of a side is used).
    mode 'multi': several hands per side, greedily associated by wrist distance.
    A detection farther than ``gate_m`` from its side's track(s) starts a new track (None: no gate);
    a track unseen for more than ``max_missing_s`` ends, so a hand that comes back gets a new id.
    Time going backwards (a bag restarting) resets all tracks.
    """

    def __init__(
        self,
        mode: str = 'per_side',
        gate_m: Optional[float] = 0.25,
        max_missing_s: float = 0.5,
        min_cutoff: float = 1.0,
        beta: float = 5.0,
        d_cutoff: float = 1.0,
        enabled: bool = True,
        speed_scales: Optional[Dict[str, float]] = None,
    ):
        if mode not in ('per_side', 'multi'):
            raise ValueError(f"mode must be 'per_side' or 'multi', got {mode!r}")
        if gate_m is not None and not gate_m > 0:
            raise ValueError(f'gate_m must be > 0 or None, got {gate_m}')
        if not max_missing_s >= 0:
            raise ValueError(f'max_missing_s must be >= 0, got {max_missing_s}')
        self.mode = mode
        self.gate_m = gate_m
        self.max_missing_s = float(max_missing_s)
        self.enabled = enabled  # False: ids only, values pass through unsmoothed
        # One parameter object shared by every filter of every track: set_params() retunes them live.
        self.params = OneEuroParams(float(min_cutoff), float(beta), float(d_cutoff))
        self.speed_scales = dict(SPEED_SCALES)
        for name, scale in (speed_scales or {}).items():
            if name not in SPEED_SCALES:
                raise ValueError(f'unknown field {name!r}; smoothed fields: {sorted(SPEED_SCALES)}')
            if not (float(scale) > 0 and math.isfinite(float(scale))):
                raise ValueError(f'speed scale of {name} must be a finite value > 0, got {scale}')
            self.speed_scales[name] = float(scale)
        self._tracks: List[Track] = []
        self._next_id = 1
        self._last_stamp: Optional[float] = None
        self.skipped_invalid = 0

    # -- configuration -------------------------------------------------------------------------------
    def set_params(self, **changes: float) -> None:
        """Retune all live filters, e.g. set_params(beta=2.0) (min_cutoff, beta, d_cutoff)."""
        self.params.update(**changes)

    @property
    def tracks(self) -> Tuple[Track, ...]:
        return tuple(self._tracks)

    def reset(self) -> None:
        """Forget all tracks (ids keep increasing, so old ids are never reused)."""
        self._tracks = []
        self._last_stamp = None

    # -- per frame -----------------------------------------------------------------------------------
    def update(self, hands: Sequence[HandResult], stamp_s: float) -> List[HandResult]:
        """Smoothed copies of the valid hands, in input order, with track_id set."""
        return self.update_with_raw(hands, stamp_s)[1]

    def update_with_raw(self, hands: Sequence[HandResult], stamp_s: float) -> Tuple[List[HandResult], List[HandResult]]:
        """(raw copies with track_id, smoothed copies with track_id); the inputs are not modified."""
        stamp_s = float(stamp_s)
        if not math.isfinite(stamp_s):
            raise ValueError(f'stamp_s must be finite, got {stamp_s}')
        if self._last_stamp is not None and stamp_s < self._last_stamp:
            self.reset()
        self._last_stamp = stamp_s
        self._tracks = [tr for tr in self._tracks if stamp_s - tr.last_seen <= self.max_missing_s]

        valid = []
        for hand in hands:
            try:
                hand.validate()
            except ValueError:
                self.skipped_invalid += 1
                continue
            valid.append(hand)
        if self.mode == 'per_side':
            best: Dict[str, HandResult] = {}
            for hand in valid:
                if hand.handedness not in best or hand.score > best[hand.handedness].score:
                    best[hand.handedness] = hand
            valid = [h for h in valid if best[h.handedness] is h]

        assignment = self._associate(valid, stamp_s)
        raw_out, smooth_out = [], []
        for hand, track in zip(valid, assignment):
            track.last_seen = stamp_s
            track.last_wrist = np.asarray(hand.wrist_position, np.float64).copy()
            raw_out.append(self._copy(hand, {}, track.track_id))
            smooth_out.append(self._smooth(hand, track, stamp_s))
        return raw_out, smooth_out

    # -- internals -----------------------------------------------------------------------------------
    def _new_track(self, hand: HandResult, stamp_s: float) -> Track:
        filters = {
            name: OneEuroFilter(self.params, scale)
            for name, scale in self.speed_scales.items()
            if name != 'wrist_orientation'
        }
        track = Track(
            track_id=self._next_id,
            side=hand.handedness,
            first_seen=stamp_s,
            last_seen=stamp_s,
            last_wrist=np.asarray(hand.wrist_position, np.float64).copy(),
            filters=filters,
            orientation=QuaternionOneEuroFilter(self.params, self.speed_scales['wrist_orientation']),
            hits=0,
        )
        self._next_id += 1
        self._tracks.append(track)
        return track

    def _associate(self, hands: List[HandResult], stamp_s: float) -> List[Track]:
        gate = math.inf if self.gate_m is None else self.gate_m
        pairs = []
        for i, hand in enumerate(hands):
            wrist = np.asarray(hand.wrist_position, np.float64)
            for j, track in enumerate(self._tracks):
                if track.side == hand.handedness:
                    d = float(np.linalg.norm(wrist - track.last_wrist))
                    if d <= gate:
                        pairs.append((d, i, j))
        pairs.sort()
        assigned: Dict[int, Track] = {}
        used = set()
        for _, i, j in pairs:  # greedy: closest pairs first
            if i not in assigned and j not in used:
                assigned[i] = self._tracks[j]
                used.add(j)
        if self.mode == 'per_side':
            # A side's unmatched track is superseded by the new detection of that side.
            new_sides = {hands[i].handedness for i in range(len(hands)) if i not in assigned}
            self._tracks = [tr for j, tr in enumerate(self._tracks) if j in used or tr.side not in new_sides]
        result = []
        for i, hand in enumerate(hands):
            track = assigned.get(i) or self._new_track(hand, stamp_s)
            track.hits += 1
            result.append(track)
        return result

    @staticmethod
    def _copy(hand: HandResult, values: Dict[str, np.ndarray], track_id: int) -> HandResult:
        changes: Dict[str, Any] = {}
        for name in list(SPEED_SCALES) + list(_COPIED_ARRAYS):
            src = getattr(hand, name)
            if name in values:
                changes[name] = values[name].astype(np.asarray(src).dtype)
            elif src is not None:
                changes[name] = np.array(src, copy=True)
        # velocities belong to the smoother's output only (set by _smooth)
        return dataclasses.replace(hand, track_id=track_id, joint_velocities=None, **changes)

    def _smooth(self, hand: HandResult, track: Track, stamp_s: float) -> HandResult:
        if not self.enabled:
            return self._copy(hand, {}, track.track_id)
        values = {}
        for name, filt in track.filters.items():
            src = getattr(hand, name)
            if src is None:
                filt.reset()  # e.g. vertices switched off: start afresh when they come back
                continue
            src = np.asarray(src)
            if filt.shape is not None and filt.shape != src.shape:
                filt.reset()
            values[name] = filt(src, stamp_s)
        values['wrist_orientation'] = track.orientation(hand.wrist_orientation, stamp_s)
        out = self._copy(hand, values, track.track_id)
        velocity = track.filters['joints_3d'].derivative if 'joints_3d' in track.filters else None
        out.joint_velocities = None if velocity is None else velocity.astype(np.float32)
        return out
