"""A node no command or message can kill: lifecycle requests, parameters and bad input over real DDS.

The node runs as a subprocess (conftest.start_node); every request goes through the real lifecycle and
parameter services, like `ros2 lifecycle set` / `ros2 param set` or a lifecycle manager would send it.
"""

import math
import textwrap

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from hand_recon_ros.msg import HandArray  # noqa: E402

from test_node_e2e import FAST, RELIABLE, assert_clean_exit, make_image, publish_until, wait_ready  # noqa: E402


class Lifecycle:
    def __init__(self, ros, node_name='hand_recon'):
        self.ros = ros
        self.get = ros.node.create_client(GetState, f'/{node_name}/get_state')
        self.change = ros.node.create_client(ChangeState, f'/{node_name}/change_state')
        assert self.get.wait_for_service(30.0) and self.change.wait_for_service(30.0)

    def _call(self, client, request):
        future = client.call_async(request)
        self.ros.spin_until(future.done, timeout=60, what=f'an answer from {client.srv_name}')
        return future.result()

    def state(self):
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, tid=0, label=''):
        return self._call(self.change, ChangeState.Request(transition=Transition(id=tid, label=label))).success

    def wait_state(self, label, timeout=60):
        self.ros.spin_until(lambda: self.state() == label, timeout=timeout, what=f"state '{label}'")


def endpoint_counts(ros):
    return (ros.node.count_publishers('/hand_recon/hands'), ros.node.count_publishers('/diagnostics'))


# From 'active': every transition id that lifecycle_msgs defines and is not deactivate/active_shutdown,
# the callback-result ids, unknown ids, an unknown label and the label of a transition of another state.
INVALID_WHEN_ACTIVE = [
    ('create', Transition.TRANSITION_CREATE, ''),
    ('configure', Transition.TRANSITION_CONFIGURE, ''),
    ('cleanup', Transition.TRANSITION_CLEANUP, ''),
    ('activate', Transition.TRANSITION_ACTIVATE, ''),
    ('unconfigured_shutdown', Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, ''),
    ('inactive_shutdown', Transition.TRANSITION_INACTIVE_SHUTDOWN, ''),
    ('destroy', Transition.TRANSITION_DESTROY, ''),
    ('on_configure_success', Transition.TRANSITION_ON_CONFIGURE_SUCCESS, ''),
    ('on_activate_failure', Transition.TRANSITION_ON_ACTIVATE_FAILURE, ''),
    ('on_error_success', Transition.TRANSITION_ON_ERROR_SUCCESS, ''),
    ('id 99', 99, ''),
    ('id 255', 255, ''),
    ('label bogus', 0, 'bogus'),
    ('label configure', 0, 'configure'),
]


def test_every_invalid_lifecycle_transition_is_answered_and_the_node_survives(ros, start_node):
    node = start_node(*FAST, '-p', 'input_reliability:=reliable')
    lc = Lifecycle(ros)
    lc.wait_state('active')
    for what, tid, label in INVALID_WHEN_ACTIVE:
        assert lc.transition(tid, label) is False, what
        assert lc.state() == 'active', what
    assert node.proc.poll() is None
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    publish_until(ros, pub, make_image(stamp_sec=21), hands)  # still serving

    # from inactive and unconfigured, the transitions of other states are refused too
    assert lc.transition(Transition.TRANSITION_DEACTIVATE) and lc.state() == 'inactive'
    for tid in (
        Transition.TRANSITION_DEACTIVATE,
        Transition.TRANSITION_CONFIGURE,
        Transition.TRANSITION_ACTIVE_SHUTDOWN,
        Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
    ):
        assert lc.transition(tid) is False and lc.state() == 'inactive'
    assert lc.transition(Transition.TRANSITION_CLEANUP) and lc.state() == 'unconfigured'
    for tid in (
        Transition.TRANSITION_ACTIVATE,
        Transition.TRANSITION_DEACTIVATE,
        Transition.TRANSITION_CLEANUP,
        Transition.TRANSITION_INACTIVE_SHUTDOWN,
    ):
        assert lc.transition(tid) is False and lc.state() == 'unconfigured'
    # a valid shutdown ends in 'finalized': the process stays up, answers, and refuses everything
    assert lc.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) and lc.state() == 'finalized'
    for tid in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, 7):
        assert lc.transition(tid) is False and lc.state() == 'finalized'
    assert node.proc.poll() is None
    log = assert_clean_exit(node)
    assert log.count('refused: not available in state') == len(INVALID_WHEN_ACTIVE) + 4 + 4 + 3, log[-3000:]
    assert "lifecycle transition configure (id 1) refused: not available in state 'active'" in log


