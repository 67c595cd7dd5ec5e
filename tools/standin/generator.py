"""Procedural stand-in hand in MANO format (no MANO data is read, fitted or copied).

Shares MANO's interface (778 vertices, 1538 faces, one 16-vertex wrist loop, the 16-joint tree, the tip
vertex ids) so the whole pipeline runs and is tested without the licence-gated files. Results obtained
with it are NOT MANO results.

Frame (right hand, metres): fingers point -x from the wrist, thumb/index side +z, back of the hand +y;
a positive rotation about +z flexes the four fingers towards the palm. The wrist joint sits at
``ROOT_OFFSET`` (away from the origin, as in MANO, so that "global_orient rotates about J[0]" shows up).

CLI (from the repository root): ``python -m tools.standin --out models/standin``. Tooling: the runtime reads
only the generated .npz files.
"""

import argparse
import hashlib
import io
import json
import os
import pickle
import sys
import zipfile
import zlib

import numpy as np

GENERATOR_VERSION = 'standin-v1'
STANDIN_FILES = {'right': 'STANDIN_RIGHT.npz', 'left': 'STANDIN_LEFT.npz'}
ROOT_OFFSET = np.array([0.092, 0.005, 0.006])
KINTREE_ROOT = 4294967295  # uint32 -1: the root sentinel SMPL-family files store in kintree_table[0, 0]

# Tip vertex ids shared with MANO's conventions (thumb, index, middle, ring, pinky).
TIP_APEX_IDS = (745, 317, 444, 556, 673)  # manopth/manotorch tips
TIP_RING_IDS = (744, 320, 443, 554, 671)  # smplx VERTEX_IDS['mano'] tips
MIDDLE_TIP_ALT_ID = 445  # left-hand middle tip in manopth; near the apex here
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Finger name -> (MANO joint ids base..distal)
FINGER_JOINTS = {
    'index': (1, 2, 3),
    'middle': (4, 5, 6),
    'pinky': (7, 8, 9),
    'ring': (10, 11, 12),
    'thumb': (13, 14, 15),
}
FINGER_ORDER = ('thumb', 'index', 'middle', 'ring', 'pinky')

# ---- design parameters (right hand, local frame: wrist joint at the origin) ----
_N_RING = 10  # vertices per finger ring / hole
_N_WRIST = 16  # wrist boundary loop
_SE_EXP = 3.0  # superellipse exponent of the palm cross-section
_X_WRIST = 0.006  # wrist opening, 6 mm proximal of the wrist joint
_A_WRIST, _B_WRIST = 0.029, 0.018  # half width (z) / half thickness (y) at the wrist
_A_KNUCKLE, _B_KNUCKLE = 0.043, 0.014
_DOME_DEPTH = 0.016
_X_RIM = -0.0665  # where the palm wall meets the knuckle dome
_L_WALL = _X_WRIST - _X_RIM
_ULNAR_SHEAR = 0.009  # the pinky side of the knuckles sits this much closer to the wrist

# name: (hole centre z, hole centre y, splay rad, bone lengths, base radius, end radius)
_FINGERS = {
    'index': (0.0292, -0.0005, 0.10, (0.039, 0.024, 0.021), 0.0088, 0.0072),
    'middle': (0.0094, 0.0, 0.025, (0.044, 0.028, 0.023), 0.0090, 0.0074),
    'ring': (-0.0106, 0.0, -0.06, (0.041, 0.027, 0.022), 0.0085, 0.0070),
    'pinky': (-0.0290, -0.0005, -0.15, (0.032, 0.020, 0.019), 0.0075, 0.0062),
}
_THUMB_CMC = np.array([-0.022, -0.010, 0.019])
_THUMB_DIR = np.array([-0.50, -0.42, 0.76])
_THUMB_BONES = (0.040, 0.032, 0.027)
_THUMB_RADII = (0.0102, 0.0086)
_THUMB_BEND = np.array([0.0, -0.6, -0.8])  # thumb flexion carries the tip towards palm and pinky
_MCP_BEYOND_HOLE = 0.003
_N_PALM_INTERIOR = 778 - _N_WRIST - 5 * _N_RING - 5 * (10 * _N_RING + 1)  # = 207


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


# ------------------------------------------------------------------------------------------------
# Palm surface: a map from the unit disk (the "domain") to 3D. rho = 1 is the wrist loop, the annulus
# [rho_k, 1] is the palm wall (log-polar, so the map is close to conformal), rho < rho_k the dome.
# ------------------------------------------------------------------------------------------------
def _se_shape(phi):
    """Unit superellipse point (z, y) for angle parameter phi (0: +z, pi/2: +y)."""
    c, s = np.cos(phi), np.sin(phi)
    e = 2.0 / _SE_EXP
    return np.sign(c) * np.abs(c) ** e, np.sign(s) * np.abs(s) ** e


def _se_inverse(z_over_a, y_over_b):
    """(scale r, angle phi) with (z/a, y/b) = r * unit superellipse(phi)."""
    h = _SE_EXP / 2.0
    r = (np.abs(z_over_a) ** _SE_EXP + np.abs(y_over_b) ** _SE_EXP) ** (1.0 / _SE_EXP)
    phi = np.arctan2(np.sign(y_over_b) * np.abs(y_over_b) ** h, np.sign(z_over_a) * np.abs(z_over_a) ** h)
    return r, np.mod(phi, 2 * np.pi)


