"""Shared fixtures: per-worker ROS environment, a test-side rclpy context, and node subprocesses."""

import contextlib
import os
import time
from pathlib import Path

import pytest

from hand_recon_ros.tools.node_process import NODE_MODULE, ChildProcess, node_command

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
REALIMGS = SHARED / 'realimgs'
PARAMS_FILE = REPO / 'config' / 'hand_recon.yaml'


def _worker_index():
    return int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:])


# Every ROS process of the tests stays on this machine and in its own domain per xdist worker.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# HAND_RECON_TEST_DOMAIN_BASE lets two suites run side by side on one machine without hearing each other.
os.environ['ROS_DOMAIN_ID'] = str(int(os.environ.get('HAND_RECON_TEST_DOMAIN_BASE', '70')) + _worker_index())
os.environ.setdefault('RCUTILS_COLORIZED_OUTPUT', '0')
os.environ.setdefault('PYTHONUNBUFFERED', '1')
os.environ.setdefault('RCUTILS_LOGGING_BUFFERED_STREAM', '0')


@pytest.fixture(autouse=True, scope='session')
def _ros_log_dir(tmp_path_factory):
    os.environ['ROS_LOG_DIR'] = str(tmp_path_factory.mktemp('ros_log'))


@pytest.fixture
def ros(request):
    """A test-side rclpy context + node + executor, torn down even when the test fails."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    node = rclpy.create_node(
        f'test_{request.node.name[:40]}'.replace('[', '_').replace(']', '_').replace('-', '_').replace('.', '_'),
        context=ctx,
    )
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    helper = RosHelper(ctx, node, executor)
    try:
        yield helper
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


class RosHelper:
    def __init__(self, ctx, node, executor):
        self.ctx, self.node, self.executor = ctx, node, executor

    def spin_until(self, predicate, timeout=15.0, what='condition'):
        """Spin until predicate() is true; fail with a clear message at the timeout (never a fixed sleep)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            self.executor.spin_once(timeout_sec=0.05)
        if predicate():
            return
        raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}')

    def spin_for(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def collect(self, msg_type, topic, qos=10):
        """Subscribe and return the list the messages are appended to."""
        received = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received


class NodeProcess(ChildProcess):
    """The node under test as a real subprocess, started with --ros-args like a launch file would."""

    def __init__(self, args, log_path, env=None, module=NODE_MODULE):
        super().__init__(
            node_command(*args, params_file=PARAMS_FILE, module=module),
            log_path,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )


@pytest.fixture
def start_node(tmp_path):
    """Factory: start_node('-p', 'x:=1', ...) -> NodeProcess; every process is stopped at teardown."""
    procs = []

    def _start(*args, env=None, module=NODE_MODULE, name='node'):
        p = NodeProcess(list(args), tmp_path / f'{name}_{len(procs)}.log', env=env, module=module)
        procs.append(p)
        return p

    try:
        yield _start
    finally:
        for p in procs:
            p.stop()


def node_params(*assignments):
    """'name:=value', ... -> the node's command-line arguments ('-p', 'name:=value', ...)."""
    return [arg for assignment in assignments for arg in ('-p', assignment)]


def small_untrained_config(**overrides):
    """A PipelineConfig of the seeded untrained EfficientNet-Lite0 network at 128 px on the CPU (quick to build)."""
    from hand_recon_ros.pipeline import PipelineConfig

    base = dict(weights='untrained', device='cpu', precision='fp32', backbone='efficientnet_lite0', input_size=128)
    return PipelineConfig(**{**base, **overrides})


@contextlib.contextmanager
def in_process_node(**parameters):
    """The node in this process (own rclpy context, this worker's domain), not started (autostart false);
    ``parameters`` are overrides by name. Destroyed and its context shut down on exit."""
    import rclpy
    from rclpy.parameter import Parameter

    from hand_recon_ros.ros.node import HandReconNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    node = None
    try:
        overrides = {'autostart': False, **parameters}
        node = HandReconNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        yield node
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)