FAILING_NODE = textwrap.dedent('''
    """HandReconNode whose first configure raises after its publishers exist and first activate raises
    after the model is loaded: the cleanup paths under test, with the real node code around them."""
    import sys
    from hand_recon_ros.ros import node as hr
    from hand_recon_ros.ros.spin import run_until_signal

    class FailingOnce(hr.HandReconNode):
        failures = {'configure': 1, 'activate': 1}

        def create_timer(self, period, callback, *args, **kwargs):
            if self.failures['configure'] and period == self.p('diagnostics_period_s'):
                self.failures['configure'] -= 1
                raise RuntimeError('injected configure failure after the publishers were created')
            return super().create_timer(period, callback, *args, **kwargs)

        def _start_worker(self):
            if self.failures['activate']:
                self.failures['activate'] -= 1
                raise RuntimeError('injected activate failure after the model was loaded')
            return super()._start_worker()

    sys.exit(run_until_signal(FailingOnce, on_started=hr._autostart, on_stopping=lambda n: n._stop_worker()))
''')


def test_failed_configure_and_activate_log_why_and_leave_no_duplicate_endpoints(ros, start_node, tmp_path):
    import os

    (tmp_path / 'failing_node.py').write_text(FAILING_NODE)
    path = os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')])
    node = start_node(*FAST, '-p', 'input_reliability:=reliable', module='failing_node', env={'PYTHONPATH': path})
    lc = Lifecycle(ros)
    ros.spin_until(lambda: 'configure failed' in node.log(), timeout=60, what='the configure failure')
    assert lc.state() == 'unconfigured'
    ros.spin_for(1.0)  # discovery: the destroyed publishers must be gone, not only unseen yet
    assert endpoint_counts(ros) == (0, 0)
    log = node.log()
    assert 'configure failed: RuntimeError: injected configure failure' in log and 'Traceback' in log
    assert 'the node stays unconfigured' in log

    assert lc.transition(Transition.TRANSITION_CONFIGURE) and lc.state() == 'inactive'
    ros.spin_until(lambda: endpoint_counts(ros) == (1, 1), what='one publisher on ~/hands and /diagnostics')
    assert lc.transition(Transition.TRANSITION_ACTIVATE) is False
    assert lc.state() == 'inactive'
    assert 'activate failed: RuntimeError: injected activate failure' in node.log()
    assert lc.transition(Transition.TRANSITION_ACTIVATE) and lc.state() == 'active'
    ros.spin_for(1.0)
    assert endpoint_counts(ros) == (1, 1)
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    publish_until(ros, pub, make_image(stamp_sec=22), hands)
    # cleanup + configure again: still one of each
    assert lc.transition(Transition.TRANSITION_DEACTIVATE) and lc.transition(Transition.TRANSITION_CLEANUP)
    assert lc.transition(Transition.TRANSITION_CONFIGURE)
    ros.spin_for(1.0)
    assert endpoint_counts(ros) == (1, 1)
    assert node.stop() == 0  # the injected failures' tracebacks are in the log on purpose


def test_autostart_off_waits_for_a_lifecycle_manager(ros, start_node):
    node = start_node(*FAST, '-p', 'autostart:=false')
    lc = Lifecycle(ros)
    assert lc.state() == 'unconfigured'
    assert 'autostart is off' in node.log()
    assert lc.transition(label='configure') and lc.transition(label='activate') and lc.state() == 'active'
    assert_clean_exit(node)


