"""Peak memory of the node process per configuration: resident set (VmHWM) and, with CUDA, torch's peak allocation.

Each configuration starts the node as a subprocess (like bench_e2e.py: --params-file config/hand_recon.yaml,
detection_threshold 0 so both hands always exist, refinement on), reads /proc/<pid>/status once the model is
loaded and again after --frames frames, one in flight at a time. VmHWM is the kernel's high-water mark of the
resident set over the process's life, so it also covers short peaks between the two reads.
torch.cuda.max_memory_allocated is read inside the node (bench_e2e's timing wrapper) when CUDA is available.
Usage: .venv/bin/python benchmarks/bench_memory.py [--configs light@256 ...] [--frames 10] [--quick]
"""

import argparse
import os
import shlex
import time

from bench_e2e import CONFIGS, NodeUnderTest, setup_environment

from hand_recon_ros.acr.factory import parse_network_spec


def measure(name, frames, node_args, device):
    spec = parse_network_spec(name)
    backbone, size = spec.backbone, spec.input_size
    bench = NodeUnderTest(backbone, size, node_args, device=device)
    try:
        # model loaded and activated, before the warm-up frames
        if not bench.spin_until(
            lambda: bench.model_info and bench.pub.get_subscription_count() > 0, 180.0, 'the node to activate'
        ):
            raise RuntimeError('the node did not activate:\n' + bench.log_tail())
        time.sleep(0.5)
        loaded_hwm, loaded_rss = bench.vm_kib('VmHWM'), bench.vm_kib('VmRSS')
        bench.wait_ready()
        stamps, lost = bench.latency_mode(frames, timeout_s=60.0)
        bench.spin_until(lambda: False, 0.3, 'timings flush')
        hwm, rss = bench.vm_kib('VmHWM'), bench.vm_kib('VmRSS')
        records = bench.node_timings()
        cuda = max((r['cuda_max_mb'] for r in records.values() if 'cuda_max_mb' in r), default=None)
        refined = sum(1 for s in stamps if records.get(s, {}).get('refine_stages_ms', 0.0) > 0)
        return {
            'loaded_hwm': loaded_hwm,
            'loaded_rss': loaded_rss,
            'hwm': hwm,
            'rss': rss,
            'frames': len(stamps),
            'lost': lost,
            'cuda_mb': cuda,
            'refined': refined,
            'network': bench.network,
            'expected': bench.expected_network,
        }
    finally:
        bench.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='*', default=list(CONFIGS), help='NAME@SIZE (as bench_e2e.py)')
    parser.add_argument('--frames', type=int, default=10)
    parser.add_argument('--device', default='auto', help='node device: auto picks CUDA when present')
    parser.add_argument('--domain-id', type=int, default=int(os.environ.get('BENCH_MEMORY_DOMAIN_ID', 68)))
    parser.add_argument(
        '--node-args', type=shlex.split, default=[], help="extra --ros-args for the node, e.g. '-p num_threads:=1'"
    )
    parser.add_argument('--quick', action='store_true', help='smoke run: light@256, 2 frames')
    args = parser.parse_args()
    if args.quick:
        args.configs, args.frames = ['light@256'], 2
    setup_environment(args.domain_id)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load_start = os.getloadavg()
    rows = []
    for name in args.configs:
        r = measure(name, args.frames, args.node_args, args.device)
        rows.append((name, r))
        print(f'{name}: {r}', flush=True)
    mib = 1 / 1024
    print(
        f'\nnode process (python -m hand_recon_ros.ros.node via bench_e2e --node-with-timings), device '
        f'{args.device} ({gpu or "no GPU"}), 640x480 frames, detection_threshold 0, refinement on, '
        f'untrained weights, procedural stand-in (no MANO); {os.cpu_count()} cores, load average {load_start[0]:.2f} -> '
        f'{os.getloadavg()[0]:.2f}\n'
    )
    print(
        '| config | RSS model loaded (MiB) | peak RSS VmHWM after frames (MiB) | RSS after frames (MiB) | frames '
        '(refine MLP stages ran) | torch.cuda.max_memory_allocated |'
    )
    print('|---|---|---|---|---|---|')
    for name, r in rows:
        cuda = f"{r['cuda_mb']:.0f} MiB" if r['cuda_mb'] is not None else ('no GPU' if gpu is None else 'CPU run')
        label = name if r['network'] == r['expected'] else f"{name} (ran {r['network']})"
        print(
            f"| {label} | {r['loaded_rss'] * mib:.0f} | {r['hwm'] * mib:.0f} | {r['rss'] * mib:.0f} | "
            f"{r['frames']} ({r['refined']}) | {cuda} |"
        )


if __name__ == '__main__':
    main()
