"""Measure the PyTorch port against the original .tflite run by the official LiteRT interpreter.

Inputs: 8 seeded uniform-random images, 8 real hand crops (photos from ``shared/realimgs-train/handsdataset/train``,
square crop around the ``boxes.csv`` box enlarged 1.5x, resized to 224; the photos are read in place, never copied),
and the 2 seeded inputs of the unit test's reference file. The reference side runs in ``.venv-teacher`` through
``teacher_run.py`` (a subprocess exchanging .npz files under /tmp). Also times the port at batch 1 on one CPU thread.

Usage (repository root)::

    nice -n 19 .venv/bin/python -m tools.mediapipe_landmarks.parity [--write-reference] [--report out/mp_parity.json]
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

from hand_recon_ros.landmarks.mediapipe_port import INPUT_SIZE, load_landmark_model

REPO = Path(__file__).resolve().parents[2]
TEACHER_PYTHON = REPO / '.venv-teacher' / 'bin' / 'python'
TFLITE = REPO / '.venv-teacher/lib/python3.11/site-packages/mediapipe/modules/hand_landmark/hand_landmark_full.tflite'
PHOTOS = REPO.parent / 'shared' / 'realimgs-train' / 'handsdataset' / 'train'
REFERENCE = REPO / 'test' / 'data' / 'mp_landmark_reference.npz'
GRAPH = REPO / 'models' / 'mp_hand_landmark_full.graph.json'
RANDOM_SEEDS = tuple(range(1000, 1008))
REFERENCE_SEEDS = (7, 11)
REFERENCE_CELL = 8  # reference inputs: a seeded 28x28 uint8 image upsampled 8x (nearest), so the file stays small
ROLES = ('landmarks', 'presence', 'handedness', 'world_landmarks')


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)


def reference_seed_image(seed: int) -> np.ndarray:
    """The small uint8 pattern stored in the reference file (28x28x3)."""
    size = INPUT_SIZE // REFERENCE_CELL
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def expand_reference(pattern: np.ndarray) -> np.ndarray:
    """(N, 28, 28, 3) uint8 -> (N, 224, 224, 3) float32 in [0, 1]."""
    big = np.repeat(np.repeat(pattern, REFERENCE_CELL, axis=-3), REFERENCE_CELL, axis=-2)
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


def run_teacher(images: np.ndarray, photos: Sequence[str]) -> dict[str, np.ndarray]:
    """The original graph on ``images`` through LiteRT in the teacher env; outputs keyed by role."""
    roles = {name: v['name'] for name, v in json.loads(GRAPH.read_text())['output_roles'].items()}
    with tempfile.TemporaryDirectory(prefix='mp_parity_') as tmp:
        inputs, outputs = Path(tmp) / 'in.npz', Path(tmp) / 'out.npz'
        np.savez(inputs, images=images.astype(np.float32))
        command = [str(TEACHER_PYTHON), str(Path(__file__).with_name('teacher_run.py'))]
        command += ['--model', str(TFLITE), '--inputs', str(inputs), '--out', str(outputs)]
        if photos:
            command += ['--photos', *photos]
        subprocess.run(command, check=True)
        with np.load(outputs) as data:
            raw = {k: data[k] for k in data.files}
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


def time_port(model: torch.nn.Module, image: np.ndarray, runs: int = 30) -> dict[str, float]:
    torch.set_num_threads(1)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--write-reference', action='store_true', help=f'(re)write {REFERENCE.relative_to(REPO)}')
    parser.add_argument('--report', type=Path, help='also write the figures as JSON here')
    parser.add_argument('--no-timing', action='store_true')
    args = parser.parse_args(argv)

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
        report['timing_batch1_1thread'] = time_port(model, crops[0])
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
    text = json.dumps(report, indent=1)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
