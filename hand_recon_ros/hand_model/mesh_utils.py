"""Small triangle-mesh helpers: boundary loops, wrist capping, sanity checks (numpy only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def _check_faces(faces: ArrayLike) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f'faces must have shape (F, 3), got {faces.shape}')
    return faces.astype(np.int64)


def edge_face_counts(faces: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges (E, 2) sorted per row and how many faces use each."""
    faces = _check_faces(faces)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e.sort(axis=1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    return edges, counts


def boundary_loops(faces: ArrayLike) -> list[list[int]]:
    """Boundary loops as lists of vertex ids, each ordered along the faces' directed boundary edges."""
    faces = _check_faces(faces)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = set(map(tuple, directed.tolist()))
    nxt: dict[int, int] = {}
    for a, b in directed.tolist():
        if (b, a) not in keys:
            if a in nxt:
                raise ValueError(f'vertex {a} starts two boundary edges (non-manifold boundary)')
            nxt[a] = b
    loops: list[list[int]] = []
    seen: set[int] = set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop: list[int] = []
        v = start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(loop)
    return loops


def cap_boundary(
    vertices: ArrayLike, faces: ArrayLike, loop: list[int] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Close one boundary loop with its centroid vertex and a triangle fan (consistent winding).

    Returns (vertices (V+1, 3), faces (F+n, 3)); the new vertex is the last one. Works for numpy
    arrays; use ``cap_faces`` + ``append_centroid`` for torch vertices.
    """
    faces = _check_faces(faces)
    if loop is None:
        loop = single_boundary_loop(faces)
    vertices = np.asarray(vertices)
    centroid = vertices[..., loop, :].mean(axis=-2, keepdims=True)
    v = np.concatenate([vertices, centroid], axis=-2)
    return v, np.concatenate([faces, cap_faces(loop, vertices.shape[-2])])


def single_boundary_loop(faces: ArrayLike) -> list[int]:
    loops = boundary_loops(faces)
    if len(loops) != 1:
        raise ValueError(f'expected exactly one boundary loop, found {len(loops)}')
    return loops[0]


def cap_faces(loop: Iterable[int], centroid_index: int) -> np.ndarray:
    """Fan faces closing a loop ordered along the directed boundary edges (a -> b gives (b, a, c))."""
    loop = list(loop)
    return np.array([[loop[(i + 1) % len(loop)], loop[i], centroid_index] for i in range(len(loop))], dtype=np.int64)


def euler_characteristic(faces: ArrayLike, num_vertices: int | None = None) -> int:
    faces = _check_faces(faces)
    edges, _ = edge_face_counts(faces)
    v = int(faces.max()) + 1 if num_vertices is None else num_vertices
    return v - len(edges) + len(faces)


def mesh_report(vertices: ArrayLike, faces: ArrayLike) -> dict[str, Any]:
    """Counts used by sanity checks: boundary edges, non-manifold edges, Euler number, orientation."""
    faces = _check_faces(faces)
    vertices = np.asarray(vertices, dtype=np.float64)
    edges, counts = edge_face_counts(faces)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    return dict(
        vertices=len(vertices),
        faces=len(faces),
        edges=len(edges),
        boundary_edges=int(np.sum(counts == 1)),
        nonmanifold_edges=int(np.sum(counts > 2)),
        inconsistent_edges=int(np.sum(dcounts > 1)),  # same directed edge twice = flipped face
        euler=len(vertices) - len(edges) + len(faces),
        unused_vertices=int(len(vertices) - len(np.unique(faces))),
        degenerate_faces=int(np.sum(face_areas(vertices, faces) < 1e-12)),
        signed_volume=signed_volume(vertices, faces),
    )


def face_areas(vertices: ArrayLike, faces: np.ndarray) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def signed_volume(vertices: ArrayLike, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh (positive for outward normals)."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum('ij,ij->i', a, np.cross(b, c)).sum() / 6.0)


def edge_lengths(vertices: ArrayLike, faces: ArrayLike) -> np.ndarray:
    """Lengths of the unique undirected edges, (..., E) for (..., V, 3) numpy vertices."""
    edges, _ = edge_face_counts(faces)
    v = np.asarray(vertices)
    return np.linalg.norm(v[..., edges[:, 0], :] - v[..., edges[:, 1], :], axis=-1)
