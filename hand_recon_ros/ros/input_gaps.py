"""Frames lost before the subscription callback, estimated from gaps in the images' header stamps.

Frames replaced inside the DDS reader history (or lost on the wire, or dropped by the camera driver)
never reach the node, so no counter sees them. The camera's period is measured as the median of recent
stamp differences; a difference of k periods (k >= 1.5) means about k - 1 frames missing. A gap longer
than ``pause_s`` and 50 periods counts as a pause of the stream, not as losses. Pure Python, no ROS.
"""

import math
import statistics
from collections import deque

__all__ = ['StampGapEstimator']


class StampGapEstimator:
    def __init__(self, window: int = 31, min_samples: int = 5, gap_factor: float = 1.5, pause_s: float = 2.0):
        self._deltas = deque(maxlen=window)
        self._min_samples = min_samples
        self._gap_factor = gap_factor
        self._pause_s = pause_s
        self._last = None
        self.lost = 0  # frames estimated missing
        self.pauses = 0  # gaps too long to be losses
        self.out_of_order = 0  # stamps not after the previous one (repeated, reordered, clock jump)

    @property
    def period_s(self) -> float:
        """The camera's measured frame period (NaN until enough frames arrived)."""
        if len(self._deltas) < self._min_samples:
            return math.nan
        return statistics.median(self._deltas)

    def update(self, stamp_s: float) -> int:
        """Add one received frame's stamp (seconds); returns the frames estimated lost just before it."""
        if not math.isfinite(stamp_s) or stamp_s <= 0:
            return 0  # zero stamps carry no timing
        if self._last is None:
            self._last = stamp_s
            return 0
        dt = stamp_s - self._last
        if dt <= 0:
            self.out_of_order += 1
            return 0
        self._last = stamp_s
        period = self.period_s
        self._deltas.append(dt)  # also the gaps: the median follows a real change of the camera's rate
        if math.isnan(period) or dt < self._gap_factor * period:
            return 0
        if dt > max(self._pause_s, 50 * period):
            self.pauses += 1
            return 0
        missing = int(round(dt / period)) - 1
        self.lost += missing
        return missing
