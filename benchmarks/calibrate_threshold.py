"""Centre-map threshold and minimum side share sweep of an ACR model on the TRAINING split of the teacher-labelled photos.

    .venv/bin/python benchmarks/calibrate_threshold.py                       # shipped model, prints the sweep
    .venv/bin/python benchmarks/calibrate_threshold.py --weights out/train/real_cpu/model.safetensors

Frames: those the trainer uses (seen in training, so scores there run a little higher than on new photos: the
suggestion errs towards a higher threshold). The network runs once per frame with the threshold and the minimum
side share at 0; with one peak per side (the node's default) the best peak of a side is kept at threshold t exactly
when its score exceeds t, so every setting of the sweep is the same run filtered by score and by the peak's side
share (its side's share of the two centre maps at that pixel; hand_recon_ros/detection_defaults.py). It prints, per
setting, recall, precision, handedness, both hands found (by position, and with both sides right) and same-spot
pairs: frames where a left and a right detection sit on one hand (centroids closer than a quarter of the smaller
hand), the false positives a side share removes. The suggestion per share: the lowest threshold whose precision
stays >= --min-precision. The reported real-image figures stay on the validation split (bench_real.py), which this
never reads.

The sweep runs with ACR's released decoding (top-1 per side, no separated pairs, no anchoring, nothing dropped as a
hand claimed twice), which keeps it one run filtered by score. ``--decoding`` instead compares, at the shipped
threshold and side share, the released decoding with the shipped decoding aids (separated pairs, anchoring on the
peak, pair overlap; hand_recon_ros/detection_defaults.py) on the same training-split frames.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from hand_recon_ros.detection_defaults import (
    CENTER_ANCHOR,
    DETECTION_THRESHOLD,
    MAX_PAIR_OVERLAP,
    MIN_SIDE_SHARE,
    SIDE_SEPARATION,
)
from hand_recon_ros.detection_metrics import DetectionTally, box_size, keypoint_box, keypoint_centroid
from hand_recon_train.datasets.teacher import select_frames
from hand_recon_train.evaluation import real_images as rb
from hand_recon_train.teacher.labels import load_labels

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
SHARES = (0.0, 0.4, 0.45, 0.5)
# ACR's released decoding: top-1 per side, no separated pairs, no anchoring, no hand dropped as claimed twice
RELEASED_DECODING = {'side_separation': 0.0, 'center_anchor': 0.0, 'max_pair_overlap': 1.0}


def same_spot(preds: list, fraction: float = 0.25) -> bool:
    """A left and a right detection on one spot: one hand seen by both side maps."""
    left = [p for p in preds if p.side == 'left']
    right = [p for p in preds if p.side == 'right']
    for a in left:
        for b in right:
            size = min(box_size(keypoint_box(a.keypoints)), box_size(keypoint_box(b.keypoints)))
            if np.linalg.norm(keypoint_centroid(a.keypoints) - keypoint_centroid(b.keypoints)) < fraction * size:
                return True
    return False


def sweep(frames: list, predictions: dict, thresholds=THRESHOLDS, shares=SHARES) -> dict[tuple[float, float], dict]:
    out = {}
    for share in shares:
        for t in thresholds:
            tally, spots = DetectionTally(), 0
            for frame in frames:
                preds = predictions.get(str(frame.path))
                if preds is None:
                    continue
                kept = [p for p in preds if p.score > t and p.side_share >= share]
                tally.add_frame(frame.hands, kept)
                spots += int(same_spot(kept))
            out[(share, t)] = {**tally.summary(), 'same_spot_frames': spots}
    return out


def choose(rows: dict[tuple[float, float], dict], share: float, min_precision: float) -> float | None:
    ok = [
        t
        for (s, t), r in rows.items()
        if s == share and math.isfinite(r['precision']) and r['precision'] >= min_precision
    ]
    return min(ok) if ok else None


def compare_decoding(weights: str, frames: list, two_hand: int) -> int:
    """The released decoding against the shipped aids at the shipped threshold and side share."""
    settings = {
        'released (top-1 per side)': RELEASED_DECODING,
        f'shipped (separation {SIDE_SEPARATION:g}, anchor {CENTER_ANCHOR:g}, overlap {MAX_PAIR_OVERLAP:g})': {},
    }
    methods = [rb.AcrMethod(weights, name=name, **options) for name, options in settings.items()]
    print(f'[calibrate] {methods[0].description}: {len(frames)} training-split frames ({two_hand} with two hands)')
    results = rb.run_benchmark(frames, methods, log=print)
    print('| decoding | recall | precision | handedness* | both hands found | both, sides right* | same-spot pairs |')
    print('|---' * 7 + '|')
    for name, result in results.items():
        tally, spots = DetectionTally(), 0
        for frame in frames:
            preds = result['preds'].get(str(frame.path)) or []
            tally.add_frame(frame.hands, preds)
            spots += int(same_spot(preds))
        r = tally.summary()
        print(
            f"| {name} | {r['recall']:.3f} | {r['precision']:.3f} | {r['handedness']:.3f} | "
            f"{100 * r['both_found']:.0f} % of {r['two_hand_frames']} | {100 * r['both_found_sides']:.0f} % | "
            f'{spots} of {len(frames)} frames |'
        )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--weights', default='', help="ACR weights ('' = the shipped model)")
    p.add_argument('--labels', type=Path, default=REPO / 'out/teacher/realimgs-train.labels.json')
    p.add_argument('--train-root', type=Path, default=REPO.parent / 'shared' / 'realimgs-train')
    p.add_argument('--every', type=int, default=4, help='one-hand frames: every N-th (two-hand frames: all)')
    p.add_argument('--min-precision', type=float, default=0.9)
    p.add_argument('--decoding', action='store_true', help='compare the released decoding with the shipped aids')
    args = p.parse_args(argv)
    if not args.labels.exists():
        print(f'no teacher labels at {args.labels}: run python -m hand_recon_train.teacher label', file=sys.stderr)
        return 2
    frames = rb.load_realval(args.labels, args.train_root, verify_hashes=False, split='train')
    # only frames the trainer uses (every boxed hand labelled, trusted): the roboflow mosaics of tiny hands that
    # training leaves out would otherwise decide the threshold
    trainable = {
        im['path']
        for im in select_frames(load_labels(args.labels, root=args.train_root, verify_hashes=False), 'train')[0]
    }
    frames = [f for f in frames if str(f.path.relative_to(args.train_root)) in trainable]
    two = [f for f in frames if f.two_hand]
    one = [f for f in frames if not f.two_hand][:: max(1, args.every)]
    frames = two + one
    if args.decoding:
        return compare_decoding(args.weights, frames, len(two))
    method = rb.AcrMethod(args.weights, name='acr', threshold=0.0, min_side_share=0.0, **RELEASED_DECODING)
    print(f'[calibrate] {method.description}: {len(frames)} training-split frames ({len(two)} with two hands)')
    result = rb.run_benchmark(frames, [method], log=print)['acr']
    rows = sweep(frames, result['preds'])
    print(
        '| min side share | threshold | recall | precision | handedness* | both hands found | both, sides right* | '
        'same-spot pairs |'
    )
    print('|---' * 8 + '|')
    for (share, t), r in rows.items():
        print(
            f"| {share:.2f} | {t:.2f} | {r['recall']:.3f} | {r['precision']:.3f} | {r['handedness']:.3f} | "
            f"{100 * r['both_found']:.0f} % of {r['two_hand_frames']} | {100 * r['both_found_sides']:.0f} % | "
            f"{r['same_spot_frames']} of {len(frames)} frames |"
        )
    for share in SHARES:
        print(
            f'[calibrate] min side share {share}: lowest threshold with precision >= {args.min_precision}: '
            f'{choose(rows, share, args.min_precision)}'
        )
    print(
        f'[calibrate] shipped defaults (hand_recon_ros/detection_defaults.py): threshold {DETECTION_THRESHOLD}, '
        f'min side share {MIN_SIDE_SHARE}. A higher share buys precision by dropping one hand of overlapping pairs: '
        'check the pasted and synthetic sets of bench_real.py before raising it.'
    )
    return 0


if __name__ == '__main__':
    np.set_printoptions(precision=3)
    sys.exit(main())
