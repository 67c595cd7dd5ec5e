"""Latest-frame worker: no backlog, stale drops, error survival, clean stop, latency statistics."""

import threading
import time

import numpy as np
import pytest

from hand_recon_ros.ros.frame_worker import FrameWorker, LatencyStats, LatestFrameSlot


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            return self.t

    def advance(self, dt):
        with self._lock:
            self.t += dt


# ---- LatestFrameSlot -------------------------------------------------------------------------------------


def test_slot_keeps_only_newest_and_counts_replaced():
    slot = LatestFrameSlot()
    assert slot.get(timeout=0) == (False, None)
    assert slot.put('a') is False
    assert slot.put('b') is True
    assert slot.put('c') is True
    assert slot.dropped == 2 and len(slot) == 1
    assert slot.get(timeout=0) == (True, 'c')
    assert slot.get(timeout=0.01) == (False, None)
    assert slot.put(None) is False  # None is a legitimate item
    assert slot.get(timeout=0) == (True, None)


def test_slot_get_wakes_on_put_and_on_close():
    slot = LatestFrameSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5)))
    t.start()
    slot.put(42)
    t.join(5)
    assert got == [(True, 42)]
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5)))
    t.start()
    slot.close()
    t.join(5)
    assert not t.is_alive() and got[-1] == (False, None)