def _section(t):
    w = _smoothstep(t)
    return _A_WRIST + (_A_KNUCKLE - _A_WRIST) * w, _B_WRIST + (_B_KNUCKLE - _B_WRIST) * w


_KAPPA = 2.0 / (np.pi * _DOME_DEPTH)  # log-polar rate matching the dome's scale at the rim
_RHO_K = float(np.exp(-_KAPPA * _L_WALL))


def _ulnar_shear(z, t):
    return _ULNAR_SHEAR * _smoothstep((-z / _A_KNUCKLE - 0.15) / 0.85) * _smoothstep(t)


def _palm_from_params(kind, p, phi):
    """3D points on the palm. kind 'wall': p = s (m from the wrist opening); 'dome': p = theta."""
    if kind == 'wall':
        t = p / _L_WALL
        a, b = _section(t)
        zs, ys = _se_shape(phi)
        x = _X_WRIST - p
    else:
        t = np.ones_like(p)
        zs, ys = _se_shape(phi)
        a, b = _A_KNUCKLE * np.sin(p), _B_KNUCKLE * np.sin(p)
        x = _X_RIM - _DOME_DEPTH * np.cos(p)
    z, y = a * zs, b * ys
    x = x + _ulnar_shear(z, t)
    return np.stack([x, y, z], axis=-1)


def _domain_from_params(kind, p, phi):
    rho = np.exp(-_KAPPA * p) if kind == 'wall' else _RHO_K * p / (np.pi / 2)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi)], axis=-1)


def _palm_from_domain(uv):
    """Inverse of _domain_from_params followed by the 3D map (used for every palm vertex)."""
    rho = np.linalg.norm(uv, axis=-1)
    phi = np.mod(np.arctan2(uv[..., 1], uv[..., 0]), 2 * np.pi)
    out = np.empty(uv.shape[:-1] + (3,))
    wall = rho >= _RHO_K
    out[wall] = _palm_from_params('wall', -np.log(np.maximum(rho[wall], 1e-12)) / _KAPPA, phi[wall])
    out[~wall] = _palm_from_params('dome', rho[~wall] / _RHO_K * (np.pi / 2), phi[~wall])
    return out


def _dome_domain_from_yz(y, z):
    r, phi = _se_inverse(z / _A_KNUCKLE, y / _B_KNUCKLE)
    if np.any(r >= 1.0):
        raise AssertionError('finger hole leaves the knuckle dome')
    return _domain_from_params('dome', np.arcsin(r), phi)


def _inside_wall(pts):
    s = _X_WRIST - pts[..., 0]
    a, b = _section(s / _L_WALL)
    r, _ = _se_inverse(pts[..., 2] / a, pts[..., 1] / b)
    return (s > 0) & (s < _L_WALL) & (r < 1.0)


def _wall_exit(start, direction):
    """Point where the ray start + lam * direction leaves the palm wall (last inside->outside)."""
    lam = np.linspace(-0.02, 0.06, 321)
    inside = _inside_wall(start + lam[:, None] * direction)
    idx = np.nonzero(inside[:-1] & ~inside[1:])[0]
    if len(idx) == 0:
        raise AssertionError('thumb ray does not leave the palm wall')
    lo, hi = lam[idx[-1]], lam[idx[-1] + 1]
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _inside_wall(start + mid * direction):
            lo = mid
        else:
            hi = mid
    p = start + 0.5 * (lo + hi) * direction
    s = _X_WRIST - p[0]
    a, b = _section(s / _L_WALL)
    _, phi = _se_inverse(p[2] / a, p[1] / b)
    return s, phi


# ------------------------------------------------------------------------------------------------
# Skeleton and finger frames
# ------------------------------------------------------------------------------------------------
def _finger_frame(axis, flex_axis):
    """(e_flex, e_dorsal): ring cross-section axes perpendicular to the finger axis."""
    e_flex = _unit(flex_axis - np.dot(flex_axis, axis) * axis)
    e_dorsal = np.cross(e_flex, axis)  # for the four fingers this is +y (back of the hand)
    return e_flex, e_dorsal


