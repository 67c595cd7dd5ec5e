"""Per-stage latency of the whole ROS-free pipeline (HandReconstructor.reconstruct) per configuration.

Stages: preprocess (letterbox), network (backbone + heads + aggregation; split in bench_acr.py), decode,
MANO + camera (smplx for both hands, 2D/3D joints, metric translation), IHMR-MLP refinement (runs when the
two hands are within the gate; untrained weights here). The detection threshold is set to 0
so both hands always go through MANO even with untrained weights.
Usage: .venv/bin/python benchmarks/bench_pipeline.py [--iters 15] [--threads 2] [--configs light@256 ...]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, not an installed copy

from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor  # noqa: E402

BACKBONES = {'light': 'resnet18', 'resnet50': 'resnet50', 'hrnet': 'hrnet_w32'}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='*', default=['light@256', 'light@320', 'resnet50@512', 'hrnet@512'])
    parser.add_argument('--iters', type=int, default=15)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='fp32')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    rows = []
    for name in args.configs:
        key, size = name.split('@')
        rec = create_reconstructor(PipelineConfig(weights='untrained', device=args.device, precision=args.precision,
                                                  backbone=BACKBONES[key], input_size=int(size),
                                                  detection_threshold=0.0))
        for _ in range(3):
            rec.reconstruct(image, K)
        stages, totals, n_hands = {}, [], []
        iters = args.iters if key == 'light' else max(3, args.iters // 3)
        for _ in range(iters):
            t = time.perf_counter()
            frame = rec.reconstruct(image, K)
            totals.append((time.perf_counter() - t) * 1e3)
            n_hands.append(len(frame.hands))
            for k, v in frame.timings_ms.items():
                stages.setdefault(k, []).append(v)
        med = {k: statistics.median(v) for k, v in stages.items()}
        rows.append((name, med, statistics.median(totals), min(totals), statistics.median(n_hands)))
        print(f'{name}: ' + ', '.join(f'{k} {v:.1f}' for k, v in med.items())
              + f' | total {statistics.median(totals):.1f} ms (min {min(totals):.1f})', flush=True)
    print(f'\n640x480 frame, batch 1, {args.threads} threads, {args.device} {args.precision}, '
          f'torch {torch.__version__}, median ms over the iterations\n')
    print('| config | preprocess | network | decode | MANO + camera | IHMR-MLP refine | total (min) | hands |')
    print('|---|---|---|---|---|---|---|---|')
    for name, med, total, tmin, hands in rows:
        print(f"| {name} | {med['preprocess']:.1f} | {med['network']:.1f} | {med['decode']:.1f} | "
              f"{med['mano_and_camera']:.1f} | {med.get('refine', 0.0):.1f} | {total:.1f} ({tmin:.1f}) | {hands:g} |")


if __name__ == '__main__':
    main()
