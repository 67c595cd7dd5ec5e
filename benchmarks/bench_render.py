"""The synthetic-data rasteriser (hand_recon_train/synth/raster.py) against library ray casters, same scenes.

Scenes: two-hand samples of the real SynthGenerator ('interacting' and 'separate' layouts, seed 0); each is
re-rendered from its camera-frame vertices, the hand model's watertight faces and its K (scaled to S x S).
Renderers (the ones not installed are listed as such):
  ours              rasterize(): painter's order per face with cv2.fillConvexPoly + barycentrics + depth
  open3d            t.geometry.RaycastingScene (Embree), rays as float32 tensors
  trimesh + embree  trimesh.ray.ray_pyembree (embreex)
  trimesh numpy     trimesh.ray.ray_triangle (needs rtree); slow, so it runs on at most --slow-scenes scenes
The ray casters shoot one ray per pixel centre through K, only inside the projected mesh's bounding box (the
rest is background for every renderer); their time includes building the acceleration structure, which a
generator must do for every sample. Every renderer returns a face-id image and a camera-z depth image.

Agreement is measured against ours, per pixel of the S x S image:
  agree        cover/miss identical and, where both cover, the same hand (over all pixels)
  hand px      the same, over the pixels that either renderer covers (background excluded)
  same face    of the pixels both cover; 'centre in' = of those whose centre lies inside the face that painted
               ours (the rest are pixels cv2 painted because a face merely touches them)
  order err    pixels per frame whose centre lies inside our face while the ray hits a surface > 1 mm nearer:
               what painter's order per face gets wrong (where the hands or fingers touch)
  cover        covered pixels relative to ours (cv2 fills every pixel a face touches, so ours is fatter)

    .venv/bin/python benchmarks/bench_render.py              # 10 scenes, S = 128 / 256 / 512 (< 60 s)
    .venv/bin/python benchmarks/bench_render.py --quick      # 1 scene, S = 64 (seconds)
Optional renderers: .venv/bin/pip install --no-deps -r requirements/bench-render.txt (see the comment there)
"""

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

from hand_recon_ros.conventions import SIDES
from hand_recon_train.synth import SynthConfig, SynthGenerator
from hand_recon_train.synth.raster import rasterize

ORDER_TOLERANCE_M = 1e-3


def two_hand_scenes(count, base_size=256, hand_model=None):
    """(vertices (V, 3), faces (F, 3), owner (F,), K at base_size, scene name) for the first `count` samples
    that hold both hands."""
    if count < 1:
        raise ValueError(f'count must be >= 1, got {count}')
    gen = SynthGenerator(
        SynthConfig(image_size=base_size, scene_weights={'interacting': 2.0, 'separate': 1.0}),
        seed=0,
        hand_model=hand_model,
    )
    scenes, index = [], 0
    while len(scenes) < count:
        sample = gen.sample(index)
        index += 1
        present = np.abs(sample['vertices']).reshape(2, -1).max(axis=1) > 0
        if not present.all():
            continue
        verts, faces, owner, offset = [], [], [], 0
        for s_idx, side in enumerate(SIDES):
            wv = np.asarray(gen.model.watertight_vertices(side, sample['vertices'][s_idx].astype(np.float64)))
            wf = np.asarray(gen.model.watertight_faces(side), dtype=np.int64)
            verts.append(wv)
            faces.append(wf + offset)
            owner.append(np.full(len(wf), s_idx))
            offset += len(wv)
        scenes.append(
            (np.concatenate(verts), np.concatenate(faces), np.concatenate(owner), sample['K'], sample['scene'])
        )
    return scenes


def scaled_K(K, scale):
    out = np.array(K, dtype=np.float64)
    out[:2] *= scale  # corner-origin pixels: focal lengths and centre scale alike
    return out


def render_ours(verts, faces, K, size):
    raster = rasterize(verts, faces, K, size, size)
    return raster.face_id, raster.depth_image()


