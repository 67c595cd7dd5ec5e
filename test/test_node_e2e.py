"""End-to-end tests of the node as a subprocess, over real DDS (ros2-from-pypi.md §10.3)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from hand_recon_ros.msg import HandArray, HandModelInfo  # noqa: E402

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
FAST = (
    '-p',
    'weights:=untrained',
    '-p',
    'device:=cpu',
    '-p',
    'network.backbone:=resnet18',
    '-p',
    'network.input_size:=128',
    '-p',
    'num_threads:=1',
)


def make_image(stamp_sec=100, frame_id='cam_optical', width=320, height=240, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = Image()
    msg.header.stamp.sec = stamp_sec
    msg.header.stamp.nanosec = 123456
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding, msg.step = height, width, 'bgr8', width * 3
    msg.data = img.tobytes()
    return msg


def make_camera_info(width=320, height=240, f=300.0):
    info = CameraInfo()
    info.width, info.height = width, height
    info.k = np.array([f, 0, width / 2, 0, f, height / 2, 0, 0, 1], float)
    info.p = np.array([f, 0, width / 2, 0, 0, f, height / 2, 0, 0, 0, 1, 0], float)
    return info


def wait_ready(ros, pub, topic='/hand_recon/hands'):
    ros.spin_until(lambda: pub.get_subscription_count() > 0, what=f'the node to subscribe {pub.topic_name}')
    ros.spin_until(lambda: ros.node.count_publishers(topic) > 0, what=f'a publisher on {topic}')


def wait_reliable_inputs(ros, *topics):
    """input_reliability auto re-makes the node's input subscriptions reliable once it sees reliable publishers (a
    0.5 s timer): a sample sent before can be lost on the way (a first frame without its CameraInfo). Wait for it."""

    def reliable():
        infos = [i for topic in topics for i in ros.node.get_subscriptions_info_by_topic(topic)]
        return len(infos) >= len(topics) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)

    ros.spin_until(reliable, what=f'the node to subscribe {", ".join(topics)} reliable')


def publish_until(ros, pub, msg, received, timeout=30.0, what='a hand message', also=()):
    """Re-publish (fresh discovery can miss the first sample) until something arrives.

    ``also``: (publisher, message) pairs sent before each image, like a camera's CameraInfo."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not received:
        for other_pub, other_msg in also:
            other_pub.publish(other_msg)
        pub.publish(msg)
        ros.spin_for(0.3)
    assert received, f'no {what} within {timeout:.0f} s'


def assert_clean_exit(node_proc):
    rc = node_proc.stop()
    log = node_proc.log()
    assert rc == 0, f'node exited with {rc}:\n{log[-3000:]}'
    assert 'Traceback' not in log, log[-3000:]
    return log


