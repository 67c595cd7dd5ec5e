"""The depth images of an RGB-D camera, matched to colour frames by stamp (no rclpy: the node feeds it messages).

A driver publishes colour and aligned depth as two streams whose stamps are equal (one sensor, aligned by the
driver) or close (two sensors at the same rate). The node keeps the last few depth messages, undecoded, and for each
colour frame takes the one stamped closest to it if within ``max_gap_s``; only that one is decoded.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ['DepthBuffer', 'DepthCounts']


@dataclass
class DepthCounts:
    """What became of the colour frames' depth, for /diagnostics."""

    received: int = 0  # depth messages
    matched: int = 0  # colour frames that got a depth image
    unmatched: int = 0  # colour frames with none within the stamp gap
    bad: int = 0  # matched depth images that could not be read (encoding, size, registration)
    hands_placed: int = 0  # hands moved onto a depth image
    hands_not_read: int = 0  # hands of frames with depth whose keypoints the depth image did not read

    def summary(self) -> str:
        return (
            f'received {self.received}, matched {self.matched}, unmatched {self.unmatched}, bad {self.bad}, '
            f'hands placed {self.hands_placed}, hands not read {self.hands_not_read}'
        )


class DepthBuffer:
    """The last ``size`` depth messages by stamp (seconds); thread-safe."""

    def __init__(self, size: int = 8):
        if size < 1:
            raise ValueError(f'size must be >= 1, got {size}')
        self._items: collections.deque[tuple[float, Any]] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, stamp_s: float, msg: Any) -> None:
        with self._lock:
            self._items.append((float(stamp_s), msg))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def closest(self, stamp_s: float, max_gap_s: float) -> tuple[Any | None, float]:
        """-> (the message stamped closest to ``stamp_s`` if within ``max_gap_s``, else None; that gap in seconds,
        inf when the buffer is empty)."""
        with self._lock:
            items = list(self._items)
        if not items:
            return None, float('inf')
        stamp, msg = min(items, key=lambda item: abs(item[0] - stamp_s))
        gap = abs(stamp - stamp_s)
        return (msg if gap <= max_gap_s else None), gap
