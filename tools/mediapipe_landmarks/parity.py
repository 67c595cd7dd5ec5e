"""Measure the PyTorch ports against the original .tflite files run by the official LiteRT interpreter.

``--model landmark`` (default), the hand landmark network: 8 seeded uniform-random images, 8 real hand crops (photos
from ``shared/realimgs-train/handsdataset/train``, square crop around the ``boxes.csv`` box enlarged 1.5x, resized
to 224; the photos are read in place, never copied), and the 2 seeded inputs of the unit test's reference file.

``--model palm``, the palm detector: 8 seeded uniform-random images, ``--photos`` (8) whole photos of the same folder
letterboxed to 192x192 (aspect kept, black bars), and the 2 seeded inputs of ``test/data/mp_palm_reference.npz``;
port and interpreter get the same [0, 1] RGB. To show which input range the graph expects, the interpreter also runs
on the photos mapped to [-1, 1]; for both ranges the report gives each photo's best palm probability (sigmoid of the
largest score) and whether that anchor's decoded box centre lies inside one of the photo's ``boxes.csv`` hand boxes.

The reference side runs in ``.venv-teacher`` through ``teacher_run.py`` (a subprocess exchanging .npz files under
/tmp). Also times the port at batch 1 (``--threads`` CPU threads, median of ``--runs``), fp32 and bf16 autocast.

Usage (repository root)::

    nice -n 19 .venv/bin/python -m tools.mediapipe_landmarks.parity [--write-reference] [--report out/mp_parity.json]
    nice -n 19 .venv/bin/python -m tools.mediapipe_landmarks.parity --model palm --threads 2 --runs 20
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hand_recon_ros.landmarks.mediapipe_port import INPUT_SIZE, PALM_INPUT_SIZE, load_landmark_model, load_palm_model

REPO = Path(__file__).resolve().parents[2]
TEACHER_PYTHON = REPO / '.venv-teacher' / 'bin' / 'python'
MODULES = REPO / '.venv-teacher/lib/python3.11/site-packages/mediapipe/modules'
TFLITE = MODULES / 'hand_landmark' / 'hand_landmark_full.tflite'
PALM_TFLITE = MODULES / 'palm_detection' / 'palm_detection_full.tflite'
PHOTOS = REPO.parent / 'shared' / 'realimgs-train' / 'handsdataset' / 'train'
REFERENCE = REPO / 'test' / 'data' / 'mp_landmark_reference.npz'
GRAPH = REPO / 'models' / 'mp_hand_landmark_full.graph.json'
PALM_GRAPH = REPO / 'models' / 'mp_palm_detection_full.graph.json'
PALM_REFERENCE = REPO / 'test' / 'data' / 'mp_palm_reference.npz'
PALM_REFERENCE_CELL = 6  # 32x32 seeded pattern upsampled 6x to 192
PALM_REFERENCE_ROWS = 48  # anchors whose regressors the reference file keeps (all scores are kept)
RANDOM_SEEDS = tuple(range(1000, 1008))
REFERENCE_SEEDS = (7, 11)
REFERENCE_CELL = 8  # reference inputs: a seeded 28x28 uint8 image upsampled 8x (nearest), so the file stays small
ROLES = ('landmarks', 'presence', 'handedness', 'world_landmarks')


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)


def reference_seed_image(seed: int, input_size: int = INPUT_SIZE, cell: int = REFERENCE_CELL) -> np.ndarray:
    """The small uint8 pattern stored in a reference file ((input_size / cell) squared, 3 channels)."""
    size = input_size // cell
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def expand_reference(pattern: np.ndarray, cell: int = REFERENCE_CELL) -> np.ndarray:
    """(N, s, s, 3) uint8 -> (N, s * cell, s * cell, 3) float32 in [0, 1] (nearest upsampling)."""
    big = np.repeat(np.repeat(pattern, cell, axis=-3), cell, axis=-2)
    return big.astype(np.float32) / 255.0


def hand_crops(count: int) -> tuple[np.ndarray, list[str]]:
    """``count`` crops from photos spread evenly over boxes.csv (one box per photo)."""
    with open(PHOTOS / 'boxes.csv', newline='') as handle:
        rows = list(csv.DictReader(handle))
    by_photo: dict[str, dict[str, str]] = {}
    for row in rows:
        by_photo.setdefault(row['filename'], row)
    names = sorted(by_photo)
    picks = [names[int(i)] for i in np.linspace(0, len(names) - 1, count)]
    crops, paths = [], []
    for name in picks:
        row = by_photo[name]
        x0, y0, x1, y1 = (float(row[k]) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
        with Image.open(PHOTOS / name) as photo:
            box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
            crop = photo.convert('RGB').crop(box).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        crops.append(np.asarray(crop, dtype=np.float32) / 255.0)
        paths.append(str(PHOTOS / name))
    return np.stack(crops), paths


def _interpreter(model: Path, images: np.ndarray, photos: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """``teacher_run.py`` in the teacher env: the raw outputs keyed by output tensor name (plus solution results)."""
    with tempfile.TemporaryDirectory(prefix='mp_parity_') as tmp:
        inputs, outputs = Path(tmp) / 'in.npz', Path(tmp) / 'out.npz'
        np.savez(inputs, images=images.astype(np.float32))
        command = [str(TEACHER_PYTHON), str(Path(__file__).with_name('teacher_run.py'))]
        command += ['--model', str(model), '--inputs', str(inputs), '--out', str(outputs)]
        if photos:
            command += ['--photos', *photos]
        subprocess.run(command, check=True)
        with np.load(outputs) as data:
            return {k: data[k] for k in data.files}


def run_teacher(images: np.ndarray, photos: Sequence[str]) -> dict[str, np.ndarray]:
    """The original graph on ``images`` through LiteRT in the teacher env; outputs keyed by role."""
    roles = {name: v['name'] for name, v in json.loads(GRAPH.read_text())['output_roles'].items()}
    raw = _interpreter(TFLITE, images, photos)
    n = len(images)
    result = {
        'landmarks': raw[roles['landmarks']].reshape(n, 21, 3),
        'presence': raw[roles['presence']].reshape(n),
        'handedness': 1.0 - raw[roles['handedness']].reshape(n),  # the port's convention: P(label "Right")
        'handedness_raw': raw[roles['handedness']].reshape(n),
        'world_landmarks': raw[roles['world_landmarks']].reshape(n, 21, 3),
    }
    if 'solution_p_right' in raw:
        result['solution_p_right'] = raw['solution_p_right']
    return result


def run_port(model: torch.nn.Module, images: np.ndarray, bf16: bool = False) -> dict[str, np.ndarray]:
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        out = model(torch.from_numpy(images))
    return {k: v.float().numpy() for k, v in out.items()}


def compare(port: dict[str, np.ndarray], ref: dict[str, np.ndarray], rows: slice) -> dict[str, float]:
    xy = np.linalg.norm(port['landmarks'][rows, :, :2] - ref['landmarks'][rows, :, :2], axis=-1)
    z = np.abs(port['landmarks'][rows, :, 2] - ref['landmarks'][rows, :, 2])
    world = np.linalg.norm(port['world_landmarks'][rows] - ref['world_landmarks'][rows], axis=-1) * 1000.0
    return {
        'landmark_xy_px_max': float(xy.max()),
        'landmark_xy_px_median': float(np.median(xy)),
        'landmark_z_px_max': float(z.max()),
        'presence_abs_max': float(np.abs(port['presence'][rows] - ref['presence'][rows]).max()),
        'handedness_abs_max': float(np.abs(port['handedness'][rows] - ref['handedness'][rows]).max()),
        'world_mm_max': float(world.max()),
        'world_mm_median': float(np.median(world)),
    }


def time_port(model: torch.nn.Module, image: np.ndarray, runs: int = 30, threads: int = 1) -> dict[str, float]:
    torch.set_num_threads(threads)
    x = torch.from_numpy(image[None])
    timings: dict[str, float] = {}
    for label, bf16 in (('fp32', False), ('bf16_autocast', True)):
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            for _ in range(3):
                model(x)
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                model(x)
                samples.append(time.perf_counter() - start)
        timings[f'{label}_ms_median'] = 1000.0 * statistics.median(samples)
    return timings


# ------------------------------------------------------------------------------------------------------ palm


def letterbox(rgb: np.ndarray, size: int = PALM_INPUT_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) float32 in [0, 1]: longer side scaled to ``size``, centred, black bars."""
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR)
    out = np.zeros((size, size, 3), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = np.asarray(resized, dtype=np.float32) / 255.0
    return out


def letterboxed_photos(count: int) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """``count`` whole photos spread evenly over the folder's boxes.csv, letterboxed to 192, with their hand boxes
    (x0, y0, x1, y1) mapped into the letterboxed image's pixels."""
    boxes: dict[str, list[list[float]]] = {}
    with open(PHOTOS / 'boxes.csv', newline='') as handle:
        for row in csv.DictReader(handle):
            boxes.setdefault(row['filename'], []).append([float(row[k]) for k in ('xmin', 'ymin', 'xmax', 'ymax')])
    names = sorted(boxes)
    picks = [names[int(i)] for i in np.linspace(0, len(names) - 1, count)]
    images, mapped = [], []
    for name in picks:
        with Image.open(PHOTOS / name) as photo:
            rgb = np.asarray(photo.convert('RGB'))
        images.append(letterbox(rgb))
        height, width = rgb.shape[:2]
        scale = PALM_INPUT_SIZE / max(height, width)
        left = (PALM_INPUT_SIZE - max(1, round(width * scale))) // 2
        top = (PALM_INPUT_SIZE - max(1, round(height * scale))) // 2
        mapped.append(np.array(boxes[name]) * scale + np.array([left, top, left, top]))
    return np.stack(images), [str(PHOTOS / name) for name in picks], mapped


def palm_anchor_centres() -> np.ndarray:
    """(2016, 2) anchor centres in input pixels, in the graph's order: the stride-8 map (24x24 cells, 2 anchors
    each) then the stride-16 map (12x12, 6 each), row by row."""
    centres = []
    for cells, per_cell in ((24, 2), (12, 6)):
        y, x = np.mgrid[0:cells, 0:cells]
        cell = np.stack([x.ravel() + 0.5, y.ravel() + 0.5], axis=1) * (PALM_INPUT_SIZE / cells)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres)