def test_outputs_copy_input_header_and_model_info_is_latched(ros, start_node):
    node = start_node(*FAST, '-r', 'image:=/test_cam/image_raw', '-r', 'camera_info:=/test_cam/camera_info')
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    smoothed = ros.collect(HandArray, '/hand_recon/hands_smoothed', RELIABLE)
    markers = ros.collect(MarkerArray, '/hand_recon/markers', RELIABLE)
    pub = ros.node.create_publisher(Image, '/test_cam/image_raw', RELIABLE)
    info_pub = ros.node.create_publisher(CameraInfo, '/test_cam/camera_info', RELIABLE)
    wait_ready(ros, pub)
    wait_reliable_inputs(ros, '/test_cam/image_raw', '/test_cam/camera_info')
    image, camera_info = make_image(stamp_sec=1234), make_camera_info()

    def with_camera_info(messages):
        # a frame the node took before any CameraInfo reached it (a sample can be lost while the input
        # subscriptions are re-made for the publishers' QoS) is answered with the fallback K: send both again
        return [m for m in messages if m.camera_k[0] == pytest.approx(300.0)]

    ros.spin_until(
        lambda: (info_pub.publish(camera_info), pub.publish(image), ros.spin_for(0.3))
        and with_camera_info(hands)
        and with_camera_info(smoothed)
        and markers,
        timeout=30.0,
        what='hands, smoothed hands and markers of a frame with its CameraInfo',
    )

    for msg in (with_camera_info(hands)[0], with_camera_info(smoothed)[0]):
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 123456)
        assert msg.header.frame_id == 'cam_optical'
        assert (msg.image_width, msg.image_height) == (320, 240)
        for hand in msg.hands:
            joints = np.array([[p.x, p.y, p.z] for p in hand.joints])
            assert joints.shape == (21, 3) and np.isfinite(joints).all()
            assert hand.depth_source == hand.DEPTH_CAMERA_INFO
    assert not any(m.smoothed for m in hands) and all(m.smoothed for m in smoothed)
    for marker in markers[0].markers:
        assert marker.header.frame_id == 'cam_optical'
        assert marker.header.stamp.sec == 1234

    # The model info is latched: a subscriber that arrives late still gets it.
    infos = ros.collect(HandModelInfo, '/hand_recon/hand_model_info', LATCHED)
    ros.spin_until(lambda: infos, what='the latched model info')
    info = infos[0]
    assert info.hand_model_is_standin and info.hand_model == 'standin'
    assert list(info.joint_names)[:2] == ['wrist', 'thumb_mcp'] and len(info.joint_parents) == 21
    assert len(info.faces_right) == 1538 * 3 and info.num_vertices == 778
    assert info.device == 'cpu'
    assert_clean_exit(node)


def test_parameters_from_yaml_and_cli_and_input_qos(ros, start_node):
    from rclpy.parameter_client import AsyncParameterClient

    node = start_node(*FAST, '-p', 'detection_threshold:=0.5')
    ros.spin_until(lambda: ('hand_recon', '/') in ros.node.get_node_names_and_namespaces(), what='the node name')
    client = AsyncParameterClient(ros.node, 'hand_recon')
    assert client.wait_for_services(15.0)
    future = client.get_parameters(['detection_threshold', 'fallback_fov_deg', 'input_reliability'])
    ros.spin_until(future.done, what='get_parameters')
    values = [p.double_value for p in future.result().values[:2]] + [future.result().values[2].string_value]
    assert values == [0.5, 60.0, 'auto']  # CLI override after the YAML; YAML value; default QoS mode

    # Runtime update of a runtime parameter is accepted; a bad value and a model parameter are refused.
    from rclpy.parameter import Parameter

    future = client.set_parameters([Parameter('detection_threshold', value=0.6)])
    ros.spin_until(future.done, what='set_parameters')
    assert future.result().results[0].successful
    future = client.set_parameters([Parameter('detection_threshold', value=1.5)])
    ros.spin_until(future.done, what='set_parameters')
    assert not future.result().results[0].successful
    future = client.set_parameters([Parameter('device', value='cuda')])
    ros.spin_until(future.done, what='set_parameters')
    assert not future.result().results[0].successful

    ros.spin_until(
        lambda: ros.node.get_publishers_info_by_topic('/hand_recon/hands')
        and ros.node.get_subscriptions_info_by_topic('/image'),
        what='the node endpoints',
    )
    # 'auto' starts best effort (compatible with every publisher) while no image publisher exists.
    sub_info = ros.node.get_subscriptions_info_by_topic('/image')[0]
    assert sub_info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert_clean_exit(node)


@pytest.mark.parametrize(
    'publisher, expected',
    [
        (ReliabilityPolicy.RELIABLE, ReliabilityPolicy.RELIABLE),
        (ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.BEST_EFFORT),
    ],
)
def test_auto_input_qos_matches_the_publishers(ros, start_node, publisher, expected):
    node = start_node(*FAST)
    ros.node.create_publisher(Image, '/image', QoSProfile(depth=1, reliability=publisher))

    def node_reliability():
        infos = ros.node.get_subscriptions_info_by_topic('/image')
        return infos[0].qos_profile.reliability if infos else None

    ros.spin_until(lambda: node_reliability() == expected, what=f'the node to subscribe {expected}')
    ros.spin_for(1.5)  # and to stay there
    assert node_reliability() == expected
    log = assert_clean_exit(node)
    if expected == ReliabilityPolicy.RELIABLE:
        assert 'input_reliability auto' in log


