"""The OpenCV overlay renderer of hand meshes on camera images (the node's debug image, the demo, the sample frames).

The pose sheet for people (the hand model in a few poses) is tooling: tools/standin/pose_sheet.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

_LIGHT = np.array([-0.3, 0.4, 0.85]) / np.linalg.norm([-0.3, 0.4, 0.85])  # camera frame, light travel direction


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


Color = tuple[float, float, float]


def render_mesh_overlay(
    image_bgr: np.ndarray,
    vertices_cam: ArrayLike | list[ArrayLike],
    faces: ArrayLike | list[ArrayLike],
    K: ArrayLike,
    color: Color | list[Color] = (80, 170, 255),
    alpha: float = 0.75,
    shift: int = 4,
) -> np.ndarray:
    """Paint meshes onto a BGR image: painter's algorithm over projected, flat-shaded triangles.

    vertices_cam: (V, 3) metres in the OpenCV camera frame (x right, y down, z forward), or a list of
    such arrays (one per mesh, e.g. both hands, depth-sorted together); faces: (F, 3) or a list; K: 3x3
    intrinsics; color: BGR tuple or a list of them. Back faces and faces behind the camera are skipped.
    Returns a new image; the input is not modified.
    """
    import cv2  # noqa: PLC0415

    image = np.asarray(image_bgr)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image_bgr must be an (H, W, 3) uint8 image, got {image.shape} {image.dtype}')
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'K must be 3x3, got {K.shape}')
    verts_list, faces_list = _as_list(vertices_cam), _as_list(faces)
    colors: list[Any] = [color]
    if isinstance(color, list) and len(color) and np.ndim(color[0]) == 1:
        colors = color
    if len(faces_list) == 1 and len(verts_list) > 1:
        faces_list = faces_list * len(verts_list)
    if len(colors) == 1 and len(verts_list) > 1:
        colors = colors * len(verts_list)
    if not (len(verts_list) == len(faces_list) == len(colors)):
        raise ValueError('vertices_cam, faces and color lists must have the same length')

    poly_list: list[np.ndarray] = []
    depth_list: list[np.ndarray] = []
    shade_list: list[np.ndarray] = []
    for v, f, c in zip(verts_list, faces_list, colors):
        v = np.asarray(v, dtype=np.float64)
        f = np.asarray(f, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f'vertices must be (V, 3), got {v.shape}')
        tri = v[f]  # (F, 3, 3)
        z = tri[:, :, 2]
        front = np.all(z > 1e-3, axis=1)
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        centre = tri.mean(axis=1)
        front &= np.einsum('ij,ij->i', n, centre) < 0  # outward normal faces the camera
        tri, n, z = tri[front], n[front], z[front]
        if len(tri) == 0:
            continue
        uvw = tri @ K.T
        uv = uvw[:, :, :2] / uvw[:, :, 2:3]
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        lambert = np.clip(-(n @ _LIGHT), 0.0, 1.0)
        shade = 0.35 + 0.65 * lambert
        poly_list.append(np.round(uv * (1 << shift)).astype(np.int32))
        depth_list.append(z.mean(axis=1))
        shade_list.append(shade[:, None] * np.asarray(c, dtype=np.float64)[None, :])
    out = image.copy()
    if not poly_list:
        return out
    polys, depths = np.concatenate(poly_list), np.concatenate(depth_list)
    order = np.argsort(-depths, kind='stable')  # far to near
    layer = out.copy()
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    shades = np.clip(np.concatenate(shade_list), 0, 255).astype(np.int32).tolist()
    fill = cv2.fillConvexPoly
    for i in order.tolist():
        fill(layer, polys[i], shades[i], cv2.LINE_8, shift)
        fill(mask, polys[i], 255, cv2.LINE_8, shift)
    if alpha >= 1.0:
        out[mask > 0] = layer[mask > 0]
    else:
        sel = mask > 0
        out[sel] = (alpha * layer[sel] + (1.0 - alpha) * image[sel] + 0.5).astype(np.uint8)
    return out
