"""Penetration between two hand meshes: per-vertex depths, IHMR-style metrics, a differentiable loss.

Inputs must be WATERTIGHT triangle meshes (the MANO hand is open at the wrist: the caller closes it,
e.g. centroid vertex + fan, before calling). Units are metres.

Inside test: winding number > 0.5, robust to the small self-intersections of posed LBS meshes, unlike
ray parity (hand-model.md §5). On a closed mesh it is computed exactly as the SIGNED count of surface
crossings of a ray (each crossing +-1 by the face's orientation: the degree, not the parity), vectorised
over a 2-D grid of the faces; a query within 1e-9 m of a projected edge or of the surface falls back to
libigl's fast winding number (also used for meshes that are not closed). Both give the same decisions
away from the surface (the fast winding number is within ~1e-3 of the integer winding number there).
Depth of an inside vertex: its unsigned distance to the other surface (libigl AABB point-mesh
distance); outside vertices have depth 0. These are exact point-to-surface depths, not IHMR's 32^3
voxel approximation (method-acr-ihmr.md §3.5). :class:`MeshSolid` builds these structures once per mesh
and shares them between both directions of a pair and with translated copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import igl
import numpy as np
import torch
from numpy.typing import ArrayLike

from hand_recon_ros.metrics import penetration_from_depths

__all__ = [
    'inside_mask',
    'penetration_depths',
    'penetration_depths_batch',
    'penetration_metrics',
    'collision_loss',
    'MeshSolid',
    'prepare_mesh',
    'solid_depths',
]


def _mesh_arrays(
    verts: ArrayLike | torch.Tensor, faces: ArrayLike | torch.Tensor, name: str
) -> tuple[np.ndarray, np.ndarray]:
    v = verts.detach().cpu().numpy() if isinstance(verts, torch.Tensor) else np.asarray(verts)
    f = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f'{name} vertices must have shape (N, 3), got {v.shape}')
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f'{name} faces must have shape (F, 3), got {f.shape}')
    if not np.issubdtype(f.dtype, np.integer):
        raise TypeError(f'{name} faces must be integers, got {f.dtype}')
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f'{name} faces index outside 0..{len(v) - 1}')
    v = np.ascontiguousarray(v, dtype=np.float64)
    if not np.isfinite(v).all():
        raise ValueError(f'{name} vertices contain NaN/inf')
    return v, np.ascontiguousarray(f, dtype=np.int64)


_INSIDE_WINDING = 0.5
# Ray direction of the crossing-count inside test, chosen off every axis and diagonal so that axis-aligned
# test geometry (boxes) does not put queries on projected edges; rows (e1, e2, d) are right-handed.
_RAY_DIR = np.array([0.2113, 0.3797, 0.9007]) / np.linalg.norm([0.2113, 0.3797, 0.9007])
_E1 = np.cross(_RAY_DIR, [1.0, 0.0, 0.0])
_E1 /= np.linalg.norm(_E1)
_RAY_FRAME = np.stack([_E1, np.cross(_RAY_DIR, _E1), _RAY_DIR])
# A query this close (metres) to a projected edge or to the crossing point is decided by the fast winding
# number instead; such a vertex is at most this deep, so either answer changes its depth by less than this.
_AMBIGUOUS_M = 1e-9
_CLOSED_CACHE: dict = {}
_DEPTH_SLABS = 4
_UNBOUNDED = np.full(3, np.inf)
_NEXT = [1, 2, 0]


# numpy reduces over a short axis (min over the 3 columns of an (N, 3) array, or over N rows) ~10-20x
# slower than the same result by elementwise ops on contiguous columns; these run in every query.
def _min3(a: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(a[:, 0], a[:, 1]), a[:, 2])


def _max3(a: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(a[:, 0], a[:, 1]), a[:, 2])


def _box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo (3,), hi (3,)) of (N, 3) points."""
    cols = np.ascontiguousarray(points.T)
    return cols.min(1), cols.max(1)


def _in_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(N,) bool: points inside the closed box [lo, hi]."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])