@pytest.mark.parametrize('pipelined', ['true', 'false'])
def test_burst_against_slow_inference_drops_frames_instead_of_queueing(ros, start_node, pipelined):
    """A burst into a slow network is not queued, with the network and the publishing on two threads or one.
    No assertion assumes the publisher keeps a rate (a loaded machine stretches it): the checks are the node's
    own accounting, the order of the outputs and a latency bound in units of the inference time the node itself
    measured."""
    node = start_node(
        '-p',
        f'pipelined:={pipelined}',
        '-p',
        'weights:=untrained',
        '-p',
        'device:=cpu',
        '-p',
        'network.backbone:=resnet50',
        '-p',
        'network.input_size:=256',
        '-p',
        'num_threads:=1',
        '-p',
        'diagnostics_period_s:=0.2',
        '-p',
        'detection_threshold:=0.01',
        '-p',
        'input_reliability:=reliable',
        '-p',
        'input_depth:=100',
        '-p',
        'max_input_age_s:=0.0',
    )
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    sent = 100
    pub = ros.node.create_publisher(Image, '/image', QoSProfile(depth=sent, reliability=ReliabilityPolicy.RELIABLE))
    wait_ready(ros, pub)
    publish_until(ros, pub, make_image(stamp_sec=1, width=160, height=120), hands)  # warm up the model
    hands.clear()
    for i in range(sent):
        pub.publish(make_image(stamp_sec=1000 + i, width=160, height=120, seed=i))
        ros.spin_for(0.002)
    ros.spin_until(
        lambda: hands and hands[-1].header.stamp.sec == 1000 + sent - 1,
        timeout=120,
        what='the output to catch up with the newest input',
    )
    # (warm-up frames still queued when the burst began may answer after it: only the burst's order is checked)
    stamps = [h.header.stamp.sec for h in hands if h.header.stamp.sec >= 1000]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

    def values():
        return {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}

    def settled():  # everything received was processed or dropped
        v = values()
        return (
            v
            and int(v['worker_received'])
            == sum(int(v[f'worker_{k}']) for k in ('processed', 'dropped_replaced', 'dropped_stale', 'errors'))
            and int(v['received']) >= sent
        )

    ros.spin_until(settled, timeout=30, what='the worker counters to settle')
    v = values()
    assert int(v['worker_errors']) == 0
    # every input this test sent that has no output was dropped by the worker (none lost unaccounted)
    assert int(v['worker_dropped_replaced']) + int(v['worker_dropped_stale']) >= sent - len(stamps)
    # No backlog: a frame waits at most for the one in progress. A queue of 100 frames would make the
    # last ones wait ~100 inference times.
    inference_ms = float(v['processing_ms_p50'])
    latencies = [h.processing_time_ms for h in hands]
    assert max(latencies) < 20 * inference_ms, (latencies, inference_ms)
    assert_clean_exit(node)


def test_large_best_effort_frames_get_a_transport_hint_and_diagnostics_name_the_middleware(ros, start_node):
    node = start_node(
        *FAST,
        '-p',
        'input_reliability:=best_effort',
        '-p',
        'diagnostics_period_s:=0.2',
        env={'FASTRTPS_DEFAULT_PROFILES_FILE': ''},
    )
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    wait_ready(ros, pub)
    small = make_image(stamp_sec=5, width=320, height=240)  # 225 KiB: fits the default segment
    publish_until(ros, pub, small, hands)
    ros.spin_until(lambda: diags, what='diagnostics')
    values = {kv.key: kv.value for kv in diags[-1].status[0].values}
    assert values['rmw'] == 'rmw_fastrtps_cpp' and values['fastdds_profile'] == 'none (Fast DDS defaults)'
    assert values['num_threads'] == '1'  # FAST asks for one torch thread; the diagnostics say what runs
    assert values['network_runner'] == 'traced'  # the default: frozen TorchScript graphs
    hands.clear()
    # 640x480 bgr8 (900 KiB) over best effort: frames may be lost, so re-send until one is answered.
    publish_until(ros, pub, make_image(stamp_sec=6, width=640, height=480), hands, timeout=60)
    log = assert_clean_exit(node)
    assert log.count('best-effort input frames of 0.9 MiB') == 1, log[-3000:]
    assert 'fastdds_large_frames.xml' in log


