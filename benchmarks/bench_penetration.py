"""Time the two-hand penetration metric and collision_loss (fwd+bwd) on hand-sized closed meshes.

Meshes: two closed 779-vertex / 1554-face ellipsoids (hull of a Fibonacci sphere, the vertex/face
count of a MANO hand capped at the wrist), 18 x 9 x 4 cm, overlapping so that ~200 vertices of each
lie inside the other (the doc's test scene has 215). ``--standin`` uses instead the procedural
stand-in right hand (hand_model.standin) capped at the wrist, and the same hand turned 90 deg about x
and pushed 1 cm into it. Target: metric < 10 ms per pair on CPU.

    .venv/bin/python benchmarks/bench_penetration.py [--runs 30] [--standin]
"""

import argparse

import numpy as np
import torch
import trimesh

from hand_recon_ros.hand_model.penetration import collision_loss, penetration_metrics
from hand_recon_ros.tools.timing import time_calls


def closed_ellipsoid(n_vertices=779, semi_axes=(0.09, 0.045, 0.02)):
    i = np.arange(n_vertices) + 0.5
    polar = np.arccos(1 - 2 * i / n_vertices)
    azimuth = np.pi * (1 + 5**0.5) * i
    pts = np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], 1)
    hull = trimesh.convex.convex_hull(pts)
    return np.asarray(hull.vertices) * semi_axes, np.asarray(hull.faces, dtype=np.int64)


def standin_hand():
    from hand_recon_ros.hand_model.mesh_utils import cap_boundary
    from tools.standin.generator import build_standin_arrays

    model = build_standin_arrays('right')
    verts, faces = cap_boundary(np.asarray(model['v_template']), np.asarray(model['f'], dtype=np.int64))
    return np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--standin', action='store_true', help='use the capped stand-in hand mesh')
    args = parser.parse_args()
    torch.set_num_threads(1)

    rot = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])[:3, :3]
    if args.standin:
        va, fa = standin_hand()
        centre = va.mean(0)
        vb = (va - centre) @ rot.T + centre + [0.0, 0.0, 0.01]
    else:
        va, fa = closed_ellipsoid()
        vb = va @ rot.T + [0.02, 0.01, 0.015]
    fb = fa
    m = penetration_metrics(va, fa, vb, fb)
    print(
        f'meshes: {len(va)} vertices / {len(fa)} faces each; {m["n_inside"]} vertices inside, '
        f'AVE-P {m["ave_p_mm"]:.2f} mm, MAX-P {m["max_p_mm"]:.2f} mm'
    )
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs}')

    t = time_calls(lambda: penetration_metrics(va, fa, vb, fb), args.runs, warmup=1)
    lo, med = t.best_ms, t.median_ms
    print(f'penetration_metrics (fast WN)      min {lo:6.2f} ms  median {med:6.2f} ms  (target < 10 ms)')
    t = time_calls(lambda: penetration_metrics(va, fa, vb, fb, exact=True), args.runs, warmup=1)
    lo, med = t.best_ms, t.median_ms
    print(f'penetration_metrics (exact WN)     min {lo:6.2f} ms  median {med:6.2f} ms')
    far = vb + [1.0, 0, 0]
    t = time_calls(lambda: penetration_metrics(va, fa, far, fb), args.runs, warmup=1)
    lo, med = t.best_ms, t.median_ms
    print(f'penetration_metrics (separated)    min {lo:6.2f} ms  median {med:6.2f} ms')

    ta = torch.tensor(va, dtype=torch.float32)
    tb = torch.tensor(vb, dtype=torch.float32)

    def fwd_bwd():
        a = ta.clone().requires_grad_(True)
        b = tb.clone().requires_grad_(True)
        collision_loss(a, fa, b, fb).backward()

    t = time_calls(fwd_bwd, args.runs, warmup=1)
    lo, med = t.best_ms, t.median_ms
    print(f'collision_loss fwd+bwd (B=1)       min {lo:6.2f} ms  median {med:6.2f} ms')
    batch = 8
    ba = ta.expand(batch, -1, -1).clone().requires_grad_(True)
    bb = tb.expand(batch, -1, -1).clone().requires_grad_(True)
    t = time_calls(lambda: collision_loss(ba, fa, bb, fb).sum().backward(), max(3, args.runs // 4), warmup=1)
    lo, med = t.best_ms, t.median_ms
    print(
        f'collision_loss fwd+bwd (B={batch})       min {lo:6.2f} ms  median {med:6.2f} ms '
        f'({med / batch:.2f} ms per pair)'
    )


if __name__ == '__main__':
    main()