def _design():
    """Skeleton, finger axes and hole rings in the local frame (wrist joint at the origin)."""
    fingers = {}
    for name, (zc, yc, splay, bones, r0, r1) in _FINGERS.items():
        axis = np.array([-np.cos(splay), 0.0, np.sin(splay)])
        bend = np.array([0.0, -1.0, 0.0])
        flex = np.cross(axis, bend)
        e_flex, e_dorsal = _finger_frame(axis, flex)
        centre_uv = _dome_domain_from_yz(np.array(yc), np.array(zc))
        centre = _palm_from_domain(centre_uv[None])[0]
        mcp = centre + _MCP_BEYOND_HOLE * axis
        ang = 2 * np.pi * np.arange(_N_RING) / _N_RING
        ring3d = mcp + r0 * 1.05 * np.cos(ang)[:, None] * e_flex + r0 / 1.05 * np.sin(ang)[:, None] * e_dorsal
        hole_uv = _dome_domain_from_yz(ring3d[:, 1], ring3d[:, 2])
        fingers[name] = dict(
            axis=axis,
            flex=flex,
            e_flex=e_flex,
            e_dorsal=e_dorsal,
            base=mcp,
            bones=bones,
            radii=(r0, r1),
            hole_uv=hole_uv,
            centre_uv=centre_uv,
            angles=ang,
        )
    axis = _unit(_THUMB_DIR)
    bend = _unit(_THUMB_BEND - np.dot(_THUMB_BEND, axis) * axis)
    flex = np.cross(axis, bend)
    e_flex, e_dorsal = _finger_frame(axis, flex)
    ang = 2 * np.pi * np.arange(_N_RING) / _N_RING
    r0 = _THUMB_RADII[0]
    hole = [_wall_exit(_THUMB_CMC + r0 * np.cos(a) * e_flex + r0 * np.sin(a) * e_dorsal, axis) for a in ang]
    hole_uv = np.array([_domain_from_params('wall', s, phi) for s, phi in hole])
    c_s, c_phi = _wall_exit(_THUMB_CMC, axis)
    fingers['thumb'] = dict(
        axis=axis,
        flex=flex,
        e_flex=e_flex,
        e_dorsal=e_dorsal,
        base=_THUMB_CMC.copy(),
        bones=_THUMB_BONES,
        radii=_THUMB_RADII,
        hole_uv=hole_uv,
        centre_uv=_domain_from_params('wall', c_s, c_phi),
        angles=ang,
    )
    joints = np.zeros((16, 3))
    for name, f in fingers.items():
        j = f['base'].copy()
        for k, jid in enumerate(FINGER_JOINTS[name]):
            joints[jid] = j
            j = j + f['bones'][k] * f['axis']
        f['tip'] = j
    return fingers, joints


# ------------------------------------------------------------------------------------------------
# Palm triangulation
# ------------------------------------------------------------------------------------------------
def _point_in_polygon(pts, poly):
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), dtype=bool)
    n = len(poly)
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        cross = (y0 > y) != (y1 > y)
        with np.errstate(divide='ignore', invalid='ignore'):
            xint = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= cross & (x < xint)
    return inside


def _farthest_points(seeds, candidates, count):
    dist = np.min(np.linalg.norm(candidates[:, None, :] - seeds[None, :, :], axis=-1), axis=1)
    chosen = []
    for _ in range(count):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(candidates - candidates[i], axis=1))
    return np.array(chosen)


def _delaunay_flips_3d(verts, faces, max_passes=30):
    """Edge flips towards a Delaunay triangulation measured in 3D (the domain map is anisotropic)."""
    faces = [list(f) for f in faces]

    def opposite_angle(a, b, c):  # angle at c in triangle (a, b, c)
        u, v = verts[a] - verts[c], verts[b] - verts[c]
        return np.arccos(np.clip(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))

    for _ in range(max_passes):
        edge_faces = {}
        for fi, f in enumerate(faces):
            for k in range(3):
                e = (min(f[k], f[(k + 1) % 3]), max(f[k], f[(k + 1) % 3]))
                edge_faces.setdefault(e, []).append(fi)
        edges = set(edge_faces)
        flipped = False
        touched = set()
        for e in sorted(edge_faces):
            fs = edge_faces[e]
            if len(fs) != 2 or fs[0] in touched or fs[1] in touched:
                continue
            a, b = e
            c = [v for v in faces[fs[0]] if v not in e][0]
            d = [v for v in faces[fs[1]] if v not in e][0]
            if (min(c, d), max(c, d)) in edges:
                continue
            if opposite_angle(a, b, c) + opposite_angle(a, b, d) <= np.pi + 1e-9:
                continue
            # keep the orientation of face 0: it contains a->b or b->a
            f0 = faces[fs[0]]
            i = f0.index(a)
            if f0[(i + 1) % 3] == b:  # face (a, b, c) -> (a, d, c), (d, b, c)
                faces[fs[0]], faces[fs[1]] = [a, d, c], [d, b, c]
            else:  # face (b, a, c) -> (b, d, c), (d, a, c)
                faces[fs[0]], faces[fs[1]] = [b, d, c], [d, a, c]
            edges.discard(e)
            edges.add((min(c, d), max(c, d)))
            touched.update(fs)
            flipped = True
        if not flipped:
            break
    return np.array(faces, dtype=np.int64)