def _set(ros, client, name, value):
    from rclpy.parameter import Parameter

    future = client.set_parameters([Parameter(name, value=value)])
    ros.spin_until(future.done, what=f'set_parameters {name}')
    return future.result().results[0]


def test_every_parameter_refuses_bad_values_at_run_time_and_the_node_keeps_serving(ros, start_node):
    from rclpy.parameter_client import AsyncParameterClient

    from hand_recon_ros.ros.parameters import SPECS

    from test_parameters import bad_values

    node = start_node(*FAST, '-p', 'input_reliability:=reliable')
    lc = Lifecycle(ros)
    lc.wait_state('active')
    client = AsyncParameterClient(ros.node, 'hand_recon')
    assert client.wait_for_services(15.0)
    future = client.get_parameters(sorted(SPECS))
    ros.spin_until(future.done, what='get_parameters')
    before = [v.__getstate__() if hasattr(v, '__getstate__') else str(v) for v in future.result().values]
    tried = 0
    for name, spec in sorted(SPECS.items()):
        for value in bad_values(spec):
            result = _set(ros, client, name, value)
            assert not result.successful, (name, value)
            assert result.reason, (name, value)
            tried += 1
        if spec.applies == 'runtime':  # a good value is still taken
            assert _set(ros, client, name, spec.default).successful, name
    assert tried > 150
    future = client.get_parameters(sorted(SPECS))
    ros.spin_until(future.done, what='get_parameters')
    assert [v.__getstate__() if hasattr(v, '__getstate__') else str(v) for v in future.result().values] == before
    assert node.proc.poll() is None and lc.state() == 'active'
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    publish_until(ros, pub, make_image(stamp_sec=23), hands)
    # a runtime change that is valid takes effect on the next frame
    assert _set(ros, client, 'fallback_fov_deg', 90).successful  # an integer for a float parameter
    hands.clear()
    publish_until(ros, pub, make_image(stamp_sec=24), hands)
    assert hands[-1].camera_k[0] == pytest.approx(160.0, rel=1e-4)  # 320 px, 90 deg: fx = 160
    assert_clean_exit(node)


BAD_START = [
    ('diagnostics_period_s', '0'),
    ('smoothing.min_cutoff', '0.0'),
    ('marker_lifetime_s', '-1.0'),
    ('input_depth', '100000'),
    ('max_hands', '-3'),
    ('fallback_fov_deg', '0.0'),
    ('refinement.gate_m', '-5.0'),
]


def test_bad_start_up_values_are_logged_and_replaced_by_defaults(ros, tmp_path):
    import conftest

    # Wrong types must come from the first parameter file: rcl ignores a later override that changes the
    # type (checked), so this node runs with its own file instead of config/hand_recon.yaml.
    own = yaml.safe_load(conftest.PARAMS_FILE.read_text())
    own['/**']['ros__parameters'].update(
        {'detection_threshold': math.nan, 'max_input_age_s': 'half', 'publish_markers': 3}
    )
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump(own))
    args = [a for name, value in BAD_START for a in ('-p', f'{name}:={value}')]
    conftest.PARAMS_FILE, original = params, conftest.PARAMS_FILE
    try:
        node = conftest.NodeProcess([*FAST, '-p', 'input_reliability:=reliable', *args], tmp_path / 'node.log')
    finally:
        conftest.PARAMS_FILE = original
    try:
        _check_bad_start_up(ros, node)
    finally:
        node.stop()