def test_default_torch_threads_leave_a_core_to_the_ros_side(ros, start_node):
    import os
    import subprocess
    import sys

    # FAST without its num_threads: the default 0 resolves to torch's default less one core (at least 1)
    args = FAST[:-2]
    assert 'num_threads:=1' not in args
    env = {'OMP_NUM_THREADS': '3'}  # torch's default in the node process (capped at the cores it has)
    probe = 'import torch; print(torch.get_num_threads())'
    default = int(
        subprocess.run(
            [sys.executable, '-c', probe], env={**os.environ, **env}, capture_output=True, text=True, check=True
        ).stdout
    )
    # and eager PyTorch asked for (network.trace false)
    node = start_node(*args, '-p', 'diagnostics_period_s:=0.2', '-p', 'network.trace:=false', env=env)
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    ros.spin_until(lambda: any(kv.key == 'num_threads' for d in diags for kv in d.status[0].values), what='diagnostics')
    values = {kv.key: kv.value for d in diags for kv in d.status[0].values}
    assert values['num_threads'] == str(max(1, default - 1))
    assert values['network_runner'] == 'eager'
    log = assert_clean_exit(node)
    assert f'{max(1, default - 1)} torch threads' in log
    assert 'network traced' not in log
    assert 'pipelined (network and publishing on two threads)' in log  # the default


