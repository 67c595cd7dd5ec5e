"""Warning throttle keyed on the kind of problem, and the stamp-gap estimate of frames lost before the node."""

import math

import pytest

from hand_recon_ros.ros.input_gaps import StampGapEstimator
from hand_recon_ros.ros.problem_log import KINDS, ProblemLog


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_distinct_texts_of_one_kind_are_one_line_per_period():
    lines, clock = [], FakeClock()
    log = ProblemLog(lines.append, lines.append, period_s=5.0, clock=clock)
    for i in range(2000):
        log.report('bad_input.encoding', f'unsupported image encoding enc{i:04d}')
    assert len(lines) == 1 and log.counts == {'bad_input.encoding': 2000}
    clock.t = 5.0
    log.report('bad_input.encoding', 'unsupported image encoding again')
    assert len(lines) == 2 and '1999 more bad_input.encoding' in lines[-1]
    # 20 s of reports every 10 ms: one line per 5 s period
    for _ in range(2000):
        clock.t += 0.01
        log.report('bad_input.encoding', f'x{clock.t}')
    assert 2 + 3 <= len(lines) <= 2 + 4  # 20 s / 5 s, give or take the float clock at the edges


def test_kinds_are_a_fixed_set_and_long_texts_are_cut():
    lines = []
    log = ProblemLog(lines.append, lines.append, clock=FakeClock())
    for i in range(500):
        log.report(f'sender text {i}', 'x' * 10**6)  # unknown kinds all count as 'other'
    assert set(log.counts) == {'other'} and len(lines) == 1 and len(lines[0]) < 400
    for kind in KINDS:
        log.report(kind, kind)
    assert len(log.counts) == len(KINDS) and len(lines) == len(KINDS)  # 'other' was already logged


def test_stamp_gaps_estimate_lost_frames():
    est = StampGapEstimator()
    t = 100.0
    for _ in range(20):
        t += 1 / 30
        assert est.update(t) == 0
    assert est.period_s == pytest.approx(1 / 30)
    t += 6 / 30  # 5 frames missing
    assert est.update(t) == 5
    for _ in range(5):
        t += 1 / 30
        est.update(t)
    t += 10.0  # the stream paused: not losses
    est.update(t)
    est.update(t)  # a repeated stamp
    est.update(0.0)  # zero stamps carry no timing
    assert (est.lost, est.pauses, est.out_of_order) == (5, 1, 1)


def test_no_estimate_before_the_period_is_known_and_a_rate_change_is_followed():
    est = StampGapEstimator()
    assert est.update(1.0) == 0 and est.update(1.5) == 0 and math.isnan(est.period_s)
    t = 1.5
    for _ in range(40):  # the camera switches to 10 Hz: after a few gaps the median follows
        t += 0.1
        est.update(t)
    lost_before = est.lost
    for _ in range(10):
        t += 0.1
        est.update(t)
    assert est.lost == lost_before and est.period_s == pytest.approx(0.1)
