"""Placement of hands by an aligned depth image (node parameter ``depth.enabled``) on synthetic RGB-D frames.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_depth.py                  # 40 frames
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_depth.py --frames 10 --holes 0.3 --noise 0.02 --shift 3

There is no real RGB-D data here, so each frame is a synthetic sample (the training generator's scenes: single,
separate, interacting, occluded, truncated, small and large hands in front of real or drawn backgrounds) with the
depth image a registered depth camera would give (``hand_recon_train/synth/depth.py``: the hands rendered with the
sample's K in front of a wall; optional pixels without reading, noise growing with depth, a registration shift).
Runs the node's pipeline (shipped model, crop stage on, fp32, CPU) on each frame without and with the depth image
and prints, over the hands found whose side matches a true hand: the wrist's 3D error and depth error, and the depth
error of the hand as a whole (median joint depth: what the depth image measures; the wrist adds the fitted pose's own
error), as median and 90th percentile; the share placed by the depth image, and the cost of the placement per frame.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.results import DEPTH_SOURCE_DEPTH_IMAGE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--frames', type=int, default=40)
    p.add_argument('--seed', type=int, default=9100, help='synthetic sample seed (held out from training seeds)')
    p.add_argument('--holes', type=float, default=0.1, help='share of depth pixels without a reading')
    p.add_argument('--noise', type=float, default=0.01, help='depth noise, share of the depth (1 %% ~ a D435 at 1 m)')
    p.add_argument('--shift', type=int, default=1, help='registration error, pixels (x and y)')
    p.add_argument('--weights', default='', help="ACR weights ('' = the shipped model)")
    p.add_argument('--quick', action='store_true', help='smoke run: 3 frames')
    args = p.parse_args(argv)
    if args.quick:
        args.frames = 3
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
    from hand_recon_train.synth import SynthConfig, SynthDataset
    from hand_recon_train.synth.depth import sample_depth_image

    dataset = SynthDataset(SynthConfig(image_size=640, supersample=1), seed=args.seed, length=args.frames)
    reconstructor = create_reconstructor(
        PipelineConfig(weights=args.weights, device='cpu', precision='fp32', landmarks=True)
    )
    rows: dict[str, list[tuple[float, float, float]]] = {'without depth': [], 'with depth': []}
    placed, found, true_hands, depth_ms = 0, 0, 0, []
    for index in range(args.frames):
        raw = dataset.raw(index)
        image, K = np.ascontiguousarray(raw['image']), raw['K'].astype(np.float64)
        depth = sample_depth_image(
            raw,
            dataset.generator.model,
            holes=args.holes,
            relative_noise=args.noise,
            shift_px=(args.shift, args.shift),
            seed=index,
        )
        truth = {side: raw['joints_3d'][i] for i, side in enumerate(SIDES) if raw['valid'][i]}
        true_hands += len(truth)
        for name, depth_m in (('without depth', None), ('with depth', depth)):
            t = time.perf_counter()
            result = reconstructor.reconstruct(image, K, depth_m=depth_m)
            elapsed = time.perf_counter() - t
            if depth_m is not None:
                depth_ms.append(result.timings_ms.get('depth', elapsed * 1e3))
            for hand in result.hands:
                true = truth.get(hand.handedness)
                if true is None:
                    continue
                joints = np.asarray(hand.joints_3d, np.float64)
                rows[name].append(
                    (
                        float(np.linalg.norm(joints[0] - true[0])),
                        float(abs(joints[0, 2] - true[0, 2])),
                        float(abs(np.median(joints[:, 2]) - np.median(true[:, 2]))),
                    )
                )
                if depth_m is not None:
                    found += 1
                    placed += hand.depth_source == DEPTH_SOURCE_DEPTH_IMAGE
    print(
        f'{args.frames} synthetic frames (seed {args.seed}, {true_hands} true hands), depth camera: {100 * args.holes:g} % '
        f'holes, {100 * args.noise:g} % noise, {args.shift} px registration shift; shipped model, crop stage on, fp32'
    )
    print()
    print(
        '| placement | hands (side right) | wrist 3D error median / p90 mm | wrist depth error median / p90 mm | '
        'hand depth error (median joint) median / p90 mm |'
    )
    print('|---|---|---|---|---|')
    for name, errors in rows.items():
        e = np.asarray(errors) * 1e3 if errors else np.full((1, 3), np.nan)
        cells = ' | '.join(f'{np.median(e[:, k]):.1f} / {np.percentile(e[:, k], 90):.1f}' for k in range(3))
        print(f'| {name} | {len(errors)} | {cells} |')
    print()
    print(
        f'placed by the depth image: {placed} of {found} hands ({100 * placed / max(found, 1):.0f} %); '
        f'placement {np.median(depth_ms):.2f} ms per frame (median)'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
