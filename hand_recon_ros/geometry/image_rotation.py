"""Quarter turns of the image before the network, and of the results back (numpy + opencv, no ROS).

A camera mounted on its side or upside down shows people rolled by 90, 180 or 270 degrees, and the network was
trained on (nearly) upright people (``bench_real.py --sets rotated``). Turning the image clockwise by the mount's
angle gives the network an upright view: the view of a *virtual camera* rolled about the optical axis. Its pixels
and intrinsics follow from the turn; its results go back to the real camera's pixels and optical frame, so
everything published stays in the frame of the camera that took the image.

Pixel convention as in ``camera``: continuous coordinates, top-left corner at (0, 0). A clockwise turn of a
``width`` x ``height`` image by 90 degrees maps (u, v) to (height - v, u) (cv2.ROTATE_90_CLOCKWISE).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ['QUARTER_TURNS', 'check_turn', 'turn_image', 'pixel_map', 'turned_intrinsics', 'TurnedView']

QUARTER_TURNS = (0, 90, 180, 270)
_CV2_CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def check_turn(degrees: int) -> int:
    if isinstance(degrees, bool) or int(degrees) != degrees or int(degrees) not in QUARTER_TURNS:
        raise ValueError(f'image turn must be one of {QUARTER_TURNS} degrees (clockwise), got {degrees!r}')
    return int(degrees)


def turn_image(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` turned clockwise by ``degrees`` (a quarter-turn multiple); 0 returns it unchanged."""
    degrees = check_turn(degrees)
    return image if degrees == 0 else cv2.rotate(image, _CV2_CODES[degrees])


def pixel_map(degrees: int, width: int, height: int) -> np.ndarray:
    """3x3 map of homogeneous pixel coordinates from the ``width`` x ``height`` image to the turned one."""
    degrees = check_turn(degrees)
    w, h = float(width), float(height)
    return {
        0: np.eye(3),
        90: np.array([[0.0, -1.0, h], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
        180: np.array([[-1.0, 0.0, w], [0.0, -1.0, h], [0.0, 0.0, 1.0]]),
        270: np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, w], [0.0, 0.0, 1.0]]),
    }[degrees]


def turned_intrinsics(K: np.ndarray, degrees: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (K of the virtual camera that sees the turned image, R with p_virtual = R @ p_camera).

    The turn is a rotation R about the optical axis (the linear part of the pixel map), so a point projects to
    A K p / z in the turned image = A K R^T p_virtual / z: the virtual camera's K is A K R^T, exactly."""
    A = pixel_map(degrees, width, height)
    R = np.eye(3)
    R[:2, :2] = A[:2, :2]
    return A @ np.asarray(K, np.float64) @ R.T, R


class TurnedView:
    """One frame's turn: the image for the network, the virtual camera, and the way back for the results."""

    def __init__(self, degrees: int, width: int, height: int, K: np.ndarray):
        self.degrees = check_turn(degrees)
        self.size = (int(height), int(width))  # of the camera's image
        self.K = np.asarray(K, np.float64)
        self.K_virtual, self.R = turned_intrinsics(self.K, self.degrees, width, height)
        self._back = np.linalg.inv(pixel_map(self.degrees, width, height))

    def pixels_back(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) pixels of the turned image -> the camera's image."""
        p = np.asarray(points, np.float64)
        out = p @ self._back[:2, :2].T + self._back[:2, 2]
        return out.astype(np.asarray(points).dtype if np.asarray(points).dtype.kind == 'f' else np.float64)

    def points_back(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) points of the virtual camera's frame -> the camera's optical frame (same dtype)."""
        p = np.asarray(points)
        return (p.astype(np.float64) @ self.R).astype(p.dtype)  # R^T p for row vectors

    def rotation_back(self, matrices: np.ndarray) -> np.ndarray:
        """(..., 3, 3) orientations in the virtual camera's frame -> in the camera's frame."""
        return self.R.T @ np.asarray(matrices, np.float64)