def _triangulate_palm(fingers):
    import triangle  # noqa: PLC0415  (generation-time dependency only)

    wrist_phi = 2 * np.pi * (np.arange(_N_WRIST) + 0.5) / _N_WRIST
    wrist_uv = np.stack([np.cos(wrist_phi), np.sin(wrist_phi)], axis=1)
    holes_uv = [fingers[n]['hole_uv'] for n in FINGER_ORDER]
    boundary_uv = np.concatenate([wrist_uv] + holes_uv)
    boundary_3d = _palm_from_domain(boundary_uv)

    # dense candidates in surface parameters (roughly uniform on the surface), minus the holes
    s = np.linspace(0.003, _L_WALL, 56)
    th = np.linspace(0.02, np.pi / 2, 26, endpoint=False)
    ph = 2 * np.pi * np.arange(180) / 180
    S, P = np.meshgrid(s, ph, indexing='ij')
    T, Q = np.meshgrid(th, ph, indexing='ij')
    cand_uv = np.concatenate(
        [_domain_from_params('wall', S.ravel(), P.ravel()), _domain_from_params('dome', T.ravel(), Q.ravel())]
    )
    keep = np.ones(len(cand_uv), dtype=bool)
    for h in holes_uv:
        keep &= ~_point_in_polygon(cand_uv, h)
    cand_uv = cand_uv[keep]
    cand_3d = _palm_from_domain(cand_uv)
    pick = _farthest_points(boundary_3d, cand_3d, _N_PALM_INTERIOR)
    uv = np.concatenate([boundary_uv, cand_uv[pick]])

    segs = [[i, (i + 1) % _N_WRIST] for i in range(_N_WRIST)]
    start = _N_WRIST
    for _ in holes_uv:
        segs += [[start + i, start + (i + 1) % _N_RING] for i in range(_N_RING)]
        start += _N_RING
    hole_pts = np.array([fingers[n]['centre_uv'] for n in FINGER_ORDER])
    for n, hp in zip(FINGER_ORDER, hole_pts):
        assert _point_in_polygon(hp[None], fingers[n]['hole_uv'])[0], n
    tri = triangle.triangulate(dict(vertices=uv, segments=np.array(segs), holes=hole_pts), 'pQ')
    if len(tri['vertices']) != len(uv):
        raise AssertionError('triangle inserted Steiner points')
    verts = _palm_from_domain(uv)
    faces = _delaunay_flips_3d(verts, tri['triangles'])
    return uv, verts, faces


# ------------------------------------------------------------------------------------------------
# Fingers
# ------------------------------------------------------------------------------------------------
def _ring_positions(name, f):
    """Axial positions of the 8 tube rings and the 2 tip rings (polar angle from the tip axis)."""
    L1, L2, L3 = f['bones']
    r_end = f['radii'][1]
    L = L1 + L2 + L3
    if name == 'thumb':
        first = f['first_ring']
        tube = [
            first,
            0.5 * (first + L1 - 0.004),
            L1 - 0.004,
            L1 + 0.004,
            L1 + 0.5 * L2,
            L1 + L2 - 0.004,
            L1 + L2 + 0.004,
            L - r_end,
        ]
    else:
        tube = [0.2 * L1, 0.5 * L1, L1 - 0.004, L1 + 0.004, L1 + 0.5 * L2, L1 + L2 - 0.004, L1 + L2 + 0.004, L - r_end]
    if np.any(np.diff(tube) <= 0.001):
        raise AssertionError(f'{name}: ring positions not increasing: {tube}')
    return np.array(tube), np.radians([57.0, 27.0])


def _build_finger(name, f, hole_3d):
    L = sum(f['bones'])
    r0, r1 = f['radii']
    axis, e_flex, e_dorsal, base = f['axis'], f['e_flex'], f['e_dorsal'], f['base']
    # ring angles follow the hole ring (no twist between the palm hole and the tube)
    rel = hole_3d - base
    ang = np.unwrap(np.arctan2(rel @ e_dorsal, rel @ e_flex))
    if name == 'thumb':
        f['first_ring'] = float(np.max(rel @ axis)) + 0.005
    tube, tip_angles = _ring_positions(name, f)
    radius = lambda s: r0 + (r1 - r0) * np.clip(s / (L - r1), 0, 1)  # noqa: E731
    rings = []
    for s in tube:
        r = radius(s)
        rings.append(
            base + s * axis + r * 1.05 * np.cos(ang)[:, None] * e_flex + r / 1.05 * np.sin(ang)[:, None] * e_dorsal
        )
    centre = L - r1
    for a in tip_angles:
        rings.append(
            base
            + (centre + r1 * np.cos(a)) * axis
            + r1 * np.sin(a) * 1.05 * np.cos(ang)[:, None] * e_flex
            + r1 * np.sin(a) / 1.05 * np.sin(ang)[:, None] * e_dorsal
        )
    apex = base + L * axis
    return np.concatenate(rings + [apex[None]])


def _tube_faces(ring_ids):
    faces = []
    for r0, r1 in zip(ring_ids[:-1], ring_ids[1:]):
        for i in range(_N_RING):
            j = (i + 1) % _N_RING
            faces.append([r0[i], r0[j], r1[j]])
            faces.append([r0[i], r1[j], r1[i]])
    return faces


def _orient_outwards(verts, faces):
    import trimesh  # noqa: PLC0415

    mesh = trimesh.Trimesh(verts, faces, process=False)
    trimesh.repair.fix_winding(mesh)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    from hand_recon_ros.hand_model.mesh_utils import cap_boundary  # noqa: PLC0415

    v_closed, f_closed = cap_boundary(verts, faces)
    if _signed_volume(v_closed, f_closed) < 0:
        faces = faces[:, ::-1].copy()
    return faces


def _signed_volume(v, f):
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum('ij,ij->i', a, np.cross(b, c)).sum() / 6.0)


# ------------------------------------------------------------------------------------------------
# Skinning weights, regressor, shape and pose spaces
# ------------------------------------------------------------------------------------------------
def _finger_coords(verts, f):
    rel = verts - f['base']
    s = rel @ f['axis']
    lateral = np.linalg.norm(rel - s[:, None] * f['axis'], axis=1)
    return s, lateral


