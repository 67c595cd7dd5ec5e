"""The node's two halves of a frame on two threads in one process, as `pipelined: true` runs them: the network
(`HandReconstructor.run_network`) on one, the hands with refinement (`finish`) on the other. Prints ms per call
of each half alone and of both running at once, for eager PyTorch and for the traced graph (`network.trace`).

Eager PyTorch takes Python's GIL between operators, and the finisher's Python work holds it, so an eager
network slows down beside the refinement; a frozen TorchScript graph runs with the GIL released. The scene is
bench_e2e's worst case: the untrained network under ACR's released decoding at threshold 0, so both hands sit
together and the refinement runs on every frame.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_overlap.py [--config light@192] [--precision bf16] [--seconds 6]
"""

import argparse
import threading
import time

import numpy as np
import torch

from hand_recon_ros.acr.factory import SHORT_NAMES, parse_network_spec
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor


def ms_per_call(fn, seconds, out, key):
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    out[key] = (time.perf_counter() - start) / calls * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='light@192', help='NAME@SIZE with NAME in ' + ', '.join(SHORT_NAMES))
    parser.add_argument('--precision', default='bf16', choices=('fp32', 'bf16'))
    parser.add_argument('--threads', type=int, default=1, help='torch threads (the node: cores less one)')
    parser.add_argument('--seconds', type=float, default=6.0, help='per measurement')
    args = parser.parse_args()
    spec = parse_network_spec(args.config)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    rows = []
    for trace in (False, True):
        config = PipelineConfig(
            weights='untrained',
            backbone=SHORT_NAMES[spec.name],
            input_size=spec.input_size,
            device='cpu',
            precision=args.precision,
            num_threads=args.threads,
            detection_threshold=0.0,
            side_separation=0.0,
            center_anchor=0.0,
            max_pair_overlap=1.0,
            refine=True,
            trace_network=trace,
        )
        reconstructor = create_reconstructor(config)
        network_pass = reconstructor.run_network([image])[0]
        result = reconstructor.finish(network_pass)
        refined = 'refine' in result.timings_ms and len(result.hands) == 2

        def network(reconstructor=reconstructor):
            reconstructor.run_network([image])

        def finish(reconstructor=reconstructor, network_pass=network_pass):
            reconstructor.finish(network_pass)

        times = {}
        for name, fn in (('network', network), ('finish', finish)):
            fn()
            ms_per_call(fn, args.seconds, times, name)
        threads = [
            threading.Thread(target=ms_per_call, args=(fn, args.seconds, times, f'{name} together'))
            for name, fn in (('network', network), ('finish', finish))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows.append((reconstructor.network_runner.mode, times, refined))

    print(f'{args.config} {args.precision}, {args.threads} torch thread(s), torch {torch.__version__}, 640x480 frame\n')
    print(
        '| network runs | network alone | finish alone (refinement ran) | network beside finish | finish beside network |'
    )
    print('|---|---|---|---|---|')
    for mode, t, refined in rows:
        print(
            f"| {mode} | {t['network']:.1f} | {t['finish']:.1f} ({'yes' if refined else 'no'}) "
            f"| {t['network together']:.1f} | {t['finish together']:.1f} |"
        )


if __name__ == '__main__':
    main()
