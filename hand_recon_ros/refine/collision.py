"""Thin two-hand wrapper over hand_model.penetration: closes both MANO meshes at the wrist, then sums
the exact per-vertex penetration depths (libigl) of each hand in the other.

The collision error of a pair = sum over the vertices of both closed meshes of their depth inside the
other hand (metres; 0 when the hands do not interpenetrate). The same number is the value of the
differentiable ``collision_loss`` (reduction 'sum'), so the OPT objective and the verification measure
one quantity.
"""
from __future__ import annotations

import numpy as np
import torch

from hand_recon_ros.hand_model.penetration import collision_loss, penetration_depths

__all__ = ['TwoHandCollision']


class TwoHandCollision:
    def __init__(self, hand_model):
        self.hand_model = hand_model
        self.faces = {side: hand_model.watertight_faces(side) for side in ('left', 'right')}

    def _closed(self, side, verts):
        if not isinstance(verts, torch.Tensor) or verts.dim() != 3 or verts.shape[-1] != 3:
            raise ValueError(f'{side} vertices must be a (B, V, 3) tensor')
        return self.hand_model.watertight_vertices(side, verts)

    def errors(self, verts_left: torch.Tensor, verts_right: torch.Tensor, mask=None) -> np.ndarray:
        """(B,) float64 collision errors (metres). Samples with ``mask`` False are not computed (NaN)."""
        wl = self._closed('left', verts_left).detach().cpu().double().numpy()
        wr = self._closed('right', verts_right).detach().cpu().double().numpy()
        if len(wl) != len(wr):
            raise ValueError(f'batch sizes differ: {len(wl)} left, {len(wr)} right')
        out = np.full(len(wl), np.nan)
        for i in range(len(wl)):
            if mask is not None and not mask[i]:
                continue
            if not (np.isfinite(wl[i]).all() and np.isfinite(wr[i]).all()):
                continue      # NaN stays: a broken candidate is never "better"
            d_left, d_right = penetration_depths(wl[i], self.faces['left'], wr[i], self.faces['right'])
            out[i] = d_left.sum() + d_right.sum()
        return out

    def loss(self, verts_left: torch.Tensor, verts_right: torch.Tensor) -> torch.Tensor:
        """(B,) differentiable collision errors (same value as :meth:`errors`)."""
        return collision_loss(self._closed('left', verts_left), self.faces['left'],
                              self._closed('right', verts_right), self.faces['right'], reduction='sum')
