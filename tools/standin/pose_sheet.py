"""The loaded hand model (the stand-in unless MANO files are configured) drawn in a few poses, both sides.

python -m tools.standin.pose_sheet --out out/standin_poses.png
"""

import argparse
import os
import sys

import numpy as np

from tools.standin import generator as standin


def _view_basis(view):
    """(right, up, towards-viewer) unit vectors in the hand's rest frame."""
    if view == 'back':  # camera above the back of the hand, fingers up
        return np.array([0, 0, -1.0]), np.array([-1.0, 0, 0]), np.array([0, 1.0, 0])
    if view == 'palm':
        return np.array([0, 0, 1.0]), np.array([-1.0, 0, 0]), np.array([0, -1.0, 0])
    if view == 'side':  # from the thumb side
        return np.array([0, 1.0, 0]), np.array([-1.0, 0, 0]), np.array([0, 0, 1.0])
    raise ValueError(f'unknown view {view!r}')


def draw_mesh(ax, vertices, faces, view='back', face_colors=None, base_color=(0.85, 0.68, 0.55), side='right'):
    """Flat-shaded orthographic drawing of one mesh on a 2D matplotlib axis (painter's algorithm)."""
    from matplotlib.collections import PolyCollection  # noqa: PLC0415

    right, up, toward = _view_basis(view)
    if side == 'left':  # the same view of the mirrored hand (so the left thumb shows on the right)
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
    base = (
        np.tile(np.asarray(base_color, dtype=float), (len(faces), 1))
        if face_colors is None
        else np.asarray(face_colors, dtype=float)[:, :3]
    )
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

    from hand_recon_ros.hand_model.parts import face_part_labels  # noqa: PLC0415

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
                out = model(side, torch.zeros(1, 3), torch.tensor(rel[None], dtype=torch.float32), torch.zeros(1, 10))
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
    from hand_recon_ros.hand_model.model import load_hand_model  # noqa: PLC0415

    model = load_hand_model(args.mano_dir, flat_hand_mean=False)
    print(pose_sheet(model, args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