def _check_bad_start_up(ros, node):
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    lc = Lifecycle(ros)
    lc.wait_state('active')
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    publish_until(ros, pub, make_image(stamp_sec=25), hands)
    ros.spin_until(lambda: len(diags) >= 5, timeout=30, what='five diagnostics')
    values = {kv.key: kv.value for kv in diags[-1].status[0].values}
    for name in [n for n, _ in BAD_START] + ['detection_threshold', 'max_input_age_s', 'publish_markers']:
        assert name in values['parameter_problems'], name
    assert diags[-1].status[0].level == diags[-1].status[0].WARN
    # diagnostics_period_s 0 fell back to 1 s: measured from the messages' own stamps, not wall time (the
    # median interval: the timer runs one overdue call after the model load blocked the executor)
    stamps = [d.header.stamp.sec + d.header.stamp.nanosec * 1e-9 for d in diags]
    assert float(np.median(np.diff(stamps))) == pytest.approx(1.0, abs=0.2), np.diff(stamps)
    log = assert_clean_exit(node)
    assert log.count('parameter refused at start-up') == len(BAD_START) + 3, log[-3000:]
    assert 'diagnostics_period_s must be >= 0.05' in log


def test_full_hd_camera_info_with_vga_images_gives_scaled_intrinsics(ros, start_node):
    from sensor_msgs.msg import CameraInfo

    from test_camera_info_scaling import full_hd_info

    node = start_node(*FAST, '-p', 'input_reliability:=reliable')
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    info_pub = ros.node.create_publisher(CameraInfo, '/camera_info', RELIABLE)
    wait_ready(ros, pub)
    ros.spin_until(lambda: info_pub.get_subscription_count() > 0, what='the camera_info subscription')
    # CameraInfo and image travel on two topics: re-send both until a result comes after the CameraInfo
    # arrived (the fallback FOV would give fx = 554 for 640 px, the scaled calibration 466.7)
    ros.spin_until(
        lambda: (
            info_pub.publish(full_hd_info()),
            pub.publish(make_image(26, width=640, height=480)),
            ros.spin_for(0.3),
        )
        and hands
        and abs(hands[-1].camera_k[0] - 1400 / 3) < 1e-6,
        timeout=30,
        what='a result computed with the scaled CameraInfo',
    )
    k = np.asarray(hands[-1].camera_k).reshape(3, 3)
    np.testing.assert_allclose(k, [[1400 / 3, 0, 320], [0, 1400 * 480 / 1080, 240], [0, 0, 1]], rtol=1e-6)
    log = assert_clean_exit(node)
    assert 'scaling the intrinsics' in log


def _diag_values(diags):
    return {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}


def test_a_flood_of_distinct_bad_messages_gives_a_bounded_number_of_log_lines(ros, start_node):
    import time

    node = start_node(
        *FAST,
        '-p',
        'input_reliability:=reliable',
        '-p',
        'input_depth:=100',
        '-p',
        'max_input_age_s:=0.0',
        '-p',
        'diagnostics_period_s:=0.2',
    )
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    sent = 2000
    pub = ros.node.create_publisher(Image, '/image', QoSProfile(depth=sent, reliability=ReliabilityPolicy.RELIABLE))
    wait_ready(ros, pub)
    started = time.monotonic()
    for i in range(sent):
        msg = make_image(stamp_sec=30, width=4, height=4)
        msg.encoding = f'enc{i:04d}' + 'x' * (i % 50)  # every text different, sender-controlled
        pub.publish(msg)
        if i % 20 == 19:
            ros.spin_for(0.02)
    # (the reader's history may replace some under this flood: what arrives is what counts)
    last = {}

    def settled():
        values = _diag_values(diags)
        key = (values.get('received'), values.get('bad_input'))
        done = key == last.get('key') and int(values.get('bad_input', 0)) > 0
        last['key'] = key
        return done

    ros.spin_until(lambda: (ros.spin_for(0.5), settled())[1], timeout=120, what='the flood to be processed')
    # The worker keeps only the newest frame, so how many of the flood it decoded depends on the machine's load.
    # Then, paced: one distinct bad message at a time, each waited for, until 20 have been decoded.
    i = 0
    while int(_diag_values(diags).get('bad_input', 0)) < 20:
        before = int(_diag_values(diags).get('bad_input', 0))
        msg = make_image(stamp_sec=32, width=4, height=4)
        msg.encoding = f'paced{i:04d}'
        i += 1
        pub.publish(msg)
        ros.spin_until(
            lambda before=before: (ros.spin_for(0.1), int(_diag_values(diags).get('bad_input', 0)) > before)[1],
            timeout=30,
            what='a paced bad message to be counted',
        )
    publish_until(ros, pub, make_image(stamp_sec=31), hands)  # still serving
    elapsed = time.monotonic() - started
    values = _diag_values(diags)
    log = assert_clean_exit(node)
    lines = log.count('bad input image dropped')
    # one kind of problem: one line at once, then at most one per 5 s, however fast or slow the machine ran
    assert 1 <= lines <= math.ceil(elapsed / 5.0) + 1, (lines, elapsed, values)
    assert int(values['bad_input']) >= 20, values  # each a different text: the old text-keyed throttle logged each
    assert 'bad_input.encoding=' in values['problems'], values
    assert int(values['problem_log_lines']) == lines


