"""Thin two-hand wrapper over hand_model.penetration: closes both MANO meshes at the wrist, then sums
the exact per-vertex penetration depths (libigl) of each hand in the other.

The collision error of a pair = sum over the vertices of both closed meshes of their depth inside the
other hand (metres; 0 when the hands do not interpenetrate). The same number is the value of the
differentiable ``collision_loss`` (reduction 'sum'), so the OPT objective and the verification measure
one quantity.

Speed: each closed hand becomes a ``MeshSolid`` whose search structures are built once and serve both
directions; :meth:`TwoHandCollision.solids` / :meth:`errors_of` let the refiner keep a hand's solid while
only the other hand changes, and shift or rotate it (no rebuild) when a stage moves it rigidly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.hand_model.penetration import MeshSolid, collision_loss, solid_depths

if TYPE_CHECKING:
    from hand_recon_ros.hand_model.model import HandModel

__all__ = ['TwoHandCollision']


class TwoHandCollision:
    def __init__(self, hand_model: HandModel) -> None:
        self.hand_model = hand_model
        self.faces = {side: hand_model.watertight_faces(side) for side in SIDES}

    def _closed(self, side: str, verts: torch.Tensor) -> torch.Tensor:
        if not isinstance(verts, torch.Tensor) or verts.dim() != 3 or verts.shape[-1] != 3:
            raise ValueError(f'{side} vertices must be a (B, V, 3) tensor')
        # a tensor in gives a tensor out (watertight_vertices is typed for numpy input too)
        return cast(torch.Tensor, self.hand_model.watertight_vertices(side, verts))

    def solids(
        self, side: str, verts: torch.Tensor, mask: np.ndarray | Sequence[bool] | None = None
    ) -> list[MeshSolid | None]:
        """One ``MeshSolid`` per sample of (B, V, 3) vertices (closed at the wrist); None where ``mask`` is
        False or the vertices are not finite."""
        closed = self._closed(side, verts).detach().cpu().double().numpy()
        faces = self.faces[side]
        out: list[MeshSolid | None] = []
        for i, v in enumerate(closed):
            ok = (mask is None or mask[i]) and np.isfinite(v).all()
            out.append(MeshSolid(np.ascontiguousarray(v), faces) if ok else None)
        return out

    def errors_of(
        self,
        solids_left: Sequence[MeshSolid | None],
        solids_right: Sequence[MeshSolid | None],
        mask: np.ndarray | Sequence[bool] | None = None,
    ) -> np.ndarray:
        """(B,) float64 collision errors of prepared hands; NaN where ``mask`` is False or a solid is None."""
        if len(solids_left) != len(solids_right):
            raise ValueError(f'batch sizes differ: {len(solids_left)} left, {len(solids_right)} right')
        out = np.full(len(solids_left), np.nan)
        for i, (left, right) in enumerate(zip(solids_left, solids_right)):
            if (mask is not None and not mask[i]) or left is None or right is None:
                continue  # NaN stays: a broken candidate is never "better"
            d_left, d_right = solid_depths(left, right)
            out[i] = d_left.sum() + d_right.sum()
        return out

    def errors(
        self, verts_left: torch.Tensor, verts_right: torch.Tensor, mask: np.ndarray | Sequence[bool] | None = None
    ) -> np.ndarray:
        """(B,) float64 collision errors (metres). Samples with ``mask`` False are not computed (NaN)."""
        left, right = self._closed('left', verts_left), self._closed('right', verts_right)
        if len(left) != len(right):
            raise ValueError(f'batch sizes differ: {len(left)} left, {len(right)} right')
        return self.errors_of(self.solids('left', verts_left, mask), self.solids('right', verts_right, mask))

    def loss(self, verts_left: torch.Tensor, verts_right: torch.Tensor) -> torch.Tensor:
        """(B,) differentiable collision errors (same value as :meth:`errors`)."""
        return collision_loss(
            self._closed('left', verts_left),
            self.faces['left'],
            self._closed('right', verts_right),
            self.faces['right'],
            reduction='sum',
        )
