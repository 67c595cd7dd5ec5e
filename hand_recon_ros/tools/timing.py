"""Timing repeated calls for the benchmarks: one helper instead of a private loop in each script."""

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Tuple

__all__ = ['Timing', 'time_calls']


@dataclass(frozen=True)
class Timing:
    """Seconds per timed call (warm-up calls excluded)."""

    seconds: Tuple[float, ...]

    @property
    def best_s(self) -> float:
        return min(self.seconds)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best_ms(self) -> float:
        return 1e3 * self.best_s

    @property
    def median_ms(self) -> float:
        return 1e3 * self.median_s


def time_calls(
    fn: Callable[[], object], repeats: int, warmup: int = 0, clock: Callable[[], float] = time.perf_counter
) -> Timing:
    """Call fn() warmup times untimed, then repeats times, each timed alone with clock (wall time by default;
    time.process_time for CPU time)."""
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        seconds.append(clock() - t0)
    return Timing(tuple(seconds))