def _skinning_weights(verts, fingers, owner):
    """owner[v] = finger name for tube vertices, '' for palm vertices."""
    W = np.zeros((len(verts), 16))
    for name, f in fingers.items():
        j1, j2, j3 = FINGER_JOINTS[name]
        L1, L2, _ = f['bones']
        s, lat = _finger_coords(verts, f)
        if name == 'thumb':
            b1 = _smoothstep((s + 0.010) / 0.020)
            lateral = 1.0 - _smoothstep((lat - f['radii'][0]) / 0.014)
        else:
            b1 = _smoothstep((s + 0.010) / 0.018)
            lateral = 1.0 - _smoothstep((lat - f['radii'][0]) / 0.009)
        b2 = _smoothstep((s - (L1 - 0.006)) / 0.012)
        b3 = _smoothstep((s - (L1 + L2 - 0.006)) / 0.012)
        mine = owner == name
        palm = owner == ''
        W[mine, j1] = (b1 - b2)[mine]
        W[mine, j2] = (b2 - b3)[mine]
        W[mine, j3] = b3[mine]
        W[mine, 0] = (1.0 - b1)[mine]
        W[palm, j1] += (b1 * lateral)[palm]
    palm = owner == ''
    total = W[palm, 1:].sum(1)
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-12), 1.0)
    W[palm, 1:] *= scale[:, None]
    W[palm, 0] = 1.0 - W[palm, 1:].sum(1)
    W = np.clip(W, 0.0, None)
    return W / W.sum(1, keepdims=True)


def _joint_regressor(verts, joints):
    """Sparse, non-negative, affine (rows sum to 1) regressor reproducing the design joints."""
    from scipy.optimize import nnls  # noqa: PLC0415

    R = np.zeros((len(joints), len(verts)))
    vm = verts * 1000.0  # solve in millimetres
    for j, p in enumerate(joints * 1000.0):
        order = np.argsort(np.linalg.norm(vm - p, axis=1), kind='stable')
        for k in range(16, 101, 6):
            nb = order[:k]
            A = np.concatenate([vm[nb].T, np.ones((1, k)), 0.05 * np.eye(k)])
            b = np.concatenate([p, [1.0], np.zeros(k)])
            w, _ = nnls(A, b)
            w = w / w.sum()
            if np.linalg.norm(w @ vm[nb] - p) < 0.1:
                break
        else:
            raise AssertionError(f'joint {j}: regressor error too large')
        w[w < 1e-6] = 0.0
        R[j, nb] = w / w.sum()
    return R


def _shape_directions(verts, joints, fingers, weights):
    """10 hand-designed shape directions (778, 3, 10); beta = +-1 is a modest, visible change."""
    V = len(verts)
    sd = np.zeros((V, 3, 10))
    member = {n: weights[:, list(FINGER_JOINTS[n])].sum(1) for n in fingers}
    four = ('index', 'middle', 'ring', 'pinky')
    any_finger = np.clip(sum(member[n] for n in four), 0, 1)

    def lengthen(name, rate):
        f = fingers[name]
        s, _ = _finger_coords(verts, f)
        return member[name][:, None] * rate * np.maximum(s, 0.0)[:, None] * f['axis']

    def thicken(name, rate):
        f = fingers[name]
        rel = verts - f['base']
        s = rel @ f['axis']
        radial = rel - s[:, None] * f['axis']
        return member[name][:, None] * rate * radial

    def palm_field(field):
        """Smooth palm displacement; fingers ride rigidly on the value at their base."""
        out = (1.0 - any_finger)[:, None] * field(verts)
        for n in four:
            out += member[n][:, None] * field(fingers[n]['base'][None])
        return out

    wrist = joints[0]
    t_of = lambda p: np.clip((_X_WRIST - p[:, 0]) / _L_WALL, 0, 1)  # noqa: E731
    sd[:, :, 0] = 0.05 * (verts - wrist)
    sd[:, :, 1] = sum(lengthen(n, 0.066) for n in four)
    sd[:, :, 2] = palm_field(lambda p: np.stack([0 * p[:, 0], 0 * p[:, 0], 0.06 * p[:, 2] * _smoothstep(t_of(p))], 1))
    sd[:, :, 3] = palm_field(lambda p: np.stack([-0.0045 * _smoothstep(t_of(p) * 1.1), 0 * p[:, 0], 0 * p[:, 0]], 1))
    sd[:, :, 4] = sum(thicken(n, 0.08) for n in four)
    sd[:, :, 5] = (1.0 - any_finger)[:, None] * np.stack([0 * verts[:, 0], 0.05 * verts[:, 1], 0 * verts[:, 0]], 1)
    sd[:, :, 6] = lengthen('thumb', 0.074)
    sd[:, :, 7] = lengthen('index', 0.06) - lengthen('ring', 0.06)
    sd[:, :, 8] = lengthen('pinky', 0.08)
    sd[:, :, 9] = thicken('thumb', 0.08)
    return sd


def flexion_axes(fingers=None):
    """Unit flexion axis (rest frame, right hand) per finger name: rotating +angle curls to the palm."""
    if fingers is None:
        fingers, _ = _design()
    return {n: _unit(f['flex']) for n, f in fingers.items()}


