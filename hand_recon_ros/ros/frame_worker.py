"""Latest-frame processing without a backlog (pure threading, no ROS).

The subscription callback only puts the newest frame into a one-element slot; a single worker thread
always takes the newest one. A frame that is replaced before the worker gets to it, or that is older
than ``max_age_s`` when picked, is dropped and counted, so latency stays bounded by one processing time
plus one frame period however slow the network is.

With a ``finish_fn`` the work is a two-stage pipeline: the worker thread runs ``process_fn`` (the network) and
hands its result to a finisher thread that runs ``finish_fn`` (hands, refinement, publishing) while the worker
already runs the next frame. The hand-over waits until the finisher is free, so at most two frames are in
flight, results leave in input order, and nothing queues up.
"""

import logging
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import numpy as np

__all__ = ['LatestFrameSlot', 'FrameWorker', 'FrameWorkerStats', 'LatencyStats']

_log = logging.getLogger(__name__)


class LatestFrameSlot:
    """Thread-safe holder of at most one pending item; a newer put() replaces (and drops) the older."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store item as the pending one; return True if it replaced an item nobody took."""
        with self._cond:
            replaced = self._has_item
            if replaced:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cond.notify()
            return replaced

    def get(self, timeout: Optional[float] = None) -> Tuple[bool, Any]:
        """Take the pending item: (True, item), or (False, None) on timeout or after close()."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout):
                return False, None
            if not self._has_item:
                return False, None
            item, self._item, self._has_item = self._item, None, False
            return True, item

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until an item is pending (without taking it) or the slot is closed."""
        with self._cond:
            return self._cond.wait_for(lambda: self._has_item or self._closed, timeout)

    def take_pending(self) -> Tuple[bool, Any]:
        """Remove the pending item without waiting (used on shutdown)."""
        return self.get(timeout=0)

    def close(self) -> None:
        """Wake every waiting get(); later gets return the remaining item, then (False, None)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return int(self._has_item)


class LatencyStats:
    """Rolling window of samples (e.g. latency in ms) with percentiles and the sample rate in Hz."""

    def __init__(self, window: int = 1000, clock: Callable[[], float] = time.monotonic):
        if window < 2:
            raise ValueError(f'window must be >= 2, got {window}')
        self._values: Deque[float] = deque(maxlen=window)
        self._times: Deque[float] = deque(maxlen=window)
        self._clock = clock
        self._lock = threading.Lock()
        self.total = 0

    def add(self, value: float, t: Optional[float] = None) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f'sample must be finite, got {value}')
        t = self._clock() if t is None else float(t)
        with self._lock:
            self._values.append(value)
            self._times.append(t)
            self.total += 1

    def tick(self, t: Optional[float] = None) -> None:
        """Record an event with no value (for pure rate measurement)."""
        self.add(0.0, t)

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def percentile(self, q: float) -> float:
        """q in [0, 100]; NaN while the window is empty."""
        with self._lock:
            values = np.fromiter(self._values, float, len(self._values))
        return float(np.percentile(values, q)) if values.size else float('nan')

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    def rate_hz(self, now: Optional[float] = None) -> float:
        """Events per second over the window; 0 with fewer than two events.

        With ``now`` the span runs up to now, so the rate decays when events stop arriving (a stalled
        input reads as a falling rate, not as the last good value).
        """
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            first, last, n = self._times[0], self._times[-1], len(self._times)
        end = max(last, now) if now is not None else last
        span = end - first
        return (n - 1) / span if span > 0 else 0.0

    def summary(self, now: Optional[float] = None) -> Dict[str, float]:
        with self._lock:
            values = np.fromiter(self._values, float, len(self._values))
        if values.size:
            p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
            mean, vmax = float(values.mean()), float(values.max())
        else:
            p50 = p95 = p99 = mean = vmax = float('nan')
        return {
            'count': self.total,
            'p50': p50,
            'p95': p95,
            'p99': p99,
            'mean': mean,
            'max': vmax,
            'rate_hz': self.rate_hz(now),
        }

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._times.clear()


@dataclass
class FrameWorkerStats:
    received: int = 0
    processed: int = 0  # process_fn (and finish_fn) returned (on_result was called)
    errors: int = 0  # process_fn, finish_fn or on_result raised
    dropped_replaced: int = 0  # a newer frame arrived before the worker took this one
    dropped_stale: int = 0  # older than max_age_s when the worker took it
    discarded_on_stop: int = 0  # pending when stop() was called

    @property
    def dropped(self) -> int:
        return self.dropped_replaced + self.dropped_stale

    def as_dict(self) -> Dict[str, int]:
        d = asdict(self)
        d['dropped'] = self.dropped
        return d


class FrameWorker:
    """One worker thread that processes the newest submitted frame (and, optionally, a finisher thread).

    process_fn(frame) -> result runs on the worker thread; on_result(frame, result) and
    on_error(frame, exc) are called there too. Nothing raised by them stops the worker.
    With finish_fn(frame, intermediate) -> result, process_fn's return value goes to finish_fn on a second
    thread, and on_result / on_error of that stage are called there.
    Frame age is ``clock() - stamp`` where stamp is given to submit() (default: clock() at submit,
    i.e. the receive time); pass image stamps with a matching clock to cut on acquisition age.
    """

    def __init__(
        self,
        process_fn: Callable[[Any], Any],
        on_result: Optional[Callable[[Any, Any], None]] = None,
        on_error: Optional[Callable[[Any, BaseException], None]] = None,
        max_age_s: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = 'frame_worker',
        stats_window: int = 500,
        finish_fn: Optional[Callable[[Any, Any], Any]] = None,
    ):
        if not callable(process_fn):
            raise TypeError('process_fn must be callable')
        if finish_fn is not None and not callable(finish_fn):
            raise TypeError('finish_fn must be callable')
        if max_age_s is not None and not max_age_s > 0:
            raise ValueError(f'max_age_s must be > 0 or None, got {max_age_s}')
        self._process_fn = process_fn
        self._finish_fn = finish_fn
        self._on_result = on_result
        self._on_error = on_error
        self.max_age_s = max_age_s  # may be changed at runtime (dynamic parameter)
        self._clock = clock
        self._name = name
        self._slot = LatestFrameSlot()
        self._lock = threading.Lock()
        self._stats = FrameWorkerStats()
        self._busy = False
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # the hand-over to the finisher: one item at most, given only while the finisher is free
        self._handoff: Optional[Tuple[Any, Any, float]] = None
        self._finishing = False  # an item is handed over or being finished
        self._handoff_cond = threading.Condition(self._lock)
        self._finisher: Optional[threading.Thread] = None
        # time from pick to result (both stages), and age of a frame when the worker picked it (both ms)
        self.processing_ms = LatencyStats(stats_window, clock)
        self.pick_age_ms = LatencyStats(stats_window, clock)
        self.input_rate = LatencyStats(stats_window, clock)
        self.last_error: Optional[BaseException] = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> 'FrameWorker':
        if self._thread is not None:
            raise RuntimeError('FrameWorker already started')
        if self._finish_fn is not None:
            self._finisher = threading.Thread(target=self._finish_loop, name=f'{self._name}_finish', daemon=True)
            self._finisher.start()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    @property
    def pipelined(self) -> bool:
        return self._finish_fn is not None

    def stop(self, timeout: Optional[float] = 5.0) -> bool:
        """Stop after the frame(s) in progress (if any); the pending frame is discarded. True if joined."""
        self._stop.set()
        self._slot.close()
        with self._handoff_cond:
            self._handoff_cond.notify_all()
        joined = True
        deadline = None if timeout is None else time.monotonic() + timeout
        # the worker first: a frame it hands over on its way out is still finished
        for thread in (self._thread, self._finisher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                joined = joined and not thread.is_alive()
        ok, _ = self._slot.take_pending()
        if ok:
            with self._lock:
                self._stats.discarded_on_stop += 1
                self._idle.notify_all()
        return joined

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def __enter__(self) -> 'FrameWorker':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- producer side -----------------------------------------------------------------------------------
    def submit(self, frame: Any, stamp: Optional[float] = None) -> bool:
        """Hand a frame to the worker (never blocks). Returns False if the worker is stopped."""
        if self._stop.is_set():
            return False
        now = self._clock()
        stamp = now if stamp is None else float(stamp)
        with self._lock:
            self._stats.received += 1
            replaced = self._slot.put((frame, stamp))
            if replaced:
                self._stats.dropped_replaced += 1
        self.input_rate.tick(now)
        return True

    def stats(self) -> FrameWorkerStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return FrameWorkerStats(**asdict(self._stats))

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until nothing is pending or in progress (tests, shutdown). True if idle."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy and not self._finishing and len(self._slot) == 0, timeout)

    # -- worker side -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            # Taking the item and marking busy under one lock keeps wait_idle() exact.
            with self._lock:
                ok, item = self._slot.get(timeout=0)
                self._busy = ok
                if not ok:
                    self._idle.notify_all()
            if not ok:
                self._slot.wait(timeout=0.1)
                continue
            try:
                self._handle(*item)
            finally:
                with self._lock:
                    self._busy = False
                    self._idle.notify_all()
        with self._lock:
            self._idle.notify_all()

    def _handle(self, frame: Any, stamp: float) -> None:
        age_s = self._clock() - stamp
        max_age = self.max_age_s
        if max_age is not None and age_s > max_age:
            with self._lock:
                self._stats.dropped_stale += 1
            return
        self.pick_age_ms.add(max(age_s, 0.0) * 1e3)
        t0 = time.perf_counter()
        try:
            result = self._process_fn(frame)
        except Exception as exc:  # the worker must survive anything the pipeline throws
            self._failed(frame, exc)
            return
        if self._finish_fn is None:
            self._complete(frame, result, t0)
        elif not self._hand_over(frame, result, t0):
            with self._lock:
                self._stats.discarded_on_stop += 1

    def _complete(self, frame: Any, result: Any, t0: float) -> None:
        """The frame's last stage returned: time it, call on_result, count it."""
        try:
            self.processing_ms.add((time.perf_counter() - t0) * 1e3)
            if self._on_result is not None:
                self._on_result(frame, result)
        except Exception as exc:
            self._failed(frame, exc)
            return
        with self._lock:
            self._stats.processed += 1

    def _failed(self, frame: Any, exc: BaseException) -> None:
        with self._lock:
            self._stats.errors += 1
        self.last_error = exc
        if self._on_error is not None:
            try:
                self._on_error(frame, exc)
            except Exception:
                _log.exception('on_error callback raised')
        else:
            _log.exception('frame processing failed', exc_info=exc)

    # -- finisher side (pipelined) ---------------------------------------------------------------------
    def _hand_over(self, frame: Any, intermediate: Any, t0: float) -> bool:
        """Give the finisher this frame once it is free; False when stopped while waiting."""
        with self._handoff_cond:
            while self._finishing:
                if self._stop.is_set() and not (self._finisher is not None and self._finisher.is_alive()):
                    return False
                self._handoff_cond.wait(0.1)
            self._handoff, self._finishing = (frame, intermediate, t0), True
            self._handoff_cond.notify_all()
        return True

    def _finish_loop(self) -> None:
        assert self._finish_fn is not None
        while True:
            with self._handoff_cond:
                # a frame handed over before stop() is still finished (it is in progress)
                self._handoff_cond.wait_for(lambda: self._handoff is not None or self._stop.is_set())
                if self._handoff is None:
                    if self._thread is not None and self._thread.is_alive():
                        self._handoff_cond.wait(0.1)  # the worker may still hand over its frame in progress
                        continue
                    break
                (frame, intermediate, t0), self._handoff = self._handoff, None
            try:
                try:
                    result = self._finish_fn(frame, intermediate)
                except Exception as exc:
                    self._failed(frame, exc)
                else:
                    self._complete(frame, result, t0)
            finally:
                with self._handoff_cond:
                    self._finishing = False
                    self._handoff_cond.notify_all()
                    self._idle.notify_all()
