"""What moving camera frames between two ROS 2 processes costs, with Fast DDS defaults and with the shipped profile.

An echo process republishes every sensor_msgs/Image it receives; this process publishes one frame, waits for the
echo, and repeats (round trip = two transfers of the frame + rclpy (de)serialisation on both sides). Per frame size,
reliable and best effort, once with Fast DDS's default transports (512 KiB shared-memory segment: larger frames
go over UDP loopback fragments) and once with config/fastdds_large_frames.xml (16 MiB segment) in both processes.
A best-effort frame that does not come back within 0.5 s counts as lost. No inference: transport only.
Usage: .venv/bin/python benchmarks/bench_dds_transport.py [--frames 40] [--sizes 320x240 640x480 1280x720 1920x1080]
       [--quick]
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hand_recon_ros.tools.node_process import ChildProcess, environment

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / 'config' / 'fastdds_large_frames.xml'

ECHO = """
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from hand_recon_ros.ros.spin import run_until_signal


def make_node():
    node = rclpy.create_node('bench_dds_echo')
    for name, rel in (('reliable', ReliabilityPolicy.RELIABLE), ('best_effort', ReliabilityPolicy.BEST_EFFORT)):
        qos = QoSProfile(depth=2, reliability=rel)
        pub = node.create_publisher(Image, f'/bench_dds/{name}/pong', qos)
        node.create_subscription(Image, f'/bench_dds/{name}/ping', pub.publish, qos)
    return node


# the node's own signal-safe loop: rclpy's default SIGINT handling can race an executor under load
run_until_signal(make_node)
"""


def measure(profile, sizes, frames):
    """One echo process and one rclpy context per transport setting (Fast DDS reads the profile per process)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    # No pipes to the echo (no log file): if it outlived us it would hold our parent's pipes open.
    echo = ChildProcess(
        [sys.executable, '-c', ECHO], env=environment(FASTRTPS_DEFAULT_PROFILES_FILE=str(profile) if profile else None)
    )
    results = {}
    try:
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        node = rclpy.create_node('bench_dds_ping', context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        for name, rel in (('reliable', ReliabilityPolicy.RELIABLE), ('best_effort', ReliabilityPolicy.BEST_EFFORT)):
            qos = QoSProfile(depth=2, reliability=rel)
            pub = node.create_publisher(Image, f'/bench_dds/{name}/ping', qos)
            back = []
            node.create_subscription(
                Image, f'/bench_dds/{name}/pong', lambda m, b=back: b.append(time.monotonic()), qos
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                pub.get_subscription_count() and node.count_publishers(f'/bench_dds/{name}/pong')
            ):
                ex.spin_once(timeout_sec=0.05)
            end = time.monotonic() + 1.0  # let discovery finish (locators) before timing
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.05)
            print(f'[child] {name}: matched', file=sys.stderr, flush=True)
            for width, height in sizes:
                data = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes()
                msg = Image(height=height, width=width, encoding='bgr8', step=width * 3, data=data)
                rtts, lost = [], 0
                for i in range(frames + 3):
                    n = len(back)
                    t0 = time.monotonic()
                    pub.publish(msg)
                    limit = t0 + (0.5 if name == 'best_effort' else 10.0)
                    while len(back) == n and time.monotonic() < limit:
                        ex.spin_once(timeout_sec=0.01)
                    if i >= 3:  # the first frames allocate
                        if len(back) > n:
                            rtts.append((back[-1] - t0) * 1e3)
                        else:
                            lost += 1
                    end = time.monotonic() + 0.02  # a camera-like gap; late echoes drain here
                    while time.monotonic() < end:
                        ex.spin_once(timeout_sec=0.005)
                    del back[:]
                results[(name, width, height)] = (rtts, lost)
        print('[child] measured; shutting down', file=sys.stderr, flush=True)
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        print('[child] rclpy shut down', file=sys.stderr, flush=True)
    finally:
        echo.stop(timeout=10)
        if echo.killed:  # seen rarely under load: a DDS participant that never finishes exiting
            print('note: the echo process did not exit within 10 s of SIGINT; killed', file=sys.stderr)
    return results


def child_main(args):
    import faulthandler
    import json

    # A transport that hangs must not hang the bench: dump every thread's stack and exit after the budget.
    faulthandler.dump_traceback_later(args.child_budget_s, exit=True)
    sizes = [tuple(int(v) for v in s.split('x')) for s in args.sizes]
    res = measure(os.environ.get('FASTRTPS_DEFAULT_PROFILES_FILE', ''), sizes, args.frames)
    print(json.dumps([[k[0], k[1], k[2], v[0], v[1]] for k, v in res.items()]), flush=True)
    print('[child] done', file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=40)
    parser.add_argument('--sizes', nargs='*', default=['320x240', '640x480', '1280x720', '1920x1080'])
    parser.add_argument('--quick', action='store_true', help='smoke run: 3 frames of 640x480')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--child-budget-s', type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.frames, args.sizes = 3, ['640x480']
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', '68')
    if args.child:
        return child_main(args)
    import json

    rows = {}
    for label, profile in (('defaults', ''), ('profile', str(PROFILE))):
        env = dict(os.environ)
        env.pop('FASTRTPS_DEFAULT_PROFILES_FILE', None)
        if profile:
            env['FASTRTPS_DEFAULT_PROFILES_FILE'] = profile
        budget = 60 + 25 * len(args.sizes) * (1 + args.frames / 10)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                '--child',
                '--frames',
                str(args.frames),
                '--child-budget-s',
                str(budget),
                '--sizes',
                *args.sizes,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=budget + 60,
        )
        if out.returncode != 0:
            raise RuntimeError(f'{label} run failed ({out.returncode}):\n{out.stderr[-6000:]}')
        for name, w, h, rtts, lost in json.loads(out.stdout.strip().splitlines()[-1]):
            rows[(name, w, h, label)] = (rtts, lost)
            p = f'{np.percentile(rtts, 50):.2f} / {np.percentile(rtts, 95):.2f}' if rtts else '-'
            print(f'{label:8s} {name:11s} {w}x{h}: round trip p50/p95 {p} ms, lost {lost}/{args.frames}', flush=True)
    print(
        f'\nsensor_msgs/Image bgr8 round trip between two processes (publish -> echo -> received), {args.frames} '
        f'frames per row, 20 ms apart; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; '
        'best effort: no echo within 0.5 s = lost\n'
    )
    print(
        '| QoS | frame | MiB | defaults: round trip p50 / p95 ms | lost | shipped profile: round trip p50 / p95 ms '
        '| lost |'
    )
    print('|---|---|---|---|---|---|---|')
    for name in ('reliable', 'best_effort'):
        for s in args.sizes:
            w, h = (int(v) for v in s.split('x'))
            cells = []
            for label in ('defaults', 'profile'):
                rtts, lost = rows[(name, w, h, label)]
                cells.append(f'{np.percentile(rtts, 50):.2f} / {np.percentile(rtts, 95):.2f}' if rtts else '-')
                cells.append(f'{lost}/{args.frames}')
            print(f'| {name} | {w}x{h} | {w * h * 3 / 2 ** 20:.2f} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
