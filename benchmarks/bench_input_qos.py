"""Which input QoS loses how many camera frames while the node is busy with inference (measured, not assumed).

For each (publisher reliability, node input_reliability) pair: start the node, publish 640x480 bgr8 frames at a
camera-like rate for a fixed time, and count what the node received (its diagnostics) and answered.
With --fastdds-profile FILE both the publisher (this process) and the node run with that Fast DDS XML profile
(FASTRTPS_DEFAULT_PROFILES_FILE), e.g. config/fastdds_large_frames.xml, whose 16 MiB shared-memory segment keeps
frames out of UDP fragments.
Usage: .venv/bin/python benchmarks/bench_input_qos.py [--seconds 6] [--rate 15] [--size 640x480]
       [--fastdds-profile config/fastdds_large_frames.xml]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

from hand_recon_ros.tools.node_process import ChildProcess, node_command

REPO = Path(__file__).resolve().parents[1]


def run_case(pub_reliability, node_reliability, seconds, rate, width, height, extra):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from hand_recon_ros.msg import HandArray

    proc = ChildProcess(
        node_command(
            '-p',
            f'input_reliability:={node_reliability}',
            '-p',
            'device:=cpu',
            '-p',
            'diagnostics_period_s:=0.5',
            *extra,
            params_file=REPO / 'config' / 'hand_recon.yaml',
        ),
        cwd=REPO,
    )
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('bench_input_qos', context=ctx)
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    rel = {'reliable': ReliabilityPolicy.RELIABLE, 'best_effort': ReliabilityPolicy.BEST_EFFORT}[pub_reliability]
    pub = node.create_publisher(Image, '/image', QoSProfile(depth=5, reliability=rel))
    answered, diags = [], []
    node.create_subscription(
        HandArray, '/hand_recon/hands', answered.append, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    )
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (pub.get_subscription_count() and diags):
            ex.spin_once(timeout_sec=0.05)
        time.sleep(2.0 if node_reliability == 'auto' else 0.5)  # let 'auto' adapt to this publisher
        ex.spin_once(timeout_sec=0.01)
        img = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes()
        sent, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            msg = Image(height=height, width=width, encoding='bgr8', step=width * 3, data=img)
            msg.header.stamp.sec = 1000 + sent
            pub.publish(msg)
            sent += 1
            next_t = t0 + sent / rate
            while time.monotonic() < next_t:
                ex.spin_once(timeout_sec=max(0.0, next_t - time.monotonic()))
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
        values = {kv.key: kv.value for kv in diags[-1].status[0].values}
        stamps = {m.header.stamp.sec for m in answered if m.header.stamp.sec >= 1000}
        return {
            'sent': sent,
            'node_received': int(values.get('worker_received', 0)),
            'processed': int(values.get('worker_processed', 0)),
            'answered': len(stamps),
            'processing_ms_p50': values.get('processing_ms_p50', '-'),
        }
    finally:
        proc.stop(timeout=20)
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=6.0)
    parser.add_argument('--rate', type=float, default=15.0)
    parser.add_argument('--size', default='640x480')
    parser.add_argument(
        '--fastdds-profile',
        default='',
        help='Fast DDS XML profile for the publisher and the node (default: none, Fast DDS defaults)',
    )
    parser.add_argument('node_args', nargs='*', help='extra --ros-args for the node, e.g. -p num_threads:=1')
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', '66')
    width, height = (int(v) for v in args.size.split('x'))
    if args.fastdds_profile:  # read by Fast DDS when this process creates its first participant
        os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(Path(args.fastdds_profile).resolve())
    else:
        os.environ.pop('FASTRTPS_DEFAULT_PROFILES_FILE', None)
    transport = (
        f'Fast DDS profile {Path(args.fastdds_profile).name} (publisher and node)'
        if args.fastdds_profile
        else 'Fast DDS default transports (512 KiB shared-memory segment)'
    )
    rows = []
    for pub_rel, node_rel in [
        ('reliable', 'best_effort'),
        ('reliable', 'reliable'),
        ('reliable', 'auto'),
        ('best_effort', 'best_effort'),
        ('best_effort', 'auto'),
    ]:
        r = run_case(pub_rel, node_rel, args.seconds, args.rate, width, height, args.node_args)
        rows.append((pub_rel, node_rel, r))
        print(f'{pub_rel:>12} -> {node_rel:<12} {r}', flush=True)
    print(
        f'\n{args.size} bgr8 at {args.rate:g} Hz for {args.seconds:g} s, node on CPU '
        f'({os.cpu_count()} cores), {transport}, extra args: {args.node_args or "none"}\n'
    )
    print('| publisher | node input_reliability | frames sent | received by node | answered | node processing p50 ms |')
    print('|---|---|---|---|---|---|')
    for pub_rel, node_rel, r in rows:
        print(
            f"| {pub_rel} | {node_rel} | {r['sent']} | {r['node_received']} ({100 * r['node_received'] / r['sent']:.0f}%)"
            f" | {r['answered']} | {r['processing_ms_p50']} |"
        )


if __name__ == '__main__':
    main()