def named_pose(name, side='right'):
    """45-D axis-angle hand pose (relative to the flat hand) for the stand-in: flat, fist, half_fist,
    pointing, spread, pinch. Mirrored for the left hand."""
    fingers, _ = _design()
    k = flexion_axes(fingers)
    up = np.array([0.0, 1.0, 0.0])
    P = np.zeros((15, 3))
    curls = {
        'flat': dict(),
        'fist': dict(index=1, middle=1, ring=1, pinky=1, thumb=1),
        'half_fist': dict(index=0.5, middle=0.5, ring=0.5, pinky=0.5, thumb=0.5),
        'pointing': dict(middle=1, ring=1, pinky=1, thumb=0.8),
        'spread': dict(),
        'pinch': dict(index=0.45, thumb=0.7),
    }
    if name not in curls:
        raise ValueError(f'unknown pose {name!r}; choose from {sorted(curls)}')
    for finger, c in curls[name].items():
        j1, j2, j3 = FINGER_JOINTS[finger]
        if finger == 'thumb':
            P[j1 - 1] = c * (0.5 * k['thumb'] + 0.35 * fingers['thumb']['axis'])
            P[j2 - 1] = c * 0.5 * k['thumb']
            P[j3 - 1] = c * 0.9 * k['thumb']
        else:
            P[j1 - 1], P[j2 - 1], P[j3 - 1] = c * 1.4 * k[finger], c * 1.6 * k[finger], c * 1.0 * k[finger]
    if name == 'spread':
        for finger, a in (('index', 0.25), ('middle', 0.05), ('ring', -0.15), ('pinky', -0.35)):
            P[FINGER_JOINTS[finger][0] - 1] = a * up
        P[12] = -0.35 * k['thumb']
    P = P.reshape(45)
    return mirror_pose(P) if side == 'left' else P


def _pose_space(fingers, rng, n_samples=4000):
    """Synthetic pose distribution -> PCA basis; a grip synergy plus per-finger noise."""
    P = np.zeros((n_samples, 15, 3))
    grip = rng.uniform(-0.15, 1.0, n_samples)
    spread = rng.uniform(-0.2, 0.35, n_samples)
    up = np.array([0.0, 1.0, 0.0])
    abd_weight = {'index': 1.0, 'middle': 0.3, 'ring': -0.4, 'pinky': -1.0}
    for name in ('index', 'middle', 'pinky', 'ring'):
        k = _unit(fingers[name]['flex'])
        j1, j2, j3 = FINGER_JOINTS[name]
        own = grip + rng.normal(0, 0.15, n_samples)
        mcp = 1.3 * own + rng.normal(0, 0.15, n_samples)
        pip = 1.5 * own + rng.normal(0, 0.15, n_samples)
        dip = 0.65 * pip + rng.normal(0, 0.08, n_samples)
        abd = 0.25 * abd_weight[name] * spread * (1 - np.clip(grip, 0, 1)) + rng.normal(0, 0.05, n_samples)
        P[:, j1 - 1] = mcp[:, None] * k + abd[:, None] * up
        P[:, j2 - 1] = pip[:, None] * k
        P[:, j3 - 1] = dip[:, None] * k
    f = fingers['thumb']
    k, a = _unit(f['flex']), f['axis']
    own = grip + rng.normal(0, 0.2, n_samples)
    P[:, 12] = (0.55 * own + rng.normal(0, 0.1, n_samples))[:, None] * k + (0.35 * own)[:, None] * a
    P[:, 13] = (0.5 * own + rng.normal(0, 0.12, n_samples))[:, None] * k
    P[:, 14] = (0.8 * own + rng.normal(0, 0.15, n_samples))[:, None] * k
    P = P.reshape(n_samples, 45)
    mean = P.mean(0)
    centred = P - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    biggest = np.argmax(np.abs(vt), axis=1)
    vt *= np.sign(vt[np.arange(45), biggest])[:, None]  # deterministic signs
    coeffs = centred @ vt.T
    return vt, 0.3 * mean, coeffs[:1000]


# ------------------------------------------------------------------------------------------------
# Assembly
# ------------------------------------------------------------------------------------------------
def _vertex_permutation(n, specials):
    """order[new_id] = old_id, placing specials {new_id: old_id} and the rest in natural order."""
    order = np.full(n, -1, dtype=np.int64)
    for new, old in specials.items():
        order[new] = old
    rest = [i for i in range(n) if i not in set(specials.values())]
    order[order < 0] = rest
    return order