def best_palm_on_hand(out: dict[str, np.ndarray], boxes: Sequence[np.ndarray]) -> list[bool]:
    """Whether each image's best-scoring anchor puts its box centre inside one of the image's hand boxes."""
    anchors = palm_anchor_centres()
    hits = []
    for scores, regressors, hand_boxes in zip(out['scores'], out['regressors'], boxes, strict=True):
        best = int(scores.argmax())
        x, y = anchors[best] + regressors[best, :2]
        hits.append(
            bool(
                (
                    (hand_boxes[:, 0] <= x)
                    & (x <= hand_boxes[:, 2])
                    & (hand_boxes[:, 1] <= y)
                    & (y <= hand_boxes[:, 3])
                ).any()
            )
        )
    return hits


def run_palm_teacher(graph_inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The original palm graph on inputs already in the graph's range; ``regressors`` (N, 2016, 18), ``scores``."""
    roles = {name: v['name'] for name, v in json.loads(PALM_GRAPH.read_text())['output_roles'].items()}
    raw = _interpreter(PALM_TFLITE, graph_inputs)
    n = len(graph_inputs)
    return {'regressors': raw[roles['regressors']].reshape(n, -1, 18), 'scores': raw[roles['scores']].reshape(n, -1)}


def compare_palm(port: dict[str, np.ndarray], ref: dict[str, np.ndarray], rows: slice) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in ('regressors', 'scores'):
        diff = np.abs(port[key][rows] - ref[key][rows])
        out[f'{key}_abs_max'] = float(diff.max())
        out[f'{key}_rel_max'] = float(diff.max() / np.abs(ref[key][rows]).max())
    # what MediaPipe reads: the best anchor's probability, and that anchor's box and keypoints
    best_anchor = ref['scores'][rows].argmax(axis=1)
    picked = np.arange(len(best_anchor))
    at_best = port['regressors'][rows][picked, best_anchor] - ref['regressors'][rows][picked, best_anchor]
    out['best_anchor_regressors_abs_max'] = float(np.abs(at_best).max())
    best = lambda s: 1.0 / (1.0 + np.exp(-s[rows].max(axis=1)))  # noqa: E731
    out['best_probability_abs_max'] = float(np.abs(best(port['scores']) - best(ref['scores'])).max())
    return out


def _sigmoid_max(scores: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in 1.0 / (1.0 + np.exp(-scores.max(axis=1)))]


def main_palm(args: argparse.Namespace) -> dict[str, Any]:
    random_images = np.stack(
        [np.random.default_rng(s).random((PALM_INPUT_SIZE, PALM_INPUT_SIZE, 3), dtype=np.float32) for s in RANDOM_SEEDS]
    )
    photos, paths, boxes = letterboxed_photos(args.photos)
    patterns = np.stack([reference_seed_image(s, PALM_INPUT_SIZE, PALM_REFERENCE_CELL) for s in REFERENCE_SEEDS])
    images = np.concatenate([random_images, photos, expand_reference(patterns, PALM_REFERENCE_CELL)])
    count = len(photos)
    groups = {'random': slice(0, 8), 'real_photos': slice(8, 8 + count), 'reference': slice(8 + count, 10 + count)}

    # one interpreter run: every input in [0, 1] (the graph's range), then the photos mapped to [-1, 1]
    both = run_palm_teacher(np.concatenate([images, photos * 2.0 - 1.0]))
    ref = {k: v[: len(images)] for k, v in both.items()}
    wrong_range = {k: v[len(images) :] for k, v in both.items()}
    on_photos = {k: v[groups['real_photos']] for k, v in ref.items()}
    model = load_palm_model()
    port = run_port(model, images)
    port_bf16 = run_port(model, images, bf16=True)
    report: dict[str, Any] = {
        'fp32': {name: compare_palm(port, ref, rows) for name, rows in groups.items()},
        'bf16_autocast': {name: compare_palm(port_bf16, ref, rows) for name, rows in groups.items()},
        'input_range': {
            'photos': [Path(p).name for p in paths],
            'tflite_0_to_1_best_probability': _sigmoid_max(on_photos['scores']),
            'tflite_0_to_1_best_on_a_hand': best_palm_on_hand(on_photos, boxes),
            'tflite_minus1_to_1_best_probability': _sigmoid_max(wrong_range['scores']),
            'tflite_minus1_to_1_best_on_a_hand': best_palm_on_hand(wrong_range, boxes),
            'port_best_probability': _sigmoid_max(port['scores'][groups['real_photos']]),
        },
    }
    if not args.no_timing:
        report[f'timing_batch1_{args.threads}thread'] = time_port(model, photos[0], args.runs, args.threads)
    if args.write_reference:
        rows = groups['reference']
        scores = ref['scores'][rows].astype(np.float32)
        # the best anchors of each input and an even spread over both feature maps
        top = np.argsort(-scores, axis=1, kind='stable')[:, : PALM_REFERENCE_ROWS // 4].reshape(-1)
        spread = np.linspace(0, scores.shape[1] - 1, PALM_REFERENCE_ROWS - len(top)).round().astype(int)
        anchors = np.unique(np.concatenate([top, spread]))
        PALM_REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            PALM_REFERENCE,
            seeds=np.array(REFERENCE_SEEDS),
            patterns=patterns,
            scores=scores,
            anchors=anchors,
            regressors=ref['regressors'][rows][:, anchors].astype(np.float32),
        )
        report['reference_written'] = str(PALM_REFERENCE.relative_to(REPO))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', choices=('landmark', 'palm'), default='landmark')
    parser.add_argument('--write-reference', action='store_true', help="(re)write the unit test's reference file")
    parser.add_argument('--report', type=Path, help='also write the figures as JSON here')
    parser.add_argument('--no-timing', action='store_true')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads of the timing')
    parser.add_argument('--runs', type=int, default=30, help='timed forwards (the median is reported)')
    parser.add_argument('--photos', type=int, default=8, help='palm: how many letterboxed photos')
    args = parser.parse_args(argv)
    report = main_palm(args) if args.model == 'palm' else main_landmark(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + '\n')
    return 0


def main_landmark(args: argparse.Namespace) -> dict[str, Any]:
    random_images = np.stack([random_image(s) for s in RANDOM_SEEDS])
    crops, photos = hand_crops(8)
    patterns = np.stack([reference_seed_image(s) for s in REFERENCE_SEEDS])
    images = np.concatenate([random_images, crops, expand_reference(patterns)])
    groups = {'random': slice(0, 8), 'real_crops': slice(8, 16), 'reference': slice(16, 18)}

    ref = run_teacher(images, photos)
    model = load_landmark_model()
    port = run_port(model, images)
    port_bf16 = run_port(model, images, bf16=True)
    report: dict[str, Any] = {
        'fp32': {name: compare(port, ref, rows) for name, rows in groups.items()},
        'bf16_autocast': {name: compare(port_bf16, ref, rows) for name, rows in groups.items()},
        'real_crops': {
            'photos': [Path(p).name for p in photos],
            'presence_tflite': ref['presence'][8:16].round(4).tolist(),
            'handedness_raw_tflite': ref['handedness_raw'][8:16].round(4).tolist(),
            'handedness_port_p_right': port['handedness'][8:16].round(4).tolist(),
            'solution_p_right_photo': ref['solution_p_right'][:, 0].round(4).tolist(),
            'solution_p_right_mirror': ref['solution_p_right'][:, 1].round(4).tolist(),
        },
    }
    if not args.no_timing:
        report[f'timing_batch1_{args.threads}thread'] = time_port(model, crops[0], args.runs, args.threads)
    if args.write_reference:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        rows = groups['reference']
        arrays: dict[str, Any] = {role: ref[role][rows].astype(np.float32) for role in ROLES}
        np.savez_compressed(
            REFERENCE,
            seeds=np.array(REFERENCE_SEEDS),
            patterns=patterns,
            handedness_raw=ref['handedness_raw'][rows].astype(np.float32),
            **arrays,
        )
        report['reference_written'] = str(REFERENCE.relative_to(REPO))
    return report


if __name__ == '__main__':
    sys.exit(main())
