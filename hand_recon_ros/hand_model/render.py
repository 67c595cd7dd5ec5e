"""Pictures of hand meshes: an OpenCV overlay renderer (for the node) and a pose sheet (for people).

``python -m hand_recon_ros.hand_model.render --out out/standin_poses.png`` draws the loaded hand model
(the stand-in unless MANO files are configured) in a few poses, both sides.
"""
import argparse
import os
import sys

import numpy as np

_LIGHT = np.array([-0.3, 0.4, 0.85]) / np.linalg.norm([-0.3, 0.4, 0.85])   # camera frame, light travel direction


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def render_mesh_overlay(image_bgr, vertices_cam, faces, K, color=(80, 170, 255), alpha=0.75, shift=4):
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
    colors = color if (isinstance(color, list) and len(color) and np.ndim(color[0]) == 1) else [color]
    if len(faces_list) == 1 and len(verts_list) > 1:
        faces_list = faces_list * len(verts_list)
    if len(colors) == 1 and len(verts_list) > 1:
        colors = colors * len(verts_list)
    if not (len(verts_list) == len(faces_list) == len(colors)):
        raise ValueError('vertices_cam, faces and color lists must have the same length')

    polys, depths, shades = [], [], []
    for v, f, c in zip(verts_list, faces_list, colors):
        v = np.asarray(v, dtype=np.float64)
        f = np.asarray(f, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f'vertices must be (V, 3), got {v.shape}')
        tri = v[f]                                           # (F, 3, 3)
        z = tri[:, :, 2]
        front = np.all(z > 1e-3, axis=1)
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        centre = tri.mean(axis=1)
        front &= np.einsum('ij,ij->i', n, centre) < 0        # outward normal faces the camera
        tri, n, z = tri[front], n[front], z[front]
        if len(tri) == 0:
            continue
        uvw = tri @ K.T
        uv = uvw[:, :, :2] / uvw[:, :, 2:3]
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        lambert = np.clip(-(n @ _LIGHT), 0.0, 1.0)
        shade = 0.35 + 0.65 * lambert
        polys.append(np.round(uv * (1 << shift)).astype(np.int32))
        depths.append(z.mean(axis=1))
        shades.append(shade[:, None] * np.asarray(c, dtype=np.float64)[None, :])
    out = image.copy()
    if not polys:
        return out
    polys, depths, shades = np.concatenate(polys), np.concatenate(depths), np.concatenate(shades)
    order = np.argsort(-depths, kind='stable')                # far to near
    layer = out.copy()
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    shades = np.clip(shades, 0, 255).astype(np.int32).tolist()
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


# ------------------------------------------------------------------------------------------------
# Pose sheet (matplotlib, Agg)
# ------------------------------------------------------------------------------------------------
def _view_basis(view):
    """(right, up, towards-viewer) unit vectors in the hand's rest frame."""
    if view == 'back':        # camera above the back of the hand, fingers up
        return np.array([0, 0, -1.0]), np.array([-1.0, 0, 0]), np.array([0, 1.0, 0])
    if view == 'palm':
        return np.array([0, 0, 1.0]), np.array([-1.0, 0, 0]), np.array([0, -1.0, 0])
    if view == 'side':        # from the thumb side
        return np.array([0, 1.0, 0]), np.array([-1.0, 0, 0]), np.array([0, 0, 1.0])
    raise ValueError(f'unknown view {view!r}')


def draw_mesh(ax, vertices, faces, view='back', face_colors=None, base_color=(0.85, 0.68, 0.55), side='right'):
    """Flat-shaded orthographic drawing of one mesh on a 2D matplotlib axis (painter's algorithm)."""
    from matplotlib.collections import PolyCollection  # noqa: PLC0415

    right, up, toward = _view_basis(view)
    if side == 'left':       # the same view of the mirrored hand (so the left thumb shows on the right)
        up, toward = up * np.array([-1, 1, 1]), toward * np.array([-1, 1, 1])
        right = np.cross(up, toward)
    v = np.asarray(vertices, dtype=np.float64)
    tri = v[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    depth = tri.mean(1) @ toward
    visible = n @ toward > 0
    order = np.argsort(depth[visible], kind='stable')
    idx = np.nonzero(visible)[0][order]
    light = 0.6 * toward + 0.5 * up - 0.3 * right
    light /= np.linalg.norm(light)
    shade = 0.3 + 0.7 * np.clip(n[idx] @ light, 0, 1)
    base = np.tile(np.asarray(base_color, dtype=float), (len(faces), 1)) if face_colors is None \
        else np.asarray(face_colors, dtype=float)[:, :3]
    cols = np.clip(base[idx] * shade[:, None], 0, 1)
    xy = np.stack([tri[idx] @ right, tri[idx] @ up], axis=-1)
    ax.add_collection(PolyCollection(xy, facecolors=cols, edgecolors=cols * 0.85, linewidths=0.15))
    ax.set_aspect('equal')
    ax.axis('off')
    return xy.reshape(-1, 2)


def pose_sheet(model, out_path, poses=('flat', 'mean', 'half_fist', 'fist', 'pointing', 'spread')):
    """Render each pose for both hands (back view and a side view) plus part colours; write a PNG."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from . import standin  # noqa: PLC0415
    from .parts import face_part_labels  # noqa: PLC0415

    rows = [('right', 'back'), ('right', 'side'), ('left', 'back')]
    fig, axes = plt.subplots(len(rows), len(poses) + 1, figsize=(2.3 * (len(poses) + 1), 2.9 * len(rows)))
    cmap = plt.get_cmap('tab20')
    for r, (side, view) in enumerate(rows):
        hands_mean = model.model_array(side, 'hands_mean').astype(np.float64)
        for c, name in enumerate(list(poses) + ['parts']):
            ax = axes[r, c]
            if name in ('mean', 'parts'):
                pose = hands_mean
            else:
                pose = standin.named_pose('flat' if name == 'flat' else name, side)
            # the model adds hands_mean unless flat_hand_mean: remove it so the pose is absolute
            rel = pose - (0 if model.flat_hand_mean else hands_mean)
            with torch.no_grad():
                out = model(side, torch.zeros(1, 3), torch.tensor(rel[None], dtype=torch.float32),
                            torch.zeros(1, 10))
            v = out['vertices'][0].numpy() - model.rest_joints(side)[0]
            faces = model.faces(side)
            colors = None
            if name == 'parts':
                colors = np.array([cmap(int(p) % 20) for p in face_part_labels(faces, model.part_labels(side))])
            xy = draw_mesh(ax, v, faces, view, face_colors=colors, side=side)
            ax.set_xlim(xy[:, 0].min() - 0.01, xy[:, 0].max() + 0.01)
            ax.set_ylim(xy[:, 1].min() - 0.01, xy[:, 1].max() + 0.01)
            ax.set_title(f'{side} {name}\n{view} view', fontsize=8)
    fig.suptitle(f'{model.identity}' + ('  (stand-in: NOT MANO)' if model.is_standin else ''), fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(description='Render the hand model in a few poses.')
    parser.add_argument('--out', default='out/standin_poses.png')
    parser.add_argument('--mano-dir', default=None, help='MANO directory (default: env or stand-in)')
    args = parser.parse_args(argv)
    from .model import load_hand_model  # noqa: PLC0415
    model = load_hand_model(args.mano_dir, flat_hand_mean=False)
    print(pose_sheet(model, args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