def test_frames_lost_before_the_callback_are_estimated_from_stamp_gaps(ros, start_node):
    node = start_node(
        *FAST, '-p', 'input_reliability:=reliable', '-p', 'input_depth:=100', '-p', 'diagnostics_period_s:=0.2'
    )
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    wait_ready(ros, pub)
    frames = [i for i in range(40) if not 20 <= i < 25]  # a 30 Hz camera whose frames 20..24 never arrive
    for i in frames:
        msg = make_image(width=8, height=8)
        t = 2000.0 + i / 30
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int(round((t - int(t)) * 1e9))
        pub.publish(msg)
        ros.spin_for(0.01)
    ros.spin_until(
        lambda: int(_diag_values(diags).get('received', 0)) >= len(frames), timeout=30, what='every frame received'
    )
    ros.spin_for(0.5)
    values = _diag_values(diags)
    assert values['received'] == str(len(frames))
    assert values['input_lost_estimate'] == '5', values
    assert float(values['input_period_ms']) == pytest.approx(1000 / 30, abs=0.06)  # printed to 0.1 ms
    assert_clean_exit(node)


def _peak_rss_mib(pid):
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM')) / 1024


def test_compressed_bombs_are_refused_by_the_node_without_memory_growth(ros, start_node):
    import cv2
    from sensor_msgs.msg import CompressedImage

    from test_image_conversion import _jpeg_bomb, _tiff

    node = start_node(
        *FAST,
        '-p',
        'input_transport:=compressed',
        '-p',
        'input_reliability:=reliable',
        '-p',
        'diagnostics_period_s:=0.2',
    )
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(CompressedImage, '/image/compressed', RELIABLE)
    wait_ready(ros, pub)
    good = CompressedImage(
        format='jpeg',
        data=cv2.imencode('.jpg', np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8))[
            1
        ].tobytes(),
    )
    good.header.stamp.sec = 40
    publish_until(ros, pub, good, hands)  # model warm: its memory is in the peak already
    peak_before = _peak_rss_mib(node.proc.pid)
    for data, kind in ((_jpeg_bomb(), 'bad_input.size'), (_tiff(4000, 3000), 'bad_input.format_refused')):
        bomb = CompressedImage(format='jpeg', data=data)
        ros.spin_until(
            lambda bomb=bomb, kind=kind: (pub.publish(bomb), ros.spin_for(0.3))
            and f'{kind}=' in _diag_values(diags).get('problems', ''),
            timeout=20,
            what=f'the node to count {kind}',
        )
    good.header.stamp.sec = 41
    hands.clear()
    publish_until(ros, pub, good, hands)
    growth = _peak_rss_mib(node.proc.pid) - peak_before
    assert growth < 150, f'peak memory grew by {growth:.0f} MiB'  # decoding the JPEG bomb alone: 1.1 GiB
    log = assert_clean_exit(node)
    assert '20000x20000 pixels exceeds the limit' in log and 'format tiff refused' in log