def build_standin_arrays(side='right'):
    """The stand-in model as a dict of numpy arrays (MANO key set, float64 before storage rounding)."""
    if side not in ('right', 'left'):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    fingers, joints = _design()
    palm_uv, palm_v, palm_f = _triangulate_palm(fingers)
    verts = [palm_v]
    owner = [np.array([''] * len(palm_v), dtype=object)]
    faces = [palm_f]
    n = len(palm_v)
    hole_start = {name: _N_WRIST + i * _N_RING for i, name in enumerate(FINGER_ORDER)}
    apex_of, ring_of = {}, {}
    for name in FINGER_ORDER:
        f = fingers[name]
        hole_ids = np.arange(hole_start[name], hole_start[name] + _N_RING)
        fv = _build_finger(name, f, palm_v[hole_ids])
        ids = n + np.arange(len(fv))
        rings = [hole_ids] + [ids[i * _N_RING : (i + 1) * _N_RING] for i in range(10)]
        faces.append(np.array(_tube_faces(rings)))
        apex = ids[-1]
        faces.append(np.array([[rings[-1][i], rings[-1][(i + 1) % _N_RING], apex] for i in range(_N_RING)]))
        last = rings[-1]
        palmar = last[int(np.argmin(fv[last - n] @ f['e_dorsal']))]
        apex_of[name], ring_of[name] = apex, (palmar, last)
        verts.append(fv)
        owner.append(np.array([name] * len(fv), dtype=object))
        n += len(fv)
    V = np.concatenate(verts)
    F = np.concatenate(faces)
    owner = np.concatenate(owner)
    if V.shape != (778, 3) or F.shape != (1538, 3):
        raise AssertionError(f'unexpected counts {V.shape} {F.shape}')
    F = _orient_outwards(V, F)

    specials = {}
    for name, new_apex, new_ring in zip(FINGER_ORDER, TIP_APEX_IDS, TIP_RING_IDS):
        specials[new_apex] = apex_of[name]
        specials[new_ring] = ring_of[name][0]
    last = list(ring_of['middle'][1])
    i = last.index(ring_of['middle'][0])
    specials[MIDDLE_TIP_ALT_ID] = last[(i + 1) % _N_RING]
    order = _vertex_permutation(778, specials)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(778)
    V, owner, F = V[order], owner[order], inverse[F]

    W = _skinning_weights(V, fingers, owner)
    R = _joint_regressor(V, joints)
    J = R @ V
    sd = _shape_directions(V, J, fingers, W)
    comps, mean, coeffs = _pose_space(fingers, np.random.default_rng(20261121))

    V = V + ROOT_OFFSET
    J = J + ROOT_OFFSET
    kintree = np.array([[KINTREE_ROOT] + list(MANO_PARENTS[1:]), list(range(16))], dtype=np.uint32)
    model = dict(
        v_template=V,
        f=F.astype(np.uint32),
        weights=W,
        J_regressor=R,
        J=J,
        kintree_table=kintree,
        shapedirs=sd,
        posedirs=np.zeros((778, 3, 135)),
        hands_components=comps,
        hands_mean=mean,
        hands_coeffs=coeffs,
        bs_style=np.array('lbs'),
        bs_type=np.array('lrotmin'),
        standin_version=np.array(GENERATOR_VERSION),
    )
    model = _round_for_storage(model)
    return mirror_model(model) if side == 'left' else model


def _round_for_storage(model):
    out = {}
    for k, v in model.items():
        out[k] = v.astype(np.float32) if v.dtype.kind == 'f' else v
    return out


def mirror_pose(pose):
    """Axis-angle per joint (..., 3k) of one hand -> the mirrored hand's: (a, b, c) -> (a, -b, -c)."""
    p = np.array(pose, copy=True)
    shape = p.shape
    p = p.reshape(shape[:-1] + (-1, 3))
    p[..., 1:] *= -1
    return p.reshape(shape)


def mirror_model(model):
    """Right-hand arrays -> left-hand arrays by the mirror x -> -x (weights/regressor/ids shared)."""
    m = dict(model)
    for key in ('v_template', 'J'):
        m[key] = model[key] * np.array([-1, 1, 1], dtype=model[key].dtype)
    for key in ('shapedirs', 'posedirs'):
        arr = np.array(model[key], copy=True)
        arr[:, 0, :] *= -1
        m[key] = arr
    m['f'] = model['f'][:, [0, 2, 1]].copy()
    m['hands_components'] = mirror_pose(model['hands_components'])
    m['hands_mean'] = mirror_pose(model['hands_mean'])
    m['hands_coeffs'] = np.array(model['hands_coeffs'], copy=True)
    return m


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def content_sha256(model):
    """Hash of the array contents (key, dtype, shape, bytes), independent of zip/zlib details."""
    h = hashlib.sha256()
    for k in sorted(model):
        a = np.asarray(model[k], order='C')
        h.update(k.encode() + b'\0' + a.dtype.str.encode() + b'\0' + str(a.shape).encode() + b'\0')
        h.update(a.tobytes())
    return h.hexdigest()