def test_slot_concurrent_puts_account_for_every_item():
    slot = LatestFrameSlot()
    taken = []
    stop = threading.Event()

    def consumer():
        while not stop.is_set() or len(slot):
            ok, item = slot.get(timeout=0.01)
            if ok:
                taken.append(item)

    c = threading.Thread(target=consumer)
    c.start()
    producers = [threading.Thread(target=lambda k=k: [slot.put((k, i)) for i in range(2000)]) for k in range(3)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    stop.set()
    c.join(5)
    assert len(taken) + slot.dropped == 6000
    assert len(set(taken)) == len(taken)


# ---- FrameWorker -----------------------------------------------------------------------------------------


def test_burst_is_processed_without_backlog():
    """100 frames at ~100 Hz into a >= 50 ms process_fn: the newest is always worked on, the rest dropped.

    Nothing here depends on the producer keeping its pace (a loaded machine may stretch the sleeps): every
    assertion is an invariant of a one-slot worker, or a bound derived from the time actually measured.
    """
    latest = {'submitted': -1}
    picks = []  # (frame index, newest index submitted when its processing ended)
    results = []
    lock = threading.Lock()

    def process(idx):
        time.sleep(0.05)
        with lock:
            picks.append((idx, latest['submitted']))
        return idx * 10

    worker = FrameWorker(process, on_result=lambda f, r: results.append((f, r)))
    started = time.monotonic()
    with worker:
        for i in range(100):
            with lock:
                latest['submitted'] = i
                worker.submit(i)
            time.sleep(0.01)
        assert worker.wait_idle(timeout=30)
        span = time.monotonic() - started
        s = worker.stats()
    assert s.received == 100
    assert s.processed + s.dropped_replaced + s.dropped_stale + s.errors == s.received
    assert s.errors == 0 and s.dropped_stale == 0
    # each processing takes >= 50 ms on one thread: at most span / 50 ms of them fit in the measured span
    assert s.processed <= span / 0.05 + 1, (s, span)
    indices = [i for i, _ in picks]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert indices[-1] == 99  # the final frame is never lost
    # No backlog: after each frame the worker takes a frame at least as new as the newest submitted while
    # it was busy (a queue would take the next one in line).
    for (_, newest_at_end), (next_idx, _) in zip(picks, picks[1:]):
        assert next_idx >= newest_at_end, picks
    assert s.dropped_replaced == 100 - s.processed
    assert results == [(i, i * 10) for i in indices]
    assert len(worker.processing_ms) == s.processed
    assert worker.processing_ms.p50 >= 45.0  # sleep(0.05) is a lower bound, not a timing claim


def test_worker_takes_the_newest_frame_after_a_busy_period():
    """Deterministic: frames submitted while the worker is blocked collapse onto the last one."""
    gate = threading.Event()
    started = threading.Event()
    seen = []

    def process(frame):
        seen.append(frame)
        started.set()
        gate.wait(5)
        return frame

    with FrameWorker(process) as worker:
        worker.submit('first')
        assert started.wait(5)
        for k in range(10):
            worker.submit(f'f{k}')
        gate.set()
        assert worker.wait_idle(5)
        s = worker.stats()
    assert seen == ['first', 'f9']
    assert (s.received, s.processed, s.dropped_replaced) == (11, 2, 9)


def test_stale_frames_are_dropped():
    clock = FakeClock()
    seen = []
    with FrameWorker(seen.append, max_age_s=0.2, clock=clock) as worker:
        worker.submit('old', stamp=clock() - 0.5)
        worker.submit('fresh_later', stamp=clock() - 0.1)
        assert worker.wait_idle(5)
        worker.submit('stale', stamp=clock() - 0.3)
        assert worker.wait_idle(5)
        worker.submit('ok')
        assert worker.wait_idle(5)
        s = worker.stats()
    assert 'stale' not in seen and 'old' not in seen and seen[-1] == 'ok'
    assert s.dropped_stale >= 1 and s.received == 4
    assert s.processed + s.dropped_replaced + s.dropped_stale == 4
    assert s.dropped == s.dropped_replaced + s.dropped_stale


def test_max_age_can_change_at_runtime():
    clock = FakeClock()
    seen = []
    with FrameWorker(seen.append, max_age_s=1.0, clock=clock) as worker:
        worker.submit('a', stamp=clock() - 0.5)
        assert worker.wait_idle(5)
        worker.max_age_s = 0.1
        worker.submit('b', stamp=clock() - 0.5)
        assert worker.wait_idle(5)
        s = worker.stats()
    assert seen == ['a'] and s.dropped_stale == 1


def test_exceptions_are_counted_and_the_worker_continues():
    errors = []
    results = []

    def process(frame):
        if frame % 3 == 0:
            raise RuntimeError(f'bad frame {frame}')
        return frame

    with FrameWorker(
        process, on_result=lambda f, r: results.append(r), on_error=lambda f, e: errors.append((f, str(e)))
    ) as worker:
        for i in range(7):
            worker.submit(i)
            assert worker.wait_idle(5)
        assert worker.running
        s = worker.stats()
    assert errors == [(0, 'bad frame 0'), (3, 'bad frame 3'), (6, 'bad frame 6')]
    assert results == [1, 2, 4, 5]
    assert (s.errors, s.processed) == (3, 4)
    assert isinstance(worker.last_error, RuntimeError)


def test_failing_on_result_and_on_error_do_not_kill_the_worker(caplog):
    def bad_callback(*_):
        raise ValueError('callback bug')

    def process(frame):
        if frame == 'boom':
            raise KeyError('x')
        return frame

    with FrameWorker(process, on_result=bad_callback, on_error=bad_callback) as worker:
        worker.submit('boom')
        assert worker.wait_idle(5)
        worker.submit('fine')
        assert worker.wait_idle(5)
        assert worker.running
        s = worker.stats()
    assert s.errors == 2 and s.processed == 0  # on_result raising counts as an error too
    assert any('on_error callback raised' in r.message for r in caplog.records)


def test_stop_joins_cleanly_and_discards_pending():
    gate = threading.Event()
    started = threading.Event()

    def process(frame):
        started.set()
        gate.wait(5)

    worker = FrameWorker(process).start()
    worker.submit(1)
    assert started.wait(5)
    worker.submit(2)  # pending while 1 is in progress
    threading.Timer(0.05, gate.set).start()
    assert worker.stop(timeout=5) is True
    assert not worker.running
    s = worker.stats()
    assert (s.processed, s.discarded_on_stop) == (1, 1)
    assert worker.submit(3) is False
    assert worker.stats().received == 2
    assert not any(t.name == 'frame_worker' and t.is_alive() for t in threading.enumerate())


def test_idle_worker_stops_promptly_and_start_twice_fails():
    worker = FrameWorker(lambda f: f).start()
    with pytest.raises(RuntimeError, match='already started'):
        worker.start()
    assert worker.stop(timeout=2)


def test_bad_arguments():
    with pytest.raises(TypeError, match='callable'):
        FrameWorker(None)
    with pytest.raises(ValueError, match='max_age_s'):
        FrameWorker(lambda f: f, max_age_s=0)
    with pytest.raises(TypeError, match='finish_fn'):
        FrameWorker(lambda f: f, finish_fn=42)


# ---- two stages (pipelined) -----------------------------------------------------------------------------


def test_pipelined_stages_overlap_and_keep_order():
    """The network of frame n+1 runs while frame n is finished; results leave in input order.

    Deterministic: the finisher blocks on frame 'a' until the worker has started 'b', which only a
    worker that does not wait for the finisher lets happen."""
    b_started = threading.Event()
    stages = []
    results = []

    def network(frame):
        stages.append(('network', frame, threading.current_thread().name))
        if frame == 'b':
            b_started.set()
        return frame.upper()

    def finish(frame, intermediate):
        stages.append(('finish', frame, threading.current_thread().name))
        if frame == 'a':
            assert b_started.wait(5), 'the worker waited for the finisher'
        return intermediate + '!'

    worker = FrameWorker(network, on_result=lambda f, r: results.append((f, r)), finish_fn=finish, name='fw')
    with worker:
        assert worker.pipelined
        worker.submit('a')
        # wait until 'a' went to the finisher, then give the worker 'b'
        deadline = time.monotonic() + 5
        while ('finish', 'a', 'fw_finish') not in stages and time.monotonic() < deadline:
            time.sleep(0.001)
        worker.submit('b')
        assert worker.wait_idle(5)
        s = worker.stats()
    assert results == [('a', 'A!'), ('b', 'B!')]
    assert {(kind, name) for kind, _, name in stages} == {('network', 'fw'), ('finish', 'fw_finish')}
    assert (s.received, s.processed, s.errors) == (2, 2, 0)
    assert len(worker.processing_ms) == 2


def test_pipelined_hand_over_waits_for_a_free_finisher():
    """At most two frames in flight: a third frame's network waits until the finisher took the second."""
    release = threading.Event()
    in_network = []
    finished = []

    def network(frame):
        in_network.append(frame)
        return frame

    def finish(frame, intermediate):
        if frame == 1:
            release.wait(5)
        finished.append(frame)

    with FrameWorker(network, finish_fn=finish) as worker:
        worker.submit(1)
        deadline = time.monotonic() + 5
        while in_network != [1] and time.monotonic() < deadline:
            time.sleep(0.001)
        worker.submit(2)  # its network runs, then the worker waits to hand it over
        deadline = time.monotonic() + 5
        while in_network != [1, 2] and time.monotonic() < deadline:
            time.sleep(0.001)
        worker.submit(3)
        worker.submit(4)  # replaces 3 while the worker holds 2
        time.sleep(0.05)
        assert in_network == [1, 2] and finished == []
        assert not worker.wait_idle(0.01)
        release.set()
        assert worker.wait_idle(5)
        s = worker.stats()
    assert finished == [1, 2, 4]
    assert (s.received, s.processed, s.dropped_replaced) == (4, 3, 1)


def test_pipelined_errors_in_either_stage_are_counted_and_both_threads_survive():
    errors = []
    results = []

    def network(frame):
        if frame == 'bad_network':
            raise RuntimeError('network failed')
        return frame

    def finish(frame, intermediate):
        if frame == 'bad_finish':
            raise ValueError('finish failed')
        return intermediate

    with FrameWorker(
        network,
        on_result=lambda f, r: results.append(r),
        on_error=lambda f, e: errors.append((f, type(e).__name__)),
        finish_fn=finish,
    ) as worker:
        for frame in ('ok1', 'bad_network', 'bad_finish', 'ok2'):
            worker.submit(frame)
            assert worker.wait_idle(5)
        assert worker.running
        s = worker.stats()
    assert results == ['ok1', 'ok2']
    assert errors == [('bad_network', 'RuntimeError'), ('bad_finish', 'ValueError')]
    assert (s.errors, s.processed) == (2, 2)


def test_pipelined_stop_finishes_the_frames_in_progress_and_joins_both_threads():
    gate = threading.Event()
    finished = []

    def network(frame):
        if frame == 2:
            gate.wait(5)
        return frame

    worker = FrameWorker(network, finish_fn=lambda f, r: finished.append(f), name='fw_stop').start()
    worker.submit(1)
    assert worker.wait_idle(5)
    worker.submit(2)
    time.sleep(0.02)
    worker.submit(3)  # pending: discarded
    threading.Timer(0.05, gate.set).start()
    assert worker.stop(timeout=5) is True
    s = worker.stats()
    assert finished == [1, 2]
    assert (s.processed, s.discarded_on_stop) == (2, 1)
    assert not any(t.name.startswith('fw_stop') and t.is_alive() for t in threading.enumerate())


# ---- LatencyStats ----------------------------------------------------------------------------------------


def test_latency_stats_percentiles_and_rate():
    stats = LatencyStats(window=1000)
    values = np.arange(1, 101, dtype=float)
    for i, v in enumerate(values):
        stats.add(v, t=10.0 + i * 0.04)  # 25 Hz
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p95 == pytest.approx(np.percentile(values, 95))
    assert stats.p99 == pytest.approx(99.01)
    assert stats.rate_hz() == pytest.approx(25.0)
    # No events for 4 s: rate measured up to 'now' falls.
    assert stats.rate_hz(now=10.0 + 99 * 0.04 + 4.0) == pytest.approx(99 / 7.96)
    summary = stats.summary()
    assert summary['count'] == 100 and summary['max'] == 100.0 and summary['mean'] == pytest.approx(50.5)


def test_latency_stats_window_rolls_and_empty_is_nan():
    stats = LatencyStats(window=10)
    assert np.isnan(stats.p50) and stats.rate_hz() == 0.0
    for i in range(30):
        stats.add(i, t=float(i))
    assert len(stats) == 10 and stats.total == 30
    assert stats.p50 == pytest.approx(24.5)  # only 20..29 remain
    assert stats.rate_hz() == pytest.approx(1.0)
    with pytest.raises(ValueError, match='finite'):
        stats.add(float('nan'))
    with pytest.raises(ValueError, match='window'):
        LatencyStats(window=1)
    stats.clear()
    assert len(stats) == 0
