"""Bundled sample frames: two stand-in hands rendered over procedural backgrounds, with ground truth.

Deterministic from a seed, so the demo and the tests see the same frames on every machine without
shipping image files. Ground truth per frame: intrinsics, 21 joints and vertices of each hand in the
camera frame (metres), 2D keypoints.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np
import torch

from hand_recon_ros.geometry import rotations
from hand_recon_ros.geometry.camera import project_points

WIDTH, HEIGHT, FOCAL = 640, 480, 600.0
SKIN = {'right': (150, 170, 215), 'left': (140, 160, 205)}  # BGR


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random colour field plus stripes: never a blank background."""
    low = rng.integers(40, 200, (6, 8, 3)).astype(np.uint8)
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, np.pi)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / rng.uniform(8, 30)) > 0.6
    img[stripes] = (img[stripes] * 0.7).astype(np.uint8)
    return img


def sample_frames(n: int = 8, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield dicts with image (BGR uint8), K, and per-side ground truth."""
    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.hand_model.render import render_mesh_overlay

    rng = np.random.default_rng(seed)
    model = load_hand_model()
    K = np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1]])
    for i in range(n):
        image = _background(rng, HEIGHT, WIDTH)
        gt: dict[str, dict[str, np.ndarray]] = {}
        # Two hands side by side, facing the camera, approaching each other over the sequence.
        gap = 0.16 - 0.1 * i / max(n - 1, 1)
        for side, sign in (('right', -1.0), ('left', 1.0)):
            # Palm towards the camera, fingers up: the hand's finger axis (-x) -> camera up (-y), palm (-y) ->
            # towards the camera; 120 deg about (1, 1, 1), mirrored (a, -b, -c) for the left hand.
            base = np.full(3, 2 * np.pi / 3 / np.sqrt(3)) * np.array([1.0, -sign, -sign]) * np.array([1, -1, -1])
            upright = np.diag([-1.0, -1.0, 1.0]) @ rotations.axis_angle_to_matrix(base + rng.normal(0, 0.12, 3))
            orient = torch.tensor(rotations.matrix_to_axis_angle(upright)[None], dtype=torch.float32)
            pose = torch.tensor(rng.normal(0, 0.2, (1, 45)), dtype=torch.float32)
            betas = torch.tensor(rng.normal(0, 0.5, (1, 10)), dtype=torch.float32)
            with torch.no_grad():
                out = model(side, orient, pose, betas)
            verts = out['vertices'][0].numpy().astype(np.float64)
            joints = out['joints'][0].numpy().astype(np.float64)
            shift = np.array([sign * gap / 2, 0.02 * np.sin(i), 0.55]) - joints[9]
            verts, joints = verts + shift, joints + shift
            image = render_mesh_overlay(image, verts, model.faces(side), K, SKIN[side], alpha=1.0)
            gt[side] = {'joints': joints, 'vertices': verts, 'keypoints_2d': project_points(joints, K)}
        yield {'index': i, 'image': image, 'K': K, 'gt': gt}


def write_frames(out_dir: Union[str, Path], n: int = 8, seed: int = 0) -> list[Path]:
    """Write frame_XX.png + ground_truth.json; returns the list of frame paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, paths = [], []
    for frame in sample_frames(n, seed):
        path = out / f"frame_{frame['index']:02d}.png"
        cv2.imwrite(str(path), frame['image'])
        paths.append(path)
        records.append(
            {
                'image': path.name,
                'K': frame['K'].tolist(),
                'hands': {
                    side: {k: np.asarray(v).tolist() for k, v in g.items() if k != 'vertices'}
                    for side, g in frame['gt'].items()
                },
            }
        )
    (out / 'ground_truth.json').write_text(json.dumps({'width': WIDTH, 'height': HEIGHT, 'frames': records}))
    return paths
