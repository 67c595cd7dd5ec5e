"""Two-hand MANO layer with 21-joint output, faces, part labels.

Works with the user's MANO files or, when none are given, the procedural stand-in (with a warning).
Skinning by smplx.MANO per side, or by the in-house layer of skinning.py (``skinning='builtin'``), which
gives the same outputs without smplx's non-commercial code licence.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from .. import conventions
from . import mano_loader, mesh_utils

logger = logging.getLogger('hand_recon_ros.hand_model')
STANDIN_WARNING = 'no MANO files provided: using the procedural stand-in hand; results are NOT MANO results'
SKINNING_CHOICES = ('smplx', 'builtin')
SKINNING_ENV = 'HAND_RECON_SKINNING'
_standin_warned = False


def _warn_standin_once() -> None:
    global _standin_warned
    if not _standin_warned:
        logger.warning(STANDIN_WARNING)
        _standin_warned = True


def _check_side(side: str) -> str:
    if side not in conventions.SIDES:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return side


def build_smplx_mano(
    model_dict: Mapping[str, Any],
    side: str,
    use_pca: bool = False,
    num_pca_comps: int = 45,
    flat_hand_mean: bool = False,
) -> torch.nn.Module:
    """smplx.MANO from an in-memory dict (no file reading; smplx's construction print is swallowed)."""
    import smplx  # noqa: PLC0415  (heavy import, only when a model is built)
    from smplx.utils import Struct  # noqa: PLC0415

    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.MANO(
            'unused',
            is_rhand=(side == 'right'),
            data_struct=Struct(**model_dict),
            use_pca=use_pca,
            num_pca_comps=num_pca_comps,
            flat_hand_mean=flat_hand_mean,
            batch_size=1,
            dtype=torch.float32,
        )


class HandModel(torch.nn.Module):
    """Both hands. ``forward(side, global_orient, hand_pose, betas, transl)`` -> vertices/joints (m)."""

    order21: torch.Tensor

    def __init__(
        self,
        models: Mapping[str, dict[str, Any]],
        is_standin: bool,
        identity: str,
        use_pca: bool = False,
        num_pca_comps: int = 45,
        flat_hand_mean: bool = False,
        skinning: str = 'smplx',
    ) -> None:
        super().__init__()
        if set(models) != set(conventions.SIDES):
            raise ValueError(f'need models for {conventions.SIDES}, got {sorted(models)}')
        if skinning not in SKINNING_CHOICES:
            raise ValueError(f'skinning must be one of {SKINNING_CHOICES}, got {skinning!r}')
        self.is_standin = bool(is_standin)
        self.identity = identity
        self.use_pca = bool(use_pca) and num_pca_comps != 45
        self.flat_hand_mean = bool(flat_hand_mean)
        self.pose_dim = num_pca_comps if self.use_pca else 45
        self.skinning = skinning
        if skinning == 'builtin':
            if self.use_pca:
                raise ValueError("skinning 'builtin' takes the full 45-value hand pose (use_pca=False)")
            from .skinning import BuiltinMano

            self.mano = torch.nn.ModuleDict(
                {s: BuiltinMano(models[s], flat_hand_mean=flat_hand_mean) for s in conventions.SIDES}
            )
        else:
            self.mano = torch.nn.ModuleDict(
                {s: build_smplx_mano(models[s], s, use_pca, num_pca_comps, flat_hand_mean) for s in conventions.SIDES}
            )
        self._data = {s: models[s] for s in conventions.SIDES}
        self._faces = {s: np.asarray(models[s]['f'], dtype=np.int64) for s in conventions.SIDES}
        self._loops = {s: mesh_utils.single_boundary_loop(self._faces[s]) for s in conventions.SIDES}
        tips = {'right': conventions.MANO_TIP_VERTICES_RIGHT, 'left': conventions.MANO_TIP_VERTICES_LEFT}
        for s in conventions.SIDES:
            self.register_buffer(f'tips_{s}', torch.tensor(tips[s], dtype=torch.long), persistent=False)
            self.register_buffer(f'wrist_loop_{s}', torch.tensor(self._loops[s], dtype=torch.long), persistent=False)
        self.register_buffer('order21', torch.tensor(conventions.MANO16_TIPS_TO_21, dtype=torch.long), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.order21.device

    @property
    def num_vertices(self) -> int:
        return int(self._data['right']['v_template'].shape[0])

    def _as_input(self, name: str, x: ArrayLike | torch.Tensor, width: int, batch: int | None = None) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if t.ndim == 1:
            t = t.unsqueeze(0)
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(f'{name} must have shape (B, {width}), got {tuple(t.shape)}')
        if batch is not None and t.shape[0] != batch:
            if t.shape[0] != 1:
                raise ValueError(f'{name} has batch {t.shape[0]}, expected {batch} (or 1 to broadcast)')
            t = t.expand(batch, width)
        return t

    def forward(
        self,
        side: str,
        global_orient: ArrayLike | torch.Tensor,
        hand_pose: ArrayLike | torch.Tensor,
        betas: ArrayLike | torch.Tensor,
        transl: ArrayLike | torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """-> dict(vertices (B,V,3), joints (B,21,3) in conventions' 21-joint order, joints16 (B,16,3))."""
        _check_side(side)
        global_orient = self._as_input('global_orient', global_orient, 3)
        batch = global_orient.shape[0]
        hand_pose = self._as_input('hand_pose', hand_pose, self.pose_dim, batch)
        betas = self._as_input('betas', betas, 10, batch)
        if transl is None:
            transl = torch.zeros(batch, 3, dtype=torch.float32, device=self.device)
        transl = self._as_input('transl', transl, 3, batch)
        out = self.mano[side](betas=betas, global_orient=global_orient, hand_pose=hand_pose, transl=transl)
        verts, joints16 = out.vertices, out.joints
        tips = verts[:, getattr(self, f'tips_{side}')]
        joints = torch.cat([joints16, tips], dim=1)[:, self.order21]
        return dict(vertices=verts, joints=joints, joints16=joints16)

    def faces(self, side: str) -> np.ndarray:
        """(F, 3) int64; the left hand's winding is reversed like MANO's (normals point outwards)."""
        return self._faces[_check_side(side)].copy()

    def wrist_loop(self, side: str) -> list[int]:
        """Wrist boundary loop (found from the faces, ordered along the boundary edges)."""
        return list(self._loops[_check_side(side)])

    def watertight_faces(self, side: str) -> np.ndarray:
        """Faces closed at the wrist by a fan to an extra centroid vertex (index V)."""
        _check_side(side)
        return np.concatenate([self._faces[side], mesh_utils.cap_faces(self._loops[side], self.num_vertices)])

    def watertight_vertices(self, side: str, vertices: torch.Tensor | ArrayLike) -> torch.Tensor | np.ndarray:
        """(…, V, 3) -> (…, V+1, 3) with the wrist centroid appended (torch or numpy)."""
        _check_side(side)
        if isinstance(vertices, torch.Tensor):
            loop = getattr(self, f'wrist_loop_{side}').to(vertices.device)
            centroid = vertices.index_select(-2, loop).mean(dim=-2, keepdim=True)
            return torch.cat([vertices, centroid], dim=-2)
        v = np.asarray(vertices)
        return np.concatenate([v, v[..., self._loops[side], :].mean(axis=-2, keepdims=True)], axis=-2)

    def skinning_weights(self, side: str) -> np.ndarray:
        return np.asarray(self._data[_check_side(side)]['weights'], dtype=np.float64)

    def part_labels(self, side: str) -> np.ndarray:
        """(V,) int64 part per vertex: argmax of the skinning weights (= MANO joint index 0..15)."""
        return self.skinning_weights(side).argmax(axis=1).astype(np.int64)

    def rest_joints(self, side: str) -> np.ndarray:
        """(16, 3) rest-pose joints (betas = 0) = J_regressor @ v_template, metres."""
        d = self._data[_check_side(side)]
        return np.asarray(d['J_regressor'], dtype=np.float64) @ np.asarray(d['v_template'], dtype=np.float64)

    def model_array(self, side: str, key: str) -> np.ndarray:
        """A raw array of the loaded model (e.g. 'v_template', 'hands_mean')."""
        return np.asarray(self._data[_check_side(side)][key])

    def extra_repr(self) -> str:
        return (
            f'identity={self.identity!r}, use_pca={self.use_pca}, flat_hand_mean={self.flat_hand_mean}, '
            f'skinning={self.skinning}'
        )


def resolve_skinning(skinning: str | None, is_standin: bool, pca: bool = False) -> str:
    """'smplx' | 'builtin' | 'auto'/None. auto: $HAND_RECON_SKINNING if set, else builtin for the stand-in
    (no smplx code on that path) and smplx, the reference implementation, for the user's MANO files (which
    carry MANO's own non-commercial licence anyway) and for PCA hand poses, which only smplx takes."""
    value = skinning or os.environ.get(SKINNING_ENV, '').strip() or 'auto'
    if value == 'auto':
        return 'builtin' if is_standin and not pca else 'smplx'
    if value not in SKINNING_CHOICES:
        raise ValueError(f"skinning must be one of {SKINNING_CHOICES} or 'auto', got {value!r}")
    return value


def load_hand_model(
    mano_dir: mano_loader.ModelSource = None,
    device: str | torch.device = 'cpu',
    flat_hand_mean: bool = False,
    use_pca: bool = False,
    num_pca_comps: int = 45,
    fix_left_shapedirs: bool = True,
    use_cache: bool = True,
    skinning: str | None = None,
) -> HandModel:
    """Build the two-hand model. mano_dir: directory with MANO_{RIGHT,LEFT}.pkl, a {'right','left'} file
    mapping, or None (then $HAND_RECON_MANO_DIR, then the shipped stand-in with a warning).
    skinning: 'smplx', 'builtin' or 'auto'/None (see resolve_skinning)."""
    paths, is_standin, source = mano_loader.resolve_model_files(mano_dir)
    models, digests = {}, {}
    for side in conventions.SIDES:
        models[side], digests[side] = mano_loader.load_model_file(paths[side], use_cache=use_cache)
    if fix_left_shapedirs:
        models['left'], applied = mano_loader.fix_left_shapedirs(models['left'], models['right'])
        if applied:
            logger.info('left-hand shapedirs: applied the x-negation fix (smplx issue #48)')
    combined = hashlib.sha256((digests['right'] + digests['left']).encode()).hexdigest()[:16]
    if is_standin:
        version = str(models['right'].get('standin_version', 'standin'))
        identity = f'{version} sha256:{combined}'
        _warn_standin_once()
    else:
        identity = f'MANO user files sha256:{combined}'
    logger.debug('hand model: %s (%s)', identity, source)
    model = HandModel(
        models,
        is_standin,
        identity,
        use_pca=use_pca,
        num_pca_comps=num_pca_comps,
        flat_hand_mean=flat_hand_mean,
        skinning=resolve_skinning(skinning, is_standin, pca=use_pca and num_pca_comps != 45),
    )
    return model.to(device)
