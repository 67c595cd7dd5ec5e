"""How the per-frame cost of HandReconstructor scales with image size, number of hands and cameras per batch.

ROS-free (the pipeline directly), CPU, fp32, detection threshold 0 so every candidate hand goes through MANO.
  image size: 320x240 .. 1920x1080 -> the letterbox resizes every frame to the network input, so the network cost
              is constant and only the letterbox (preprocess) grows with the pixels; refinement off.
  hands:      multi-hand mode needs the 'peak' centre attention (one parameter vector per centre-map peak): an
              untrained network of the same preset built with center_attention='peak', max_hands 2/4/8;
              refinement off (it only ever refines the best left/right pair: a constant, see bench_pipeline.py).
  cameras:    reconstruct_batch with 1/2/4 640x480 frames in one network forward -> cost per frame; refinement off.
Usage: .venv/bin/python benchmarks/bench_scaling.py [--iters 12] [--threads 2] [--config light@256] [--quick]
"""

import argparse
import os
import statistics
import time

import numpy as np
import torch

from hand_recon_ros.acr.factory import create_model, parse_network_spec
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_ros.pipeline import HandReconstructor

SIZES = [(320, 240), (640, 480), (1280, 720), (1920, 1080)]
STAGES = ('preprocess', 'network', 'decode', 'mano_and_camera', 'refine')


def build(config, hand_model, **runtime):
    key, size = parse_network_spec(config)
    network = create_model(
        key, seed=0, input_size=int(size), center_attention=runtime.pop('center_attention', 'softmax')
    )
    return HandReconstructor(network, hand_model, torch.device('cpu'), detection_threshold=0.0, **runtime)


def intrinsics(width, height):
    f = 0.9 * width
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


def time_frames(run, iters, warmup=2):
    """run() -> list of FrameResult; median wall time of the call, median stage timings of its frames."""
    for _ in range(warmup):
        run()
    walls, stages, hands, sides = [], {k: [] for k in STAGES}, [], []
    for _ in range(iters):
        t = time.perf_counter()
        frames = run()
        walls.append((time.perf_counter() - t) * 1e3)
        for frame in frames:
            for k in STAGES:
                stages[k].append(frame.timings_ms.get(k, 0.0))
            hands.append(len(frame.hands))
            sides.append(sum(h.handedness == 'left' for h in frame.hands))
    return (
        statistics.median(walls),
        {k: statistics.median(v) for k, v in stages.items()},
        statistics.median(hands),
        statistics.median(sides),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='light@256', help='light@N | resnet50@N | hrnet_w32@N')
    parser.add_argument('--iters', type=int, default=12)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--quick', action='store_true', help='smoke run: light@128, 2 iterations, fewer points')
    args = parser.parse_args()
    sizes, max_hands, cameras = SIZES, (2, 4, 8), (1, 2, 4)
    if args.quick:
        args.config, args.iters, sizes, max_hands, cameras = 'light@128', 2, SIZES[::3], (2, 4), (1, 2)
    if args.iters < 1 or args.threads < 1:
        raise ValueError('--iters and --threads must be >= 1')
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    hand_model = load_hand_model(None, device='cpu')
    rng = np.random.default_rng(0)

    rec = build(args.config, hand_model, refine=False)
    warm = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for _ in range(3):  # first calls allocate and pick convolution kernels
        rec.reconstruct(warm)
    size_rows = []
    for width, height in sizes:
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        K = intrinsics(width, height)
        wall, med, hands, _ = time_frames(lambda image=image, K=K: [rec.reconstruct(image, K)], args.iters)
        size_rows.append((f'{width}x{height}', wall, med, hands))
        print(f'size {width}x{height}: {wall:.1f} ms {med}', flush=True)

    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    K = intrinsics(640, 480)
    hand_rows = []
    multi = build(args.config, hand_model, center_attention='peak', multi_hand=True, refine=False)
    for _ in range(3):
        multi.reconstruct(image, K)
    for n in max_hands:
        multi.set_runtime(max_hands=n)
        wall, med, hands, left = time_frames(lambda: [multi.reconstruct(image, K)], args.iters)
        hand_rows.append((n, wall, med, hands, left))
        print(f'max_hands {n}: {hands:g} hands, {wall:.1f} ms {med}', flush=True)

    batch_rows = []
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(max(cameras))]
    for n in cameras:
        wall, med, hands, _ = time_frames(lambda n=n: rec.reconstruct_batch(frames[:n], [K] * n), args.iters)
        batch_rows.append((n, wall, med, hands))
        print(f'cameras {n}: {wall:.1f} ms per call, {wall / n:.1f} per frame', flush=True)

    print(
        f'\n{args.config}, CPU fp32, {args.threads} threads, batch 1 unless stated, detection threshold 0, '
        f'untrained weights, procedural stand-in (no MANO), median ms over {args.iters} iterations; '
        f'{os.cpu_count()} cores, load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}; '
        f'torch {torch.__version__}\n'
    )
    print('Image size (refinement off; the letterbox makes the network input the same for every size):\n')
    print('| image | preprocess (letterbox) | network | decode | MANO + camera | total | hands |')
    print('|---|---|---|---|---|---|---|')
    for name, wall, m, hands in size_rows:
        print(
            f"| {name} | {m['preprocess']:.1f} | {m['network']:.1f} | {m['decode']:.1f} | "
            f"{m['mano_and_camera']:.1f} | {wall:.1f} | {hands:g} |"
        )
    print("\nHands per frame (multi-hand mode, center_attention='peak', 640x480, refinement off):\n")
    print('| max_hands | hands found (left) | network | decode | MANO + camera | per hand | total |')
    print('|---|---|---|---|---|---|---|')
    for n, wall, m, hands, left in hand_rows:
        per_hand = m['mano_and_camera'] / hands if hands else float('nan')
        print(
            f"| {n} | {hands:g} ({left:g}) | {m['network']:.1f} | {m['decode']:.1f} | {m['mano_and_camera']:.1f} | "
            f"{per_hand:.2f} | {wall:.1f} |"
        )
    print('\nCameras per call (reconstruct_batch, 640x480 each, one network forward, refinement off):\n')
    print('| cameras | network (whole batch) | MANO + camera per frame | total per call | per frame | ' 'frames/s |')
    print('|---|---|---|---|---|---|')
    for n, wall, m, _hands in batch_rows:
        print(
            f"| {n} | {m['network']:.1f} | {m['mano_and_camera']:.1f} | {wall:.1f} | {wall / n:.1f} | "
            f"{1e3 * n / wall:.1f} |"
        )


if __name__ == '__main__':
    main()