def npz_bytes(model):
    """Deterministic compressed .npz (fixed member order and timestamps; np.load-compatible)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for k in sorted(model):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(model[k], order='C'), allow_pickle=False)
            info = zipfile.ZipInfo(k + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def _sparse_csc(dense):
    import scipy.sparse  # noqa: PLC0415

    return scipy.sparse.csc_matrix(np.asarray(dense, dtype=np.float64))


def pickle_dict(model):
    """MANO-style dict: float64 arrays, J_regressor as scipy.sparse.csc_matrix."""
    d = {}
    for k, v in model.items():
        if k in ('bs_style', 'bs_type', 'standin_version'):
            d[k] = str(v)
        elif v.dtype.kind == 'f':
            d[k] = v.astype(np.float64)
        else:
            d[k] = v
    d['J_regressor'] = _sparse_csc(d['J_regressor'])
    return d


def make_standin_pickle(path, side='right', model=None):
    """Write the stand-in as a MANO-style pickle (protocol 2) that smplx.MANO(path) can read."""
    if model is None:
        model = build_standin_arrays(side)
    with open(path, 'wb') as fh:
        pickle.dump(pickle_dict(model), fh, protocol=2)
    return path


class _ChumpyCh:
    """Pickles as chumpy.ch.Ch (only its state; chumpy itself is never needed)."""

    def __init__(self, x):
        self.__dict__.update(x=x, _dirty_vars=set(), _itr=None, _status='undefined')


class _ChumpySelect:
    """Pickles as chumpy.reordering.Select(a, idxs, preferred_shape)."""

    def __init__(self, a, idxs, preferred_shape):
        self.__dict__.update(
            a=a, idxs=idxs, preferred_shape=preferred_shape, _dirty_vars=set(), _itr=None, _status='undefined'
        )


class _LegacyNamePickler(pickle._Pickler):
    """Writes the Python-2-era global names found in released MANO pickles."""

    def __init__(self, fh):
        import scipy.sparse  # noqa: PLC0415

        super().__init__(fh, protocol=2)
        self._legacy = {
            id(_ChumpyCh): ('chumpy.ch', 'Ch'),
            id(_ChumpySelect): ('chumpy.reordering', 'Select'),
            id(scipy.sparse.csc_matrix): ('scipy.sparse.csc', 'csc_matrix'),
            id(np.ndarray.__reduce__(np.zeros(1))[0]): ('numpy.core.multiarray', '_reconstruct'),
        }

    def save_global(self, obj, name=None):
        legacy = self._legacy.get(id(obj))
        if legacy is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f'{legacy[0]}\n{legacy[1]}\n'.encode('ascii'))
        self.memoize(obj)
        return None


def write_chumpy_style_pickle(path, side='right', model=None):
    """Test fixture with the structure of a released MANO pickle, built from the stand-in's arrays:
    shapedirs = chumpy Select over a Ch of 20 directions, J_regressor = scipy csc_matrix, protocol 2,
    legacy module names (chumpy.ch, chumpy.reordering, scipy.sparse.csc, numpy.core.multiarray)."""
    if model is None:
        model = build_standin_arrays(side)
    d = pickle_dict(model)
    sd = d['shapedirs']
    extra = np.linspace(-1e-3, 1e-3, sd.size).reshape(sd.shape)  # 10 unused directions, as in MANO
    x20 = np.concatenate([sd, extra], axis=2)
    idxs = np.arange(x20.size).reshape(x20.shape)[:, :, : sd.shape[2]].ravel()
    d['shapedirs'] = _ChumpySelect(_ChumpyCh(x20), idxs, sd.shape)
    with open(path, 'wb') as fh:
        _LegacyNamePickler(fh).dump(d)
    return path


def write_standin_files(out_dir, command=None):
    """Write STANDIN_RIGHT/LEFT.npz, manifest.json and README.md; return the manifest dict."""
    os.makedirs(out_dir, exist_ok=True)
    right = build_standin_arrays('right')
    models = {'right': right, 'left': mirror_model(right)}
    files = {}
    for side, name in STANDIN_FILES.items():
        data = npz_bytes(models[side])
        with open(os.path.join(out_dir, name), 'wb') as fh:
            fh.write(data)
        files[name] = dict(
            side=side,
            sha256=hashlib.sha256(data).hexdigest(),
            content_sha256=content_sha256(models[side]),
            bytes=len(data),
        )
    manifest = dict(
        generator=GENERATOR_VERSION,
        module='tools.standin.generator',
        command=command or 'python -m tools.standin --out models/standin',
        numpy=np.__version__,
        zlib=zlib.ZLIB_RUNTIME_VERSION,
        files=files,
    )
    with open(os.path.join(out_dir, 'manifest.json'), 'w') as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write('\n')
    with open(os.path.join(out_dir, 'README.md'), 'w') as fh:
        fh.write(_README)
    return manifest


_README = """# Procedural stand-in hand (NOT MANO)

`STANDIN_RIGHT.npz` / `STANDIN_LEFT.npz` are generated by this project's own code
(`tools/standin/generator.py`) from hand-chosen parameters. No MANO data was read, fitted or
copied. They share MANO's *interface* (778 vertices, 1538 faces, 16-vertex wrist loop, MANO joint order,
tip vertex ids 745/317/444/556/673 and 744/320/443/554/671, key names) so the pipeline runs and is tested
without the licence-gated MANO files. **Results obtained with the stand-in are not MANO results.**

Regenerate (deterministic; the test suite checks the hashes in `manifest.json`):

    python -m tools.standin --out models/standin

Keys: v_template, f, weights, J_regressor (dense), J, kintree_table, shapedirs (10), posedirs (zeros),
hands_components, hands_mean, hands_coeffs, bs_style, bs_type, standin_version. Load with
`np.load(path, allow_pickle=False)` or `hand_recon_ros.hand_model.mano_loader.load_model_file`.
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='models/standin', help='output directory')
    parser.add_argument('--pkl', action='store_true', help='also write STANDIN_{RIGHT,LEFT}.pkl (MANO-style)')
    args = parser.parse_args(argv)
    manifest = write_standin_files(args.out)
    if args.pkl:
        for side in ('right', 'left'):
            make_standin_pickle(os.path.join(args.out, f'STANDIN_{side.upper()}.pkl'), side)
    for name, info in manifest['files'].items():
        print(f"{name}: {info['bytes']} bytes sha256 {info['sha256']}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