def pixel_rays(verts, K, size):
    """Unit ray directions through the pixel centres inside the projected bounding box (+1 px margin), and
    their flat pixel indices."""
    z = verts[:, 2]
    if np.all(z > 1e-6):
        uv = verts[:, :2] / z[:, None] * np.diag(K)[:2] + K[:2, 2]
        lo = np.clip(np.floor(uv.min(axis=0) - 0.5).astype(int) - 1, 0, size)
        hi = np.clip(np.ceil(uv.max(axis=0) - 0.5).astype(int) + 2, 0, size)
    else:  # something behind the camera: no safe box
        lo, hi = np.zeros(2, int), np.full(2, size)
    ys, xs = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]]
    xs, ys = xs.ravel(), ys.ravel()
    d = np.stack([(xs + 0.5 - K[0, 2]) / K[0, 0], (ys + 0.5 - K[1, 2]) / K[1, 1], np.ones(len(xs))], axis=1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d, ys * size + xs


def _images(size, flat, tri, depth):
    face_id = np.full(size * size, -1, np.int32)
    depth_img = np.full(size * size, np.inf, np.float32)
    face_id[flat] = tri
    depth_img[flat] = depth
    return face_id.reshape(size, size), depth_img.reshape(size, size)


# open3d imports these at start-up only for its plotly/dash web viewer. dash is not installed on purpose: it
# registers a pytest plugin that fails this repo's test runs (warnings are errors), so stand-ins fill in.
_VIEWER_ONLY_MODULES = {'dash': ('html', 'dcc', 'Dash'), 'plotly': (), 'plotly.graph_objects': ()}


def _import_open3d():
    import importlib.util
    import types

    if importlib.util.find_spec('open3d') is None:
        raise ImportError('No module named open3d')
    missing = {name for name in _VIEWER_ONLY_MODULES if importlib.util.find_spec(name.split('.')[0]) is None}
    for name in sorted(missing):  # parents first
        stub = sys.modules.setdefault(name, types.ModuleType(name))
        for attribute in _VIEWER_ONLY_MODULES[name]:
            setattr(stub, attribute, None)
        if '.' in name:
            setattr(sys.modules[name.split('.')[0]], name.rsplit('.', 1)[1], stub)
    import open3d

    return open3d


def make_open3d():
    o3d = _import_open3d()

    def render(verts, faces, K, size):
        d, flat = pixel_rays(verts, K, size)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
        rays = np.concatenate([np.zeros_like(d), d], axis=1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        prim = hit['primitive_ids'].numpy().astype(np.int64)
        t = hit['t_hit'].numpy()
        miss = prim == scene.INVALID_ID
        prim[miss] = -1
        return _images(size, flat, prim, np.where(miss, np.inf, t * d[:, 2]))

    return render, f'open3d {o3d.__version__}'


def _make_trimesh(module_name):
    from importlib import import_module

    import trimesh

    module = import_module(f'trimesh.ray.{module_name}')
    if module_name == 'ray_triangle':
        import rtree  # trimesh's candidate search needs it; fail here, not mid-run

        label = f'trimesh {trimesh.__version__}, rtree {rtree.__version__}'
    else:
        import embreex

        label = f'trimesh {trimesh.__version__}, embreex {embreex.__version__}'

    def render(verts, faces, K, size):
        d, flat = pixel_rays(verts, K, size)
        mesh = trimesh.Trimesh(verts, faces, process=False)
        caster = module.RayMeshIntersector(mesh)
        tri, ray, loc = caster.intersects_id(np.zeros_like(d), d, multiple_hits=False, return_locations=True)
        tri_full = np.full(len(d), -1, np.int64)
        depth = np.full(len(d), np.inf)
        tri_full[ray] = tri
        depth[ray] = loc[:, 2]
        return _images(size, flat, tri_full, depth)

    return render, label


RENDERERS = {
    'open3d': make_open3d,
    'trimesh + embree': lambda: _make_trimesh('ray_pyembree'),
    'trimesh numpy': lambda: _make_trimesh('ray_triangle'),
}
SLOW = {'trimesh numpy'}


def centre_inside_face(verts, faces, K, face_id):
    """Per covered pixel of ours: does its centre lie inside (not just touch) the face that painted it."""
    ys, xs = np.nonzero(face_id >= 0)
    uv = verts[:, :2] / verts[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    tri = uv[faces[face_id[ys, xs]]]
    p = np.stack([xs + 0.5, ys + 0.5], axis=1)
    e1, e2, d = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], p - tri[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)
    w1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
    w2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
    inside = np.zeros(face_id.shape, bool)
    inside[ys, xs] = (w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1)
    return inside


def compare(ours, theirs, owner, inside):
    """Per-pixel agreement of `theirs` (face ids, depth) with `ours`; see the module docstring."""
    (fo, do), (ft, dt) = ours, theirs
    co, ct = fo >= 0, ft >= 0
    both = co & ct
    same_hand = owner[np.maximum(fo, 0)] == owner[np.maximum(ft, 0)]
    agree = (co == ct) & (~both | same_hand)
    either = co | ct
    order_err = both & inside & (dt < do - ORDER_TOLERANCE_M)
    both_in = both & inside
    return dict(
        agree=agree.mean(),
        hand_px=agree[either].mean() if either.any() else 1.0,
        same_face=(fo == ft)[both].mean() if both.any() else 1.0,
        same_face_in=(fo == ft)[both_in].mean() if both_in.any() else 1.0,
        centre_in=inside.sum() / max(co.sum(), 1),
        order_err=int(order_err.sum()),
        cover=ct.sum() / max(co.sum(), 1),
    )


def timed(render, scene, size, base_size, reps):
    verts, faces, _, K, _ = scene
    Ks = scaled_K(K, size / base_size)
    times, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        out = render(verts, faces, Ks, size)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    best = int(np.argmin(times))
    return out, times[best], cpu[best]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scenes', type=int, default=10)
    parser.add_argument('--sizes', type=int, nargs='+', default=[128, 256, 512])
    parser.add_argument('--reps', type=int, default=2, help='renders per scene and size; the fastest counts')
    parser.add_argument('--slow-scenes', type=int, default=2, help='scenes for the pure-numpy ray caster')
    parser.add_argument('--quick', action='store_true', help='smoke run: 1 scene, S = 64, 1 rep')
    args = parser.parse_args()
    if args.quick:
        args.scenes, args.sizes, args.reps, args.slow_scenes = 1, [64], 1, 1
    if args.scenes < 1 or args.reps < 1 or args.slow_scenes < 1 or min(args.sizes) < 8:
        raise ValueError('--scenes, --reps and --slow-scenes must be >= 1 and every size >= 8')
    load_start = os.getloadavg()

    from hand_recon_ros.hand_model.model import load_hand_model

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the stand-in notice; it is stated in the header below
        hand_model = load_hand_model()
    base_size = 256
    scenes = two_hand_scenes(args.scenes, base_size, hand_model)

    renderers, missing = {'ours': (render_ours, 'raster.py (cv2 ' + __import__('cv2').__version__ + ')')}, {}
    for name, make in RENDERERS.items():
        try:
            renderers[name] = make()
        except ImportError as exc:
            missing[name] = str(exc).split('\n')[0]

    rows = []
    for size in args.sizes:
        reference, inside = [], []
        for scene in scenes:
            timed(render_ours, scene, size, base_size, 1)  # warm-up (cv2, allocations)
        for name, (render, _) in renderers.items():
            use = scenes[: args.slow_scenes] if name in SLOW else scenes
            render(*scene_args(use[0], size, base_size))  # warm-up (imports, thread pools)
            times, cpu, stats = [], [], []
            for i, scene in enumerate(use):
                out, seconds, cpu_seconds = timed(render, scene, size, base_size, args.reps)
                times.append(seconds)
                cpu.append(cpu_seconds)
                if name == 'ours':
                    reference.append(out)
                    inside.append(centre_inside_face(scene[0], scene[1], scaled_K(scene[3], size / base_size), out[0]))
                stats.append(compare(reference[i], out, scene[2], inside[i]))
            rows.append(
                (
                    size,
                    name,
                    len(use),
                    1e3 * statistics.median(times),
                    1e3 * statistics.median(cpu),
                    {k: statistics.mean(s[k] for s in stats) for k in stats[0]},
                )
            )
            print(f'S={size} {name}: {rows[-1][3]:.1f} ms', file=sys.stderr, flush=True)

    ours_ms = {size: ms for size, name, _, ms, _, _ in rows if name == 'ours'}
    kinds = ', '.join(f'{scene[4]}' for scene in scenes)
    print(
        f'# Renderers for the synthetic generator\n\nMachine: {platform.machine()}, {os.cpu_count()} cores, '
        f'load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}; python {platform.python_version()}, '
        f'numpy {np.__version__}; procedural stand-in hand (no MANO)\n'
    )
    print(
        f'{len(scenes)} two-hand scenes ({kinds}), {len(scenes[0][1])} faces each; ms per frame = median over '
        f'scenes of the fastest of {args.reps} renders (face ids + depth, acceleration structure included); '
        f'CPU ms = process time of the same renders (> wall: the library ran threads)\n'
    )
    print(
        '| S | renderer | frames | ms / frame | CPU ms | speed-up vs ours | agree | hand px | same face (centre in) '
        '| order err px | cover |'
    )
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for size, name, frames, ms, cpu_ms, s in rows:
        print(
            f"| {size} | {name} | {frames} | {ms:.2f} | {cpu_ms:.2f} | {ours_ms[size] / ms:.3g}x | "
            f"{s['agree']:.4f} | {s['hand_px']:.4f} | {100 * s['same_face']:.1f}% ({100 * s['same_face_in']:.1f}%) | "
            f"{s['order_err']:.1f} | {s['cover']:.3f} |"
        )
    for name, why in missing.items():
        print(f'| - | {name} | not installed ({why}) | | | | | | | | |')
    centre = {size: s['centre_in'] for size, name, _, _, _, s in rows if name == 'ours'}
    print(
        '\nOurs: covered pixels whose centre lies inside the face that painted them: '
        + ', '.join(f'{100 * v:.1f}% at S={size}' for size, v in centre.items())
    )
    print('\nVersions: ' + '; '.join(f'{name}: {label}' for name, (_, label) in renderers.items()))


def scene_args(scene, size, base_size):
    verts, faces, _, K, _ = scene
    return verts, faces, scaled_K(K, size / base_size), size


if __name__ == '__main__':
    main()
