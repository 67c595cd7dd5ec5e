"""Warnings throttled by the kind of problem, never by its text (pure Python, no ROS).

A sender controls the text of an error (an encoding name, a size): keying a throttle on it lets anyone
flood the log and grow the throttle's memory without bound. Here every report names one of a fixed set
of kinds; the first report of a kind is logged at once, later ones at most once per period with the
number held back, and each kind is counted (the counts go to /diagnostics).
"""

import functools
import threading
import time
from typing import Callable, Dict

__all__ = ['KINDS', 'ProblemLog', 'guarded_callback']

KINDS = (
    'bad_input.encoding',
    'bad_input.size',
    'bad_input.layout',
    'bad_input.truncated',
    'bad_input.format_refused',
    'bad_input.header',
    'bad_input.decode_failed',
    'frame_failed',
    'callback_failed',
    'other',
)
MAX_TEXT = 300  # a sender's string (an encoding field can be megabytes) is cut before it reaches the log


class ProblemLog:
    def __init__(
        self,
        warn: Callable[[str], None],
        error: Callable[[str], None],
        period_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._warn, self._error, self.period_s, self._clock = warn, error, float(period_s), clock
        self._lock = threading.Lock()
        self._last: Dict[str, float] = {}
        self._held: Dict[str, int] = {}
        self.counts: Dict[str, int] = {}
        self.lines = 0

    def report(self, kind: str, text: str, error: bool = False) -> bool:
        """Count the problem; log it unless this kind was logged less than period_s ago. True if logged."""
        kind = kind if kind in KINDS else 'other'
        now = self._clock()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            last = self._last.get(kind)
            if last is not None and now - last < self.period_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._last[kind] = now
            held = self._held.pop(kind, 0)
            self.lines += 1
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + f'... ({len(text)} characters)'
        if held:
            text += f' [{held} more {kind} problem(s) not logged in the last {self.period_s:.0f} s]'
        (self._error if error else self._warn)(text)
        return True

    def counts_snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def summary(self) -> str:
        with self._lock:
            return ', '.join(f'{k}={v}' for k, v in sorted(self.counts.items()))


def guarded_callback(method):
    """A subscription/timer callback that logs and counts an exception instead of ending the executor.

    For methods of an object with ``status.errors`` (a counter) and ``problems`` (a ProblemLog)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            self.status.errors += 1
            self.problems.report(
                'callback_failed', f'{method.__name__} failed: {type(exc).__name__}: {exc}', error=True
            )

    return wrapper
