"""Why a two-hand photo loses a hand: per labelled hand, the best centre-map score near it on its own side's map
and on the other side's map.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/two_hand_scores.py                 # shipped model, validation split
    PYTHONPATH=$PWD .venv/bin/python benchmarks/two_hand_scores.py --weights out/train/X/model.safetensors --split train

Frames: the teacher-labelled photos with two or more boxed hands (``--split``). Each labelled hand gets the maximum
of each side's centre probability in a window around its box centre (0.35 of the box side, in centre-map cells).
A frame is then one of: both hands above the threshold on their own side; a hand weak on both maps (the network
does not see it: data or capacity); a hand only strong on the other side's map (side confusion: decoding keeps one
peak per side, so the other hand is lost); or not classifiable (a hand without a teacher side). The split between
the last two says whether more data or a side rule is the next thing to try.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from hand_recon_ros.acr.preprocess import letterbox
from hand_recon_ros.detection_defaults import DETECTION_THRESHOLD
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
from hand_recon_train.evaluation import real_images as rb

REPO = Path(__file__).resolve().parents[1]
SIDE_INDEX = {'left': 0, 'right': 1}


def hand_scores(centre_probs: np.ndarray, box_cells: np.ndarray, window: float = 0.35) -> np.ndarray:
    """(2, H, W) centre probabilities, box (x0, y0, x1, y1) in centre-map cells -> best score per side map near
    the box centre (window: that share of the box's longer side, at least 1.5 cells)."""
    cells = centre_probs.shape[-1]
    x0, y0, x1, y1 = box_cells
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    radius = max(1.5, window * max(x1 - x0, y1 - y0))
    ya, yb = int(max(0, cy - radius)), int(min(cells, cy + radius + 1))
    xa, xb = int(max(0, cx - radius)), int(min(cells, cx + radius + 1))
    if yb <= ya or xb <= xa:
        return np.zeros(2)
    return centre_probs[:, ya:yb, xa:xb].reshape(2, -1).max(axis=1)


def classify(sides: list, scores: list, threshold: float) -> str:
    """One frame's failure class from its hands' sides and (left, right) scores."""
    if any(side not in SIDE_INDEX for side in sides):
        return 'hand without a side'
    own = [s[SIDE_INDEX[side]] for side, s in zip(sides, scores)]
    if all(o > threshold for o in own):
        return 'both seen on their own side'
    if any(max(s) <= threshold for s in scores):
        return 'a hand weak on both maps'
    return 'a hand only on the other side map'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--weights', default='', help="ACR weights ('' = the shipped model)")
    p.add_argument('--labels', type=Path, default=REPO / 'out/teacher/realimgs-train.labels.json')
    p.add_argument('--train-root', type=Path, default=REPO.parent / 'shared' / 'realimgs-train')
    p.add_argument('--split', default='val', choices=['train', 'val'])
    p.add_argument('--threshold', type=float, default=DETECTION_THRESHOLD)
    p.add_argument('--show', type=int, default=15, help='frames listed with their scores')
    args = p.parse_args(argv)
    if not args.labels.exists():
        print(f'no teacher labels at {args.labels}: run python -m hand_recon_train.teacher label', file=sys.stderr)
        return 2
    frames = rb.load_realval(args.labels, args.train_root, verify_hashes=False, split=args.split)
    frames = [f for f in frames if f.two_hand]
    reconstructor = create_reconstructor(PipelineConfig(weights=args.weights, device='cpu'))
    network, size = reconstructor.network, reconstructor.input_size
    info = reconstructor.info()
    print(f"[two-hand] {info['network']} {Path(info['weights_file']).name or 'untrained'}: {len(frames)} frames")
    counts: dict[str, int] = {}
    rows = []
    for frame in frames:
        image = cv2.imread(str(frame.path))
        if image is None:
            continue
        x, lb = letterbox(image, size, bgr=True, normalization=reconstructor.normalization)
        with torch.inference_mode():
            probs = torch.sigmoid(network(x)['center_maps'][0].float()).numpy()
        to_cells = probs.shape[-1] / float(size)
        sides, scores = [], []
        for hand in frame.hands:
            x0, y0, x1, y1 = np.asarray(hand.box, np.float64)
            box_net = np.array(
                [(x0 + lb.pad_left) * lb.scale, (y0 + lb.pad_top) * lb.scale]
                + [(x1 + lb.pad_left) * lb.scale, (y1 + lb.pad_top) * lb.scale]
            )
            sides.append(hand.side)
            scores.append(hand_scores(probs, box_net * to_cells))
        kind = classify(sides, scores, args.threshold)
        counts[kind] = counts.get(kind, 0) + 1
        rows.append((frame.path.name, kind, sides, scores))
    print(f'[two-hand] threshold {args.threshold}: ' + ', '.join(f'{k}: {v}' for k, v in sorted(counts.items())))
    own = [s[SIDE_INDEX[side]] for _, _, sides, scores in rows for side, s in zip(sides, scores) if side in SIDE_INDEX]
    if own:
        print('[two-hand] own-side score quantiles 10/25/50/75 %:', np.quantile(own, [0.1, 0.25, 0.5, 0.75]).round(3))
    for name, kind, sides, scores in [r for r in rows if r[1] != 'both seen on their own side'][: args.show]:
        hands = ', '.join(f'{side}: L {s[0]:.2f} R {s[1]:.2f}' for side, s in zip(sides, scores))
        print(f'  {name}: {kind} ({hands})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