def test_reliable_input_option(ros, start_node):
    node = start_node(*FAST, '-p', 'input_reliability:=reliable')
    ros.spin_until(lambda: ros.node.get_subscriptions_info_by_topic('/image'), what='the image subscription')
    assert ros.node.get_subscriptions_info_by_topic('/image')[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert_clean_exit(node)


def test_bad_inputs_are_counted_and_the_node_keeps_serving(ros, start_node):
    node = start_node(*FAST, '-p', 'diagnostics_period_s:=0.2')
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    bad = {}
    m = make_image()
    m.encoding = 'xyz99'
    bad['unknown encoding'] = m
    m = make_image()
    m.width = 0
    m.step = 0
    m.data = b''
    bad['zero size'] = m
    m = make_image()
    m.step = 10
    bad['step < width * 3'] = m
    m = make_image()
    m.data = bytes(m.data)[:1000]
    bad['truncated'] = m
    m = make_image()
    m.width, m.height, m.step = 100000, 100000, 300000
    m.data = b'\0' * 300000
    bad['absurd size'] = m

    def bad_count():
        values = {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}
        return int(values.get('bad_input', 0))

    ros.spin_until(lambda: diags, what='diagnostics')
    for what, m in bad.items():
        before = bad_count()
        # Re-send until counted: the first samples after discovery may be lost (best-effort input).
        ros.spin_until(
            lambda m=m, before=before: (pub.publish(m), ros.spin_for(0.2), bad_count() > before)[2],
            timeout=10,
            what=f'the node to count a bad image ({what})',
        )
    publish_until(ros, pub, make_image(stamp_sec=77), hands)
    assert hands[-1].header.stamp.sec == 77
    assert bad_count() >= len(bad)
    log = assert_clean_exit(node)
    assert 'bad input image dropped' in log and 'encoding' in log.lower()


def test_compressed_input_and_uncalibrated_camera_info(ros, start_node):
    import cv2

    node = start_node(*FAST, '-p', 'input_transport:=compressed')
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(CompressedImage, '/image/compressed', RELIABLE)
    info_pub = ros.node.create_publisher(CameraInfo, '/camera_info', RELIABLE)
    wait_ready(ros, pub)
    info = make_camera_info()
    info.k = np.zeros(9)
    info.p = np.zeros(12)
    ros.spin_until(lambda: info_pub.get_subscription_count() > 0, what='the camera_info subscription')
    img = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    msg = CompressedImage(format='jpeg', data=cv2.imencode('.jpg', img)[1].tobytes())
    msg.header.stamp.sec = 5
    msg.header.frame_id = 'cam'
    publish_until(ros, pub, msg, hands, also=[(info_pub, info)])
    assert hands[0].header.frame_id == 'cam'
    assert all(h.depth_source == h.DEPTH_FALLBACK_FOV for h in hands[0].hands)
    # Fallback intrinsics: 60 deg horizontal FOV for 320 px -> fx = 160 / tan(30 deg).
    assert hands[0].camera_k[0] == pytest.approx(160 / np.tan(np.radians(30)), rel=1e-4)
    assert 'fallback field of view' in assert_clean_exit(node)


def test_lifecycle_transitions(ros, start_node):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    node = start_node(*FAST, '-p', 'autostart:=false')
    get_state = ros.node.create_client(GetState, '/hand_recon/get_state')
    change = ros.node.create_client(ChangeState, '/hand_recon/change_state')
    assert get_state.wait_for_service(15.0) and change.wait_for_service(15.0)

    def call(client, request):
        future = client.call_async(request)
        ros.spin_until(future.done, what=f'{client.srv_name}')
        return future.result()

    def transition(tid):
        return call(change, ChangeState.Request(transition=Transition(id=tid))).success

    assert call(get_state, GetState.Request()).current_state.label == 'unconfigured'
    assert transition(Transition.TRANSITION_CONFIGURE)
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    for _ in range(3):
        pub.publish(make_image())
        ros.spin_for(0.3)
    assert not hands, 'an inactive node must not publish'
    assert transition(Transition.TRANSITION_ACTIVATE)
    assert call(get_state, GetState.Request()).current_state.label == 'active'
    publish_until(ros, pub, make_image(stamp_sec=9), hands)
    assert transition(Transition.TRANSITION_DEACTIVATE)
    ros.spin_for(0.5)
    count = len(hands)
    for _ in range(3):
        pub.publish(make_image(stamp_sec=10))
        ros.spin_for(0.3)
    assert len(hands) == count, 'outputs must stop after deactivate'
    assert transition(Transition.TRANSITION_CLEANUP)
    assert call(get_state, GetState.Request()).current_state.label == 'unconfigured'
    assert_clean_exit(node)


CONSUMER = textwrap.dedent("""
    import sys, time, threading, signal
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from hand_recon_ros.msg import HandArray
    assert 'torch' not in sys.modules, 'importing the messages must not import torch'
    rclpy.init()
    node = rclpy.create_node('planner_stub')
    got = []
    node.create_subscription(HandArray, '/hand_recon/hands', got.append,
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print('CONSUMER_GOT', len(got), got[0].header.stamp.sec if got else -1, flush=True)
    print('TORCH_LOADED', 'torch' in sys.modules, flush=True)
    node.destroy_node(); rclpy.try_shutdown()
""")


def test_message_only_consumer_process(ros, start_node, tmp_path):
    node = start_node(*FAST)
    script = tmp_path / 'consumer.py'
    script.write_text(CONSUMER)
    consumer = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(tmp_path),
        env=dict(os.environ),
    )
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    ros.spin_until(lambda: ros.node.count_subscribers('/hand_recon/hands') >= 1, what='the consumer')
    import time

    deadline = time.monotonic() + 40
    while consumer.poll() is None and time.monotonic() < deadline:
        pub.publish(make_image(stamp_sec=4242))
        ros.spin_for(0.3)
    out, _ = consumer.communicate(timeout=30)
    assert 'CONSUMER_GOT 1 4242' in out or 'CONSUMER_GOT' in out and ' 4242' in out, out
    assert 'TORCH_LOADED False' in out, out
    assert_clean_exit(node)