def _is_closed(faces: np.ndarray) -> bool:
    """Every directed edge used once and its reverse used once: the ray crossing count is then the winding
    number (cached per face array: hands reuse one)."""
    key = (faces.shape, hash(faces.tobytes()))
    closed = _CLOSED_CACHE.get(key)
    if closed is None:
        n = int(faces.max()) + 1
        codes = (faces * n + np.roll(faces, -1, axis=1)).ravel()
        reverse = (np.roll(faces, -1, axis=1) * n + faces).ravel()
        uniq = np.unique(codes)
        closed = bool(len(uniq) == len(codes) and np.isin(reverse, uniq).all())
        if len(_CLOSED_CACHE) > 64:
            _CLOSED_CACHE.clear()
        _CLOSED_CACHE[key] = closed
    return closed


def _ragged(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, index): for each i, the run starts[i] .. starts[i] + counts[i] - 1, flattened."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(starts, counts) + offsets


class _RayGrid:
    """Faces projected along the ray direction, binned into a 2-D grid of their bounding boxes.

    Per-face constants are stored as rows of (K, F) tables so that a query gathers them with one ``take``
    and works on contiguous vectors (numpy is several times slower on short strided rows)."""

    def __init__(self, verts: np.ndarray, faces: np.ndarray) -> None:
        # Ray-frame coordinates about the mesh's first vertex (small numbers: little cancellation below).
        self.origin = verts[0].copy()
        p = (verts - self.origin) @ _RAY_FRAME.T
        corners = np.ascontiguousarray(faces.T)  # (3, F)
        x, y, z = p[:, 0][corners], p[:, 1][corners], p[:, 2][corners]
        dx, dy = x[_NEXT] - x, y[_NEXT] - y  # edge i: corner i -> corner i+1
        area2 = dx[0] * (y[2] - y[0]) - dy[0] * (x[2] - x[0])
        sign = np.where(area2 < 0, -1.0, 1.0)  # orientation seen along the ray: +1 = exit
        # Edge normals scaled by orientation / length: normal . query - offset = signed distance, + inside.
        inv_len = sign / np.maximum(np.hypot(dx, dy), 1e-300)
        nx, ny = -dy * inv_len, dx * inv_len
        self.edges = np.concatenate([nx, ny, nx * x + ny * y])  # (9, F)
        # Twice the area of (corner i, corner i+1, query) = dx_i * qy - dy_i * qx - (dx_i * y_i - dy_i * x_i).
        self.tris = np.concatenate([dx, dy, dx * y - dy * x, z, area2[None], sign[None]])  # (14, F)
        lo, hi = _box(p[:, :2])
        self.cells = np.full(2, max(4, min(64, int(np.sqrt(faces.shape[0])))))
        self.lo = lo
        self.size = np.maximum(hi - lo, 1e-12) / self.cells
        c0x, c0y = (
            self._cell(np.minimum(np.minimum(x[0], x[1]), x[2]), 0),
            self._cell(np.minimum(np.minimum(y[0], y[1]), y[2]), 1),
        )
        spanx = self._cell(np.maximum(np.maximum(x[0], x[1]), x[2]), 0) - c0x + 1
        spany = self._cell(np.maximum(np.maximum(y[0], y[1]), y[2]), 1) - c0y + 1
        face, k = _ragged(np.zeros(faces.shape[0], dtype=np.int64), spanx * spany)
        sx = spanx[face]
        row = np.floor((k + 0.5) / sx).astype(np.int64)  # k // sx in floats (exact for these small ints)
        cell = ((c0x[face] + k - row * sx) * self.cells[1] + c0y[face] + row).astype(np.uint16)
        self.cell_faces = face[np.argsort(cell, kind='stable')]  # radix sort on 16-bit keys
        self.cell_count = np.bincount(cell, minlength=int(self.cells[0] * self.cells[1]))
        self.cell_start = np.cumsum(self.cell_count) - self.cell_count

    def _cell(self, values: np.ndarray, axis: int) -> np.ndarray:
        cells = np.floor((values - self.lo[axis]) / self.size[axis]).astype(np.int64)
        return np.clip(cells, 0, self.cells[axis] - 1)

    def winding(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(integer winding numbers (N,), ambiguous (N,) bool, first hit (N,)) by signed crossings of a ray
        from each query; first hit = distance to the nearest crossing (inf without one), an upper bound of
        the query's distance to the surface."""
        r = np.ascontiguousarray(((query - self.origin) @ _RAY_FRAME.T).T)
        rx, ry, rz = r[0], r[1], r[2]
        cx = np.floor((rx - self.lo[0]) / self.size[0]).astype(np.int64)
        cy = np.floor((ry - self.lo[1]) / self.size[1]).astype(np.int64)
        valid = (cx >= 0) & (cx < self.cells[0]) & (cy >= 0) & (cy < self.cells[1])
        cell = np.where(valid, cx * self.cells[1] + cy, 0)
        owner, flat = _ragged(self.cell_start[cell], np.where(valid, self.cell_count[cell], 0))
        f = self.cell_faces[flat]
        px, py = rx[owner], ry[owner]
        e = self.edges.take(f, axis=1)
        nearest_edge = np.minimum(
            np.minimum(e[0] * px + e[3] * py - e[6], e[1] * px + e[4] * py - e[7]), e[2] * px + e[5] * py - e[8]
        )  # signed distance to the nearest edge line
        inside2d = nearest_edge > _AMBIGUOUS_M
        on_edge = (nearest_edge >= -_AMBIGUOUS_M) & ~inside2d
        oi = owner[inside2d]
        t = self.tris.take(f[inside2d], axis=1)
        qx, qy = px[inside2d], py[inside2d]
        w0, w1, w2 = (t[i] * qy - t[3 + i] * qx - t[6 + i] for i in range(3))
        # Barycentric weight of corner i+2 = twice the area of (corner i, corner i+1, query) / area2.
        dz = (w1 * t[9] + w2 * t[10] + w0 * t[11]) / t[12] - rz[oi]
        crossing = dz > _AMBIGUOUS_M
        hit_owner, hit_dz = oi[crossing], dz[crossing]
        wn = np.bincount(hit_owner, weights=t[13][crossing], minlength=len(query))
        ambiguous = np.zeros(len(query), dtype=bool)
        ambiguous[owner[on_edge]] = True
        ambiguous[oi[np.abs(dz) <= _AMBIGUOUS_M]] = True
        first_hit = np.full(len(query), np.inf)
        if len(hit_owner):  # owners come sorted (ragged runs): one minimum per run
            starts = np.flatnonzero(np.concatenate([[True], hit_owner[1:] != hit_owner[:-1]]))
            first_hit[hit_owner[starts]] = np.minimum.reduceat(hit_dz, starts)
        return wn, ambiguous, first_hit


class MeshSolid:
    """A watertight mesh prepared for many inside / depth queries (metres, float64).

    Its search structures (ray grid, fast-winding-number tree, AABB tree) are built on first use and
    shared with :meth:`translated` / :meth:`rotated` copies (a rigid motion maps the queries into the
    built mesh's frame instead), so one mesh serves both directions of a pair and every rigidly moved
    candidate of it. Build with :func:`prepare_mesh` (validates the arrays).
    """

    def __init__(
        self,
        verts: np.ndarray,
        faces: np.ndarray,
        exact: bool = False,
        _shared: dict[str, Any] | None = None,
        _offset: np.ndarray | None = None,
        _rotation: np.ndarray | None = None,
    ) -> None:
        self.verts, self.faces, self.exact = verts, faces, bool(exact)
        self._shared = {} if _shared is None else _shared
        # Where the mesh is: points = verts @ rotation.T + offset (rotation None = identity).
        self.offset = np.zeros(3) if _offset is None else _offset
        self.rotation = _rotation
        if self.rotation is None:
            if 'bbox' not in self._shared:
                self._shared['bbox'] = _box(verts)
            lo, hi = self._shared['bbox']
            self.lo, self.hi = lo + self.offset, hi + self.offset
            self._points = None
        else:
            self._points = verts @ self.rotation.T + self.offset
            self.lo, self.hi = _box(self._points)

    @property
    def points(self) -> np.ndarray:
        """The vertices where this (possibly moved) mesh is."""
        if self._points is not None:
            return self._points
        return self.verts + self.offset if self.offset.any() else self.verts

    def translated(self, shift: ArrayLike) -> MeshSolid:
        """The same mesh moved by ``shift`` (3,), sharing every built structure."""
        shift = np.asarray(shift, dtype=np.float64).reshape(3)
        return MeshSolid(self.verts, self.faces, self.exact, self._shared, self.offset + shift, self.rotation)

    def rotated(self, rotation: ArrayLike, center: ArrayLike) -> MeshSolid:
        """The same mesh rotated by the 3x3 matrix ``rotation`` about the point ``center`` (3,), sharing every
        built structure (its points differ from rotating the vertices directly only by rounding)."""
        rotation = np.asarray(rotation, dtype=np.float64)
        center = np.asarray(center, dtype=np.float64).reshape(3)
        if rotation.shape != (3, 3) or not np.isfinite(rotation).all():
            raise ValueError(f'rotation must be a finite 3x3 matrix, got shape {rotation.shape}')
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9) or np.linalg.det(rotation) <= 0:
            raise ValueError('rotation must be a proper rotation matrix (orthonormal, det +1)')
        combined = rotation if self.rotation is None else rotation @ self.rotation
        return MeshSolid(
            self.verts, self.faces, self.exact, self._shared, rotation @ (self.offset - center) + center, combined
        )

    def _local(self, query: np.ndarray) -> np.ndarray:
        """World query points in the frame of the built structures."""
        local = query - self.offset
        return local @ self.rotation if self.rotation is not None else local

    def _world(self, local: np.ndarray) -> np.ndarray:
        return (local @ self.rotation.T if self.rotation is not None else local) + self.offset

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        value = self._shared.get(key)
        if value is None:
            value = self._shared[key] = build()
        return value

    def _fast_winding(self, local: np.ndarray) -> np.ndarray:
        def build() -> Any:
            tree = igl.FastWindingNumberBVH()
            tree.init(self.verts, self.faces)
            return tree

        return self._cached('fwn', build).winding_number(np.ascontiguousarray(local))

    def _winding_inside(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inside (N,) bool, upper bounds (N,) of the distance to the surface, inf where unknown)."""
        unknown = np.full(len(local), np.inf)
        if self.exact:
            return igl.winding_number(self.verts, self.faces, np.ascontiguousarray(local)) > _INSIDE_WINDING, unknown
        if not self._cached('closed', lambda: _is_closed(self.faces)):
            return self._fast_winding(local) > _INSIDE_WINDING, unknown
        wn, ambiguous, first_hit = self._cached('grid', lambda: _RayGrid(self.verts, self.faces)).winding(local)
        inside = wn > _INSIDE_WINDING
        if ambiguous.any():
            inside[ambiguous] = self._fast_winding(local[ambiguous]) > _INSIDE_WINDING
        return inside, first_hit

    def _inside_local(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(inside (N,), indices of the inside points, their local coordinates, their distance bounds)."""
        candidates = np.flatnonzero(_in_box(query, self.lo, self.hi))
        inside = np.zeros(len(query), dtype=bool)
        if not len(candidates):
            return inside, candidates, np.zeros((0, 3)), np.zeros(0)
        local = self._local(query[candidates])
        inside_c, bound = self._winding_inside(local)
        inside[candidates] = inside_c
        return inside, candidates[inside_c], local[inside_c], bound[inside_c]

    def inside(self, query: np.ndarray) -> np.ndarray:
        """(N,) bool for float64 (N, 3) query points; only those inside the bounding box are tested."""
        return self._inside_local(query)[0]

    def _aabb(self) -> Any:
        def build() -> Any:
            tree = igl.AABB()
            tree.init(self.verts, self.faces)
            return tree

        return self._cached('aabb', build)

    def closest(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(squared distances, face ids, closest points) of float64 (N, 3) points to the surface."""
        sq, face_ids, closest = self._aabb().squared_distance(
            self.verts, self.faces, np.ascontiguousarray(self._local(query))
        )
        return sq, face_ids, self._world(closest)

    def _face_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """(F, 3) lower and upper corners of each face's box (local frame)."""
        corners = [self.verts[self.faces[:, k]] for k in range(3)]
        return (
            np.minimum(np.minimum(corners[0], corners[1]), corners[2]),
            np.maximum(np.maximum(corners[0], corners[1]), corners[2]),
        )

    def _closest_local(self, local: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``closest`` in the local frame, searching only the faces that can hold a closest point: those
        whose box meets the box of the balls of radius ``bound`` around the queries (the nearest ray
        crossing is a surface point, so the closest one is no farther). A tree over that subset is built
        per call, much cheaper than the whole mesh's when the hands overlap a little."""
        if not np.isfinite(bound).all() or 'aabb' in self._shared:
            sq, face_ids, closest = self._aabb().squared_distance(self.verts, self.faces, np.ascontiguousarray(local))
            return sq, face_ids, closest
        face_lo, face_hi = self._cached('face_boxes', self._face_boxes)
        # Queries in a few slabs along their longest extent, one box each: tighter than one box for all.
        low, high = local - bound[:, None], local + bound[:, None]
        lo, hi = _box(low)[0], _box(high)[1]
        order = np.argsort(local[:, int(np.argmax(hi - lo))], kind='stable')
        keep = np.zeros(len(self.faces), dtype=bool)
        for group in np.array_split(order, min(_DEPTH_SLABS, max(1, len(local) // 8))):
            lo, hi = _box(low[group])[0], _box(high[group])[1]
            keep |= _in_box(face_hi, lo, _UNBOUNDED) & _in_box(face_lo, -_UNBOUNDED, hi)
        subset = np.flatnonzero(keep)
        if len(subset) > 0.6 * len(self.faces):
            return self._aabb().squared_distance(self.verts, self.faces, np.ascontiguousarray(local))
        faces = np.ascontiguousarray(self.faces[subset])
        tree = igl.AABB()
        tree.init(self.verts, faces)
        sq, face_ids, closest = tree.squared_distance(self.verts, faces, np.ascontiguousarray(local))
        return sq, subset[face_ids], closest

    def depths(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Depth of each query point inside the mesh (0 outside), the inside indices, and their closest
        faces and points."""
        _, idx, local, bound = self._inside_local(query)
        depth = np.zeros(len(query))
        face_ids = closest = None
        if len(idx):
            sq, face_ids, closest = self._closest_local(local, bound)
            depth[idx] = np.sqrt(sq)
            closest = self._world(closest)
        return depth, idx, face_ids, closest


def prepare_mesh(
    verts: ArrayLike | torch.Tensor, faces: ArrayLike | torch.Tensor, exact: bool = False, name: str = 'mesh'
) -> MeshSolid:
    """A :class:`MeshSolid` of a watertight mesh (verts (N, 3), faces (F, 3)); validates the arrays."""
    v, f = _mesh_arrays(verts, faces, name)
    return MeshSolid(v, f, exact)


def inside_mask(
    query: ArrayLike | torch.Tensor,
    verts: ArrayLike | torch.Tensor,
    faces: ArrayLike | torch.Tensor,
    exact: bool = False,
) -> np.ndarray:
    """(N,) bool: which query points lie inside the watertight mesh (verts, faces)."""
    v, f = _mesh_arrays(verts, faces, 'mesh')
    q = np.asarray(query.detach().cpu() if isinstance(query, torch.Tensor) else query, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 3 or not np.isfinite(q).all():
        raise ValueError(f'query must be finite with shape (N, 3), got {q.shape}')
    return MeshSolid(v, f, exact).inside(np.ascontiguousarray(q))


def penetration_depths(
    verts_a: ArrayLike | torch.Tensor,
    faces_a: ArrayLike | torch.Tensor,
    verts_b: ArrayLike | torch.Tensor,
    faces_b: ArrayLike | torch.Tensor,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex penetration depths (metres): (depth of a's vertices in b (Na,), of b's in a (Nb,)).

    ``exact=True`` uses the exact generalised winding number (about 2x slower, same answer except
    within ~1e-6 of the surface).
    """
    return solid_depths(prepare_mesh(verts_a, faces_a, exact, 'a'), prepare_mesh(verts_b, faces_b, exact, 'b'))


def solid_depths(solid_a: MeshSolid, solid_b: MeshSolid) -> tuple[np.ndarray, np.ndarray]:
    """``penetration_depths`` of two prepared meshes (each one's structures serve the other's queries)."""
    return solid_b.depths(solid_a.points)[0], solid_a.depths(solid_b.points)[0]


def penetration_depths_batch(
    verts_a: ArrayLike | torch.Tensor,
    faces_a: ArrayLike | torch.Tensor,
    verts_b: ArrayLike | torch.Tensor,
    faces_b: ArrayLike | torch.Tensor,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched ``penetration_depths``: verts (B, N, 3), shared faces -> ((B, Na), (B, Nb))."""
    va = np.asarray(verts_a.detach().cpu() if isinstance(verts_a, torch.Tensor) else verts_a)
    vb = np.asarray(verts_b.detach().cpu() if isinstance(verts_b, torch.Tensor) else verts_b)
    if va.ndim != 3 or vb.ndim != 3 or len(va) != len(vb):
        raise ValueError(f'batched vertices must be (B, N, 3) with equal B, got {va.shape}, {vb.shape}')
    pairs = [penetration_depths(a, faces_a, b, faces_b, exact) for a, b in zip(va, vb)]
    return (
        np.stack([p[0] for p in pairs]).reshape(len(va), va.shape[1]),
        np.stack([p[1] for p in pairs]).reshape(len(vb), vb.shape[1]),
    )


def penetration_metrics(
    verts_a: ArrayLike | torch.Tensor,
    faces_a: ArrayLike | torch.Tensor,
    verts_b: ArrayLike | torch.Tensor,
    faces_b: ArrayLike | torch.Tensor,
    n_query_a: int | None = None,
    n_query_b: int | None = None,
    exact: bool = False,
) -> dict[str, float]:
    """IHMR's AVE-P / MAX-P for one pair: dict(ave_p_mm, max_p_mm, n_inside).

    AVE-P is the mean depth over ALL queried vertices of both hands (zeros included), MAX-P the
    largest. ``n_query_a``/``n_query_b`` restrict the queries to the first n vertices, e.g. 778 to leave
    out a wrist-cap centroid and report over the 2 x 778 MANO vertices as IHMR does.
    """
    da, db = penetration_depths(verts_a, faces_a, verts_b, faces_b, exact)
    da = da[:n_query_a] if n_query_a is not None else da
    db = db[:n_query_b] if n_query_b is not None else db
    return penetration_from_depths(da, db)


def _closest_points_torch(
    verts: torch.Tensor, faces_t: torch.Tensor, face_ids: np.ndarray, closest_np: np.ndarray
) -> torch.Tensor:
    """Re-evaluate numpy closest points as barycentric combinations of torch vertices (grad flows)."""
    fid = torch.as_tensor(face_ids, dtype=torch.long, device=verts.device)
    tri = verts[faces_t[fid]]  # (M, 3, 3)
    tri_np = tri.detach().cpu().numpy().astype(np.float64)
    bary = igl.barycentric_coordinates(
        closest_np,
        np.ascontiguousarray(tri_np[:, 0]),
        np.ascontiguousarray(tri_np[:, 1]),
        np.ascontiguousarray(tri_np[:, 2]),
    )
    valid = np.isfinite(bary).all(1)
    bary = torch.as_tensor(np.where(valid[:, None], bary, 0.0), dtype=verts.dtype, device=verts.device)
    target = (bary[:, :, None] * tri).sum(1)
    if not valid.all():
        # Degenerate (zero-area) face: keep the libigl point, without gradient to this mesh.
        fixed = torch.as_tensor(closest_np, dtype=verts.dtype, device=verts.device)
        target = torch.where(torch.as_tensor(valid, device=verts.device)[:, None], target, fixed)
    return target


def _one_direction(
    query: torch.Tensor, query_solid: MeshSolid, verts: torch.Tensor, solid: MeshSolid, faces_t: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Sum of depths of query vertices inside (verts, faces), differentiable w.r.t. both tensors."""
    _, idx, face_ids, closest = solid.depths(query_solid.points)
    if len(idx) == 0:
        return (query[:0].sum() + verts[:0].sum()), 0
    assert face_ids is not None and closest is not None  # depths() gives both when a vertex is inside
    target = _closest_points_torch(verts, faces_t, face_ids, closest)
    diff = query[torch.as_tensor(idx, device=query.device)] - target
    # Clamped so the gradient stays finite for a vertex lying exactly on the surface.
    depth = (diff * diff).sum(-1).clamp_min(torch.finfo(diff.dtype).tiny).sqrt()
    return depth.sum(), len(idx)


def collision_loss(
    verts_a: torch.Tensor,
    faces_a: ArrayLike | torch.Tensor,
    verts_b: torch.Tensor,
    faces_b: ArrayLike | torch.Tensor,
    reduction: str = 'sum',
    exact: bool = False,
) -> torch.Tensor:
    """Differentiable two-way penetration loss (hand-model.md §5.3, the 'hybrid').

    The inside test and closest-point search run in libigl without gradients; the closest point is then
    rebuilt in torch from its face and barycentric coordinates, so the depth |v - c| has exact
    gradients for the penetrating vertex and for the three vertices of the other mesh's face.
    Per sample: sum over a's vertices inside b and b's vertices inside a of their depth
    (``reduction='sum'``), or that sum divided by Na + Nb (``'mean'``, like AVE-P).
    verts: (B, N, 3) or (N, 3) tensors; returns (B,) or a scalar. Exactly 0 for separated meshes.
    """
    if reduction not in ('sum', 'mean'):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if not isinstance(verts_a, torch.Tensor) or not isinstance(verts_b, torch.Tensor):
        raise TypeError('collision_loss expects torch tensors for the vertices')
    unbatched = verts_a.dim() == 2
    va = verts_a[None] if unbatched else verts_a
    vb = verts_b[None] if verts_b.dim() == 2 else verts_b
    if va.dim() != 3 or vb.dim() != 3 or len(va) != len(vb) or va.shape[-1] != 3 or vb.shape[-1] != 3:
        raise ValueError(
            f'vertices must be (B, N, 3) with equal B, got {tuple(verts_a.shape)}, ' f'{tuple(verts_b.shape)}'
        )
    _, fa_np = _mesh_arrays(va[0], faces_a, 'a')
    _, fb_np = _mesh_arrays(vb[0], faces_b, 'b')
    fa_t = torch.as_tensor(fa_np, device=va.device)
    fb_t = torch.as_tensor(fb_np, device=vb.device)
    losses = []
    for a, b in zip(va, vb):
        solid_a = MeshSolid(np.ascontiguousarray(a.detach().cpu().numpy(), dtype=np.float64), fa_np, exact)
        solid_b = MeshSolid(np.ascontiguousarray(b.detach().cpu().numpy(), dtype=np.float64), fb_np, exact)
        a_in_b, _ = _one_direction(a, solid_a, b, solid_b, fb_t)
        b_in_a, _ = _one_direction(b, solid_b, a, solid_a, fa_t)
        total = a_in_b + b_in_a
        if reduction == 'mean':
            total = total / (a.shape[0] + b.shape[0])
        losses.append(total)
    out = torch.stack(losses)
    return out[0] if unbatched else out
