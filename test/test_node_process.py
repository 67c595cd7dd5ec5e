"""The shared child-process harness (tools/node_process.py) and benchmark timing helper (tools/timing.py)."""

import itertools
import os
import signal
import sys
import textwrap

import pytest

from hand_recon_ros.tools.node_process import (
    NODE_MODULE,
    ChildProcess,
    default_params_file,
    environment,
    node_command,
    stop_all,
)
from hand_recon_ros.tools.timing import time_calls

# Says it is ready, then waits for SIGINT and exits with 0 (like the node's spin loop) or 3 on SIGTERM.
POLITE = textwrap.dedent("""
    import signal, sys, threading, os
    done = threading.Event()
    code = {}
    signal.signal(signal.SIGINT, lambda *_: (code.setdefault('rc', 0), done.set()))
    signal.signal(signal.SIGTERM, lambda *_: (code.setdefault('rc', 3), done.set()))
    print('ready', os.environ.get('NODE_PROCESS_TEST', '-'), flush=True)
    done.wait(60)
    print('stopping', flush=True)
    sys.exit(code.get('rc', 9))
""")
STUBBORN = (
    'import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print("ready", flush=True); ' 'time.sleep(60)'
)


def test_a_child_is_stopped_with_sigint_and_its_log_is_kept(tmp_path):
    child = ChildProcess(
        [sys.executable, '-c', POLITE], tmp_path / 'child.log', env=environment(NODE_PROCESS_TEST='here'), cwd=tmp_path
    )
    assert child.wait_for_log('ready', timeout=30), child.log()
    assert child.poll() is None and child.pid > 0
    assert child.stop() == 0 and not child.killed
    assert child.log().split() == ['ready', 'here', 'stopping']
    assert child.stop() == 0  # a second stop is harmless


def test_another_signal_and_a_child_that_ignores_sigint_is_killed(tmp_path):
    polite = ChildProcess([sys.executable, '-c', POLITE], tmp_path / 'polite.log')
    stubborn = ChildProcess([sys.executable, '-c', STUBBORN], tmp_path / 'stubborn.log')
    assert polite.wait_for_log('ready', 30) and stubborn.wait_for_log('ready', 30)
    assert polite.stop(signal.SIGTERM) == 3
    assert stubborn.stop(timeout=0.5) == -signal.SIGKILL and stubborn.killed


def test_stop_all_signals_every_process_before_waiting(tmp_path):
    children = [ChildProcess([sys.executable, '-c', POLITE], tmp_path / f'c{i}.log') for i in range(3)]
    for child in children:
        assert child.wait_for_log('ready', 30)
    assert stop_all(children) == [0, 0, 0]


def test_wait_for_log_gives_up_when_the_process_ends_without_the_text(tmp_path):
    child = ChildProcess([sys.executable, '-c', 'print("something else")'], tmp_path / 'c.log')
    assert child.wait_for_log('ready', timeout=30) is False
    assert child.stop() == 0 and child.log().strip() == 'something else'
    quiet = ChildProcess([sys.executable, '-c', 'print("x")'])  # no log file: output discarded
    assert quiet.wait() == 0 and quiet.log() == ''


def test_node_command_and_environment(tmp_path, monkeypatch):
    assert node_command('-p', 'a:=1', params_file=tmp_path / 'p.yaml') == [
        sys.executable,
        '-m',
        NODE_MODULE,
        '--ros-args',
        '--params-file',
        str(tmp_path / 'p.yaml'),
        '-p',
        'a:=1',
    ]
    assert node_command('-r', 'x:=y', executable='/opt/bin/hand_recon_node') == [
        '/opt/bin/hand_recon_node',
        '--ros-args',
        '-r',
        'x:=y',
    ]
    assert default_params_file().name == 'hand_recon.yaml' and default_params_file().exists()
    monkeypatch.setenv('NODE_PROCESS_GONE', '1')
    env = environment(NODE_PROCESS_GONE=None, NODE_PROCESS_NEW='2')
    assert 'NODE_PROCESS_GONE' not in env and env['NODE_PROCESS_NEW'] == '2'
    assert env['PATH'] == os.environ['PATH']


def test_time_calls_times_each_call_after_the_warm_up():
    ticks = itertools.count()
    readings = iter([0.0, 0.004, 1.0, 1.002, 2.0, 2.009])  # three timed calls: 4, 2 and 9 ms
    calls = []
    timing = time_calls(lambda: calls.append(next(ticks)), repeats=3, warmup=2, clock=lambda: next(readings))
    assert calls == [0, 1, 2, 3, 4]  # 2 warm-up calls are not timed
    assert timing.seconds == pytest.approx((0.004, 0.002, 0.009))
    assert (timing.best_ms, timing.median_ms) == (pytest.approx(2.0), pytest.approx(4.0))
    with pytest.raises(ValueError):
        time_calls(lambda: None, repeats=0)
