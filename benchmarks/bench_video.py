"""Video benchmark of the crop stage's tracking (node parameter ``landmarks.tracking``): accuracy and cost per frame.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_video.py                 # 24 clips of 8 frames
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_video.py --clips 6 --frames 4

There is no labelled real video here, so each clip is one real validation photo (``bench_real.py``'s ``realval``
split: two-hand photos first, then one-hand ones) filmed by a slowly panning and zooming camera: every frame is the
photo warped by a small affine step (``--pan`` pixels and ``--zoom`` per frame), its teacher labels moved alike.
The hands do not move within the photo, so this measures what tracking saves and whether following the previous
answers keeps the keypoints; it does not test fast hand motion (a followed crop that loses its hand falls back to
the still-image path).

Runs the node's pipeline (ACR + crop stage at the node's defaults, fp32, CPU) with tracking off, then on; each clip is a
fresh stream. Prints per mode: recall, precision, handedness, PCK@0.1, both hands of two-hand frames; ms per frame
(median, the first frame of each clip left out: it is the same in both modes) and the crop stage's share; palm
detector runs, landmark crops and followed crops per frame. ``--sheet PNG``: the first ``--sheet-clips`` clips'
frames with each mode's hands drawn (a row per clip and mode; left hands blue, right orange), to look at.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hand_recon_ros.detection_metrics import DetectionTally, LabelledHand, PredictedHand
from hand_recon_train.evaluation import real_images as rb
from hand_recon_train.teacher.corpus import default_root

REPO = Path(__file__).resolve().parents[1]


def camera_step(width: int, height: int, t: int, pan: float, zoom: float) -> np.ndarray:
    """2x3 affine from the photo to frame ``t``: zoomed by (1 + zoom)^t about the centre, moved ``pan`` px per
    frame to the right and half that down."""
    s = (1.0 + zoom) ** t
    centre = np.array([width / 2.0, height / 2.0])
    shift = np.array([pan * t, 0.5 * pan * t])
    return np.hstack([s * np.eye(2), (centre - s * centre + shift)[:, None]])


def moved_labels(hands: list[LabelledHand], affine: np.ndarray) -> list[LabelledHand]:
    def move(points: np.ndarray) -> np.ndarray:
        return points @ affine[:, :2].T + affine[:, 2]

    out = []
    for hand in hands:
        x0, y0, x1, y1 = np.asarray(hand.box, np.float64)
        corners = move(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]))
        keypoints = None if hand.keypoints is None else move(np.asarray(hand.keypoints, np.float64))
        box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
        out.append(LabelledHand(box=box, side=hand.side, keypoints=keypoints, visible=hand.visible))
    return out


def clips_of(frames: list, count: int) -> list:
    """Two-hand photos first (where tracking saves the palm detector), then one-hand ones, ``count`` in all."""
    two = [f for f in frames if f.two_hand]
    one = [f for f in frames if not f.two_hand]
    picked = two[: (count + 1) // 2]
    return picked + one[:: max(1, len(one) // max(1, count - len(picked)))][: count - len(picked)]


def run_mode(
    reconstructor, clips: list, n_frames: int, pan: float, zoom: float, tracking: bool, sheet_clips: int = 0
) -> dict:
    """The mode's summary; under ``drawn``, the first ``sheet_clips`` clips' frames with the hands drawn."""
    stage = reconstructor.landmark_stage()
    drawn: list[list[np.ndarray]] = []
    tally = DetectionTally()
    total_ms, crop_ms = [], []
    counts0 = (stage.palm_runs, stage.crops_run, stage.tracked_crops)
    frames_run = 0
    for number, clip in enumerate(clips):
        photo = cv2.imread(str(clip.path), cv2.IMREAD_COLOR)
        if photo is None:
            continue
        if number < sheet_clips:
            drawn.append([])
        height, width = photo.shape[:2]
        reconstructor.set_runtime(landmark_tracking=tracking)  # a new stream: nothing to follow yet
        for t in range(n_frames):
            affine = camera_step(width, height, t, pan, zoom)
            image = cv2.warpAffine(
                photo, affine, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
            start = time.perf_counter()
            result = reconstructor.reconstruct(image)
            elapsed = (time.perf_counter() - start) * 1e3
            frames_run += 1
            if t > 0:
                total_ms.append(elapsed)
                crop_ms.append(result.timings_ms.get('landmarks', 0.0))
            predicted = [
                PredictedHand(
                    np.asarray(h.keypoints_2d, np.float64),
                    h.handedness,
                    float(h.score),
                    np.asarray(h.joints_3d, np.float64),
                    float(h.handedness_score),
                )
                for h in result.hands
            ]
            tally.add_frame(moved_labels(clip.hands, affine), predicted)
            if number < sheet_clips:
                frame = image.copy()
                rb.draw_hands(frame, [(h.keypoints, h.side) for h in predicted])
                drawn[-1].append(frame)
    palm_runs, crops, followed = (
        now - before for now, before in zip((stage.palm_runs, stage.crops_run, stage.tracked_crops), counts0)
    )
    summary = tally.summary()
    summary.update(
        ms=float(np.median(total_ms)) if total_ms else float('nan'),
        crop_stage_ms=float(np.median(crop_ms)) if crop_ms else float('nan'),
        palm_runs=palm_runs / max(frames_run, 1),
        crops=crops / max(frames_run, 1),
        followed=followed / max(frames_run, 1),
        frames=frames_run,
        drawn=drawn,
    )
    return summary


def write_sheet(rows: list[tuple[str, list[np.ndarray]]], path: Path, cell: int = 200) -> None:
    """One row per (label, frames): the frames scaled to ``cell`` px wide, the label on the first."""
    lines = []
    for label, frames in rows:
        cells = [cv2.resize(f, (cell, max(1, round(cell * f.shape[0] / f.shape[1])))) for f in frames]
        height = max(c.shape[0] for c in cells)
        cells = [cv2.copyMakeBorder(c, 0, height - c.shape[0], 0, 0, cv2.BORDER_CONSTANT) for c in cells]
        cv2.putText(cells[0], label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        lines.append(np.hstack(cells))
    width = max(line.shape[1] for line in lines)
    lines = [cv2.copyMakeBorder(x, 0, 0, 0, width - x.shape[1], cv2.BORDER_CONSTANT) for x in lines]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--clips', type=int, default=24)
    p.add_argument('--frames', type=int, default=8, help='frames per clip')
    p.add_argument('--pan', type=float, default=4.0, help='pixels per frame')
    p.add_argument('--zoom', type=float, default=0.01, help='zoom per frame (0.01 = 1 %%)')
    p.add_argument('--labels', type=Path, default=REPO / 'out/teacher/realimgs-train.labels.json')
    p.add_argument('--train-root', type=Path, default=None)
    p.add_argument('--weights', default='', help="ACR weights ('' = the shipped model)")
    p.add_argument('--sheet', type=Path, default=None, help="PNG of the first clips with each mode's hands drawn")
    p.add_argument('--sheet-clips', type=int, default=4)
    p.add_argument(
        '--runtimes',
        nargs='+',
        default=['auto'],
        choices=['auto', 'torch', 'onnxruntime'],
        help='what runs the landmark network (landmarks.runtime); several: each mode under each',
    )
    args = p.parse_args(argv)
    if args.clips < 1 or args.frames < 2:
        p.error('need at least 1 clip of at least 2 frames')
    if not args.labels.is_file():
        print(f'no teacher labels at {args.labels} (python -m hand_recon_train.teacher label): nothing to run')
        return 1
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor

    frames = rb.load_realval(args.labels, args.train_root or default_root())
    clips = clips_of(frames, args.clips)
    rows = {}
    for runtime in dict.fromkeys(args.runtimes):
        reconstructor = create_reconstructor(
            PipelineConfig(
                weights=args.weights, device='cpu', precision='fp32', landmarks=True, landmark_runtime=runtime
            )
        )
        reconstructor.reconstruct(cv2.imread(str(clips[0].path), cv2.IMREAD_COLOR))  # loads and traces, untimed
        for tracking in (False, True):
            name = ('on' if tracking else 'off') + (
                '' if len(args.runtimes) == 1 else f' ({reconstructor.landmark_runner})'
            )
            rows[name] = run_mode(
                reconstructor, clips, args.frames, args.pan, args.zoom, tracking, args.sheet_clips if args.sheet else 0
            )
    print(
        f'{len(clips)} clips ({sum(c.two_hand for c in clips)} two-hand) x {args.frames} frames, pan {args.pan:g} px '
        f'and zoom {100 * args.zoom:g} % per frame; fp32, CPU, {torch.get_num_threads()} torch threads'
    )
    if args.sheet:
        sheet_rows = [
            (f'clip {n} tracking {mode}', rows[mode]['drawn'][n])
            for n in range(len(next(iter(rows.values()))['drawn']))
            for mode in rows
        ]
        write_sheet(sheet_rows, args.sheet)
        print(f'contact sheet: {args.sheet}')
    print()
    print(
        '| tracking | recall | precision | handedness | PCK@0.1 | both hands | ms per frame | crop stage ms | '
        'palm runs / frame | crops / frame | followed / frame |'
    )
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for name, r in rows.items():
        print(
            f"| {name} | {r['recall']:.3f} | {r['precision']:.3f} | {r['handedness']:.3f} | {r['pck']:.3f} | "
            f"{100 * r['both_found']:.0f} % | {r['ms']:.1f} | {r['crop_stage_ms']:.1f} | {r['palm_runs']:.2f} | "
            f"{r['crops']:.2f} | {r['followed']:.2f} |"
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
