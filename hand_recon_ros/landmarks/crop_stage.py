"""A second look at each found hand: an upright square crop around ACR's keypoints through the landmark network.

The crop follows the hand, as MediaPipe's tracking does with its own landmarks: turned so that the wrist ->
middle-finger base points up, centred on the keypoints' box in that turned frame (moved a little towards the
fingers), its side a multiple of the box's longer side. ACR's keypoints only need to put the hand inside the crop;
the landmark network then reads the fingers at 224 px, where ACR's 24x24 maps cannot. ``iterations=2`` crops again
around the first answer.

Plain numpy / OpenCV / torch; no ROS import.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from hand_recon_ros.landmarks.mediapipe_port import INPUT_SIZE, MediaPipeLandmarkNet

__all__ = ['CropStage', 'LandmarkAnswer', 'crop_affine', 'crop_axes', 'crop_from_keypoints']

WRIST, MIDDLE_BASE = 0, 9  # project joint order = MediaPipe's landmark order


@dataclass(frozen=True)
class LandmarkAnswer:
    keypoints_2d: np.ndarray  # (21, 2) image pixels
    presence: float  # the network's probability that a hand is in the crop
    right_probability: float  # P(the person's right hand), for an unmirrored camera image
    world_landmarks: np.ndarray  # (21, 3) metres, the network's own 3D, x and y turned back to the image's axes
    crop_side_px: float  # side of the crop in image pixels


def crop_from_keypoints(
    keypoints: np.ndarray, scale: float = 2.0, shift_up: float = 0.1
) -> tuple[np.ndarray, float, float]:
    """(21, 2) pixels -> (centre (2,), side in pixels, angle in radians of the crop's 'up' in the image)."""
    points = np.asarray(keypoints, np.float64)
    if points.shape != (21, 2) or not np.isfinite(points).all():
        raise ValueError(f'keypoints must be finite (21, 2) pixels, got {points.shape}')
    if scale <= 0:
        raise ValueError(f'scale must be > 0, got {scale}')
    up = points[MIDDLE_BASE] - points[WRIST]
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, -1.0])
    angle = float(np.arctan2(up[1], up[0]))
    # the turned frame: its y axis points from the fingers to the wrist (image 'down' of the upright hand)
    down = -up / max(float(np.linalg.norm(up)), 1e-9)
    right = np.array([down[1], -down[0]])  # the crop's +x: down turned a quarter back
    local = np.stack([points @ right, points @ down], axis=1)
    lo, hi = local.min(axis=0), local.max(axis=0)
    side: float = float(np.max(hi - lo)) * scale
    side = max(side, 8.0)
    centre_local = (lo + hi) / 2 - np.array([0.0, shift_up * side])
    centre = centre_local[0] * right + centre_local[1] * down
    return centre, side, angle


def crop_axes(angle: float) -> np.ndarray:
    """(2, 2): rows = the image directions of the crop's +x and +y axes (the crop's up = ``angle``)."""
    down = -np.array([np.cos(angle), np.sin(angle)])
    right = np.array([down[1], -down[0]])  # the crop's +x: down turned a quarter back
    return np.stack([right, down])


def crop_affine(centre: np.ndarray, side: float, angle: float, size: int = INPUT_SIZE) -> np.ndarray:
    """2x3 affine taking image pixels to crop pixels (the crop's up = the direction ``angle`` in the image)."""
    right, down = crop_axes(angle)
    half = side / 2
    corners_image = np.asarray(
        [centre - half * right - half * down, centre + half * right - half * down, centre - half * right + half * down],
        np.float32,
    )
    corners_crop = np.asarray([[0, 0], [size, 0], [0, size]], np.float32)
    return np.asarray(cv2.getAffineTransform(corners_image, corners_crop), np.float64)


class CropStage:
    """Landmarks for hands already found: ``run(image_bgr, [keypoints (21, 2), ...]) -> [LandmarkAnswer, ...]``."""

    def __init__(
        self,
        model: MediaPipeLandmarkNet,
        scale: float = 2.0,
        shift_up: float = 0.1,
        iterations: int = 1,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if iterations < 1:
            raise ValueError(f'iterations must be >= 1, got {iterations}')
        self.model = model
        self.scale, self.shift_up, self.iterations = float(scale), float(shift_up), int(iterations)
        self.autocast_dtype = autocast_dtype

    @torch.inference_mode()
    def _forward(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        batch = torch.from_numpy(crops).float().div_(255.0)  # (B, 224, 224, 3) RGB
        if self.autocast_dtype is not None:
            with torch.autocast('cpu', dtype=self.autocast_dtype):
                out = self.model(batch)
        else:
            out = self.model(batch)
        return {k: v.float().numpy() for k, v in out.items()}

    def run(self, image_bgr: np.ndarray, keypoints: list[np.ndarray]) -> list[LandmarkAnswer]:
        if not keypoints:
            return []
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        current = [np.asarray(k, np.float64) for k in keypoints]
        answers: list[LandmarkAnswer] = []
        for _ in range(self.iterations):
            affines, sides, crops, axes = [], [], [], []
            for points in current:
                centre, side, angle = crop_from_keypoints(points, self.scale, self.shift_up)
                affine = crop_affine(centre, side, angle)
                affines.append(affine)
                axes.append(crop_axes(angle))
                sides.append(side)
                crops.append(cv2.warpAffine(rgb, affine, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR))
            out = self._forward(np.stack(crops))
            answers = []
            for i, affine in enumerate(affines):
                back = cv2.invertAffineTransform(affine)
                crop_xy = out['landmarks'][i, :, :2].astype(np.float64)
                image_xy = crop_xy @ back[:, :2].T + back[:, 2]
                world = out['world_landmarks'][i].astype(np.float64)
                world[:, :2] = world[:, :2] @ axes[i]  # crop axes -> image axes (z along the optical axis)
                answers.append(
                    LandmarkAnswer(
                        keypoints_2d=image_xy,
                        presence=float(out['presence'][i]),
                        # the network's 'Right' assumes a mirrored image: the person's left in a camera image
                        right_probability=float(1.0 - out['handedness'][i]),
                        world_landmarks=world,
                        crop_side_px=sides[i],
                    )
                )
            current = [a.keypoints_2d for a in answers]
        return answers
