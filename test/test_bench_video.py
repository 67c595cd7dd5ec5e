"""bench_video.py's camera: the frames it films and the labels it moves must stay together."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from hand_recon_ros.detection_metrics import LabelledHand

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('bench_video', REPO / 'benchmarks' / 'bench_video.py')
bench_video = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_video)


def test_moved_labels_land_where_the_warp_moves_the_pixels():
    height, width = 240, 320
    points = np.array([[100.5, 80.5], [220.5, 150.5]])
    keypoints = np.repeat(points[:1], 21, axis=0)
    keypoints[1] = points[1]
    hand = LabelledHand(box=np.array([100.0, 80.0, 221.0, 151.0]), side='left', keypoints=keypoints)
    for t in (0, 3, 7):
        affine = bench_video.camera_step(width, height, t, pan=4.0, zoom=0.01)
        moved = bench_video.moved_labels([hand], affine)[0]
        for k, (x, y) in zip((0, 1), points):
            photo = np.zeros((height, width), np.float32)
            photo[int(y), int(x)] = 1.0
            frame = cv2.warpAffine(photo, affine, (width, height), flags=cv2.INTER_LINEAR)
            cy, cx = np.unravel_index(np.argmax(frame), frame.shape)
            # the dot's brightest pixel: within a pixel of the moved label (pixel centres at +0.5)
            assert np.abs(np.array([cx + 0.5, cy + 0.5]) - moved.keypoints[k]).max() <= 1.0
        assert moved.side == 'left' and np.all(moved.box[:2] <= moved.keypoints.min(axis=0))
        assert np.all(moved.box[2:] >= moved.keypoints.max(axis=0))
    assert np.allclose(bench_video.camera_step(width, height, 0, 4.0, 0.01), [[1, 0, 0], [0, 1, 0]])