def _encoded(encoding, width=64, height=48, seed=0):
    """A test image in any supported encoding (padded rows for one of them), built without our converter."""
    from hand_recon_ros.ros.image_conversion import ENCODINGS

    rng = np.random.default_rng(seed)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0)
    if encoding in ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'):
        row = rng.integers(0, 255, width * 2, dtype=np.uint8)
        msg.step = width * 2
        msg.data = np.tile(row, height).tobytes()
        return msg
    dtype, channels = ENCODINGS[encoding]
    if np.dtype(dtype).kind == 'f':
        arr = rng.random((height, width, channels)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(max(info.min, 0), min(info.max, 60000), (height, width, channels)).astype(dtype)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    pad = 8 if encoding == 'rgb8' else 0  # padded rows: step > width * bytes per pixel
    rows = arr.reshape(height, row_bytes // np.dtype(dtype).itemsize).view(np.uint8).reshape(height, row_bytes)
    rows = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    msg.step = row_bytes + pad
    msg.data = rows.tobytes()
    return msg


def test_every_supported_encoding_gives_a_result(ros, start_node):
    from hand_recon_ros.ros.image_conversion import ENCODINGS

    node = start_node(*FAST, '-p', 'max_input_age_s:=0.0')
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    for k, encoding in enumerate(sorted(ENCODINGS)):
        msg = _encoded(encoding)
        msg.header.stamp.sec = 500 + k
        got = []
        ros.spin_until(
            lambda msg=msg, k=k: (
                pub.publish(msg),
                ros.spin_for(0.15),
                any(h.header.stamp.sec == 500 + k for h in hands),
            )[2],
            timeout=15,
            what=f'a result for a {encoding} image',
        )
        got = [h for h in hands if h.header.stamp.sec == 500 + k]
        assert (got[0].image_width, got[0].image_height) == (64, 48), encoding
    assert 'Traceback' not in node.log()
    assert_clean_exit(node)


def test_corrupt_jpeg_and_nan_intrinsics_are_survived(ros, start_node):
    import cv2

    node = start_node(*FAST, '-p', 'input_transport:=compressed', '-p', 'diagnostics_period_s:=0.2')
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    pub = ros.node.create_publisher(CompressedImage, '/image/compressed', RELIABLE)
    info_pub = ros.node.create_publisher(CameraInfo, '/camera_info', RELIABLE)
    wait_ready(ros, pub)
    ros.spin_until(lambda: info_pub.get_subscription_count() > 0 and diags, what='camera_info + diagnostics')
    good = cv2.imencode('.jpg', np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8))[1]
    corrupt = CompressedImage(format='jpeg', data=good.tobytes()[:200] + b'\x00' * 50)
    garbage = CompressedImage(format='jpeg', data=b'not an image at all')

    def bad_count():
        return int({kv.key: kv.value for kv in diags[-1].status[0].values}.get('bad_input', 0))

    for msg in (corrupt, garbage):
        before = bad_count()
        ros.spin_until(
            lambda msg=msg, before=before: (pub.publish(msg), ros.spin_for(0.2), bad_count() > before)[2],
            timeout=10,
            what='the node to count a corrupt JPEG',
        )
    info = make_camera_info(160, 120)
    info.k = np.full(9, np.nan)
    ok = CompressedImage(format='jpeg', data=good.tobytes())
    ok.header.stamp.sec = 31
    publish_until(ros, pub, ok, hands, also=[(info_pub, info)])
    assert hands[-1].header.stamp.sec == 31
    assert np.isfinite(hands[-1].camera_k).all()  # NaN K replaced by the fallback
    log = assert_clean_exit(node)
    assert 'bad input image dropped' in log and 'no usable intrinsics' in log


def test_default_node_redraws_hands_from_the_landmark_crop_stage(ros, start_node):
    """The default configuration (shipped model, landmarks.enabled true): a two-hand frame whose hands MediaPipe's
    crop network reads (synthetic seed 4242, frame 1; test_landmark_hand_update.py) comes back with both hands
    redrawn from their crops, keypoints the projection of the joints through the CameraInfo's K."""
    from hand_recon_ros.msg import Hand
    from hand_recon_ros.ros.conversions import hand_array_to_numpy
    from hand_recon_train.synth import SynthConfig, SynthDataset

    raw = SynthDataset(SynthConfig(image_size=640, supersample=1), seed=4242, length=2).raw(1)
    image = np.ascontiguousarray(raw['image'][80:560])
    K = raw['K'].astype(np.float64).copy()
    K[1, 2] -= 80.0
    node = start_node('-p', 'device:=cpu', '-p', 'diagnostics_period_s:=0.2')  # the rest: config/hand_recon.yaml
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    info_pub = ros.node.create_publisher(CameraInfo, '/camera_info', RELIABLE)
    wait_ready(ros, pub)
    wait_reliable_inputs(ros, '/image', '/camera_info')
    msg = Image()
    msg.header.stamp.sec, msg.header.frame_id = 77, 'cam_optical'
    msg.height, msg.width, msg.encoding, msg.step = 480, 640, 'bgr8', 640 * 3
    msg.data = image.tobytes()
    info = make_camera_info(640, 480)
    info.k = K.reshape(-1)
    publish_until(ros, pub, msg, hands, timeout=60.0, also=[(info_pub, info)])
    out = hands[-1]
    assert len(out.hands) == 2 and {h.handedness for h in out.hands} == {Hand.LEFT, Hand.RIGHT}
    assert all(h.refined_factors & Hand.REFINED_LANDMARKS for h in out.hands)
    for hand in hand_array_to_numpy(out):
        joints = np.asarray(hand['joints'], np.float64)
        projected = (joints @ K.T)[:, :2] / (joints @ K.T)[:, 2:]
        np.testing.assert_allclose(hand['keypoints_2d'], projected, atol=0.05)

    def stages():
        for d in reversed(diags):
            for kv in d.status[0].values:
                if kv.key == 'stage_ms_p50' and kv.value != 'none':
                    return dict(part.rsplit(' ', 1) for part in kv.value.split(', '))
        return {}

    # /diagnostics says where the time goes, the crop stage included
    ros.spin_until(lambda: 'landmarks' in stages(), what='stage timings with the landmarks stage in /diagnostics')
    assert float(stages()['landmarks']) > 0 and float(stages()['network']) > 0

    # video (landmarks.tracking, on by default): the next frames' crops follow the hands of the frame before
    for stamp in (78, 79, 80):
        msg.header.stamp.sec = stamp
        info_pub.publish(info)
        pub.publish(msg)
        ros.spin_until(lambda stamp=stamp: any(h.header.stamp.sec == stamp for h in hands), what=f'frame {stamp}')
    assert all(len(h.hands) == 2 for h in hands if h.header.stamp.sec >= 78)

    def tracking():
        for d in reversed(diags):
            for kv in d.status[0].values:
                if kv.key == 'landmarks_per_frame' and kv.value != 'none':
                    return {k: float(v) for k, v in (part.rsplit(' ', 1) for part in kv.value.split(', '))}
        return {}

    ros.spin_until(lambda: tracking().get('followed_crops', 0) > 0, what='followed crops in /diagnostics')
    counts = tracking()
    assert counts['redrawn_hands'] == 2.0 and counts['palm_runs'] < 1.0
    # landmarks.runtime auto: onnxruntime where the crop network runs fp32 on the CPU (no native bf16 here)
    from hand_recon_ros.runtime import cpu_has_native_bf16

    runner = next(kv.value for kv in diags[-1].status[0].values if kv.key == 'landmark_runner')
    assert runner == ('torch' if cpu_has_native_bf16() else 'onnxruntime')
    assert_clean_exit(node)


def test_an_rgbd_camera_places_the_hands_by_its_depth_image(ros, start_node):
    """depth.enabled: the node matches each colour frame to the depth image stamped with it (16UC1 mm, as a
    RealSense driver publishes aligned depth), places the hands it reads at the measured distance
    (Hand.DEPTH_IMAGE), and places by the hand model when the depth is missing or unreadable, counting both."""
    from hand_recon_ros.msg import Hand
    from hand_recon_ros.ros.conversions import hand_array_to_numpy
    from hand_recon_ros.ros.image_conversion import numpy_to_imgmsg

    from conftest import node_params
    from test_depth_placement import synthetic_rgbd

    image, K, depth, truth = synthetic_rgbd()
    node = start_node(
        *node_params('device:=cpu', 'diagnostics_period_s:=0.2', 'depth.enabled:=true', 'landmarks.tracking:=false')
    )
    hands = ros.collect(HandArray, '/hand_recon/hands', RELIABLE)
    diags = ros.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    info_pub = ros.node.create_publisher(CameraInfo, '/camera_info', RELIABLE)
    depth_pub = ros.node.create_publisher(Image, '/depth/image', RELIABLE)
    wait_ready(ros, pub)
    wait_reliable_inputs(ros, '/image', '/camera_info', '/depth/image')
    info = make_camera_info(640, 480)
    info.k = K.reshape(-1)

    def depth_value():
        for d in reversed(diags):
            for kv in d.status[0].values:
                if kv.key == 'depth':
                    return kv.value
        return ''

    def received_depth():
        value = depth_value()
        return int(dict(part.rsplit(' ', 1) for part in value.split(', '))['received']) if value else -1

    ros.spin_until(lambda: received_depth() == 0, what='/diagnostics with the depth counts')

    def frame(sec, depth_msg=None):
        msg = numpy_to_imgmsg(image, 'bgr8')
        msg.header.stamp.sec, msg.header.frame_id = sec, 'cam_optical'
        if depth_msg is not None:  # the depth (and CameraInfo) in the node before the colour frame
            depth_msg.header = msg.header
            before = received_depth()
            ros.spin_until(
                lambda: (info_pub.publish(info), depth_pub.publish(depth_msg), ros.spin_for(0.3))
                and received_depth() > before,
                what='the node to receive the depth image',
            )

        def answer():
            return next((h for h in hands if h.header.stamp.sec == sec), None)

        ros.spin_until(
            lambda: (info_pub.publish(info), pub.publish(msg), ros.spin_for(0.5)) and answer() is not None,
            timeout=60.0,
            what=f'frame {sec}',
        )
        return {h['side']: h for h in hand_array_to_numpy(answer())}, answer()

    millimetres = np.round(np.clip(depth, 0.0, 65.0) * 1000.0).astype(np.uint16)
    placed, msg = frame(40, numpy_to_imgmsg(millimetres, '16UC1'))
    assert {h.depth_source for h in msg.hands} == {Hand.DEPTH_IMAGE}
    assert abs(placed['left']['joints'][0][2] - truth['left'][0, 2]) < 0.015  # the hand in front: within 15 mm
    for hand in placed.values():  # placed along the rays: the keypoints stay the projections of the joints
        joints = np.asarray(hand['joints'], np.float64)
        np.testing.assert_allclose(hand['keypoints_2d'], (joints @ K.T)[:, :2] / (joints @ K.T)[:, 2:], atol=0.05)
    unmatched, msg = frame(41)  # no depth image stamped near it: the hand model places the hands
    assert {h.depth_source for h in msg.hands} == {Hand.DEPTH_CAMERA_INFO}
    bad, msg = frame(42, numpy_to_imgmsg(np.zeros((480, 640, 3), np.uint8), 'rgb8'))  # not a depth encoding
    assert {h.depth_source for h in msg.hands} == {Hand.DEPTH_CAMERA_INFO}

    def counts():
        return {k: int(v) for k, v in (part.rsplit(' ', 1) for part in depth_value().split(', '))}

    ros.spin_until(lambda: counts()['bad'] >= 1, what='the bad depth image counted in /diagnostics')
    # (a colour frame re-sent until answered counts again)
    assert counts()['matched'] >= 1 and counts()['unmatched'] >= 1 and counts()['hands placed'] >= 2
    log = assert_clean_exit(node)
    assert 'no depth image on' in log and 'depth image not used: unsupported depth encoding' in log
