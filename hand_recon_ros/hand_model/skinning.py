"""In-house MANO-format layer: shape + pose blend shapes and linear blend skinning, plain torch.

The same model as smplx.MANO (``use_pca=False``) computes, written here from the published MANO/SMPL
formulation so that the shipped stand-in hand runs without smplx, whose code licence is non-commercial
(README "Licences"). Its outputs match smplx's on the stand-in to float32 rounding
(test/test_hand_model_skinning.py). It is the default for the stand-in (``load_hand_model(skinning='auto')``);
``skinning='smplx'|'builtin'`` or ``HAND_RECON_SKINNING`` choose explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch


class ManoOutput(NamedTuple):
    vertices: torch.Tensor
    joints: torch.Tensor


def _dense(array: Any) -> np.ndarray:
    return np.asarray(array.toarray() if hasattr(array, 'toarray') else array, dtype=np.float64)


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """(N, 3) axis-angle -> (N, 3, 3) by Rodrigues' formula (a tiny offset keeps the zero rotation finite)."""
    angle = torch.norm(rotvec + 1e-8, dim=1, keepdim=True)
    axis = rotvec / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    x, y, z = axis[:, 0:1], axis[:, 1:2], axis[:, 2:3]
    zero = torch.zeros_like(x)
    skew = torch.cat([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)[None]
    return eye + sin * skew + (1 - cos) * torch.bmm(skew, skew)


class BuiltinMano(torch.nn.Module):
    """forward(betas (B,10), global_orient (B,3), hand_pose (B,45), transl (B,3)) -> vertices, 16 joints."""

    v_template: torch.Tensor
    shapedirs: torch.Tensor
    posedirs: torch.Tensor
    J_regressor: torch.Tensor
    lbs_weights: torch.Tensor
    pose_mean: torch.Tensor
    parents: torch.Tensor

    def __init__(
        self,
        model_dict: Mapping[str, Any],
        flat_hand_mean: bool = False,
        num_betas: int = 10,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        d = model_dict

        def buffer(name: str, value: Any) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype))

        buffer('v_template', _dense(d['v_template']))
        buffer('shapedirs', _dense(d['shapedirs'])[:, :, :num_betas])  # (V, 3, betas)
        posedirs = _dense(d['posedirs'])
        buffer('posedirs', posedirs.reshape(-1, posedirs.shape[-1]).T)  # (15*9, V*3)
        buffer('J_regressor', _dense(d['J_regressor']))  # (16, V)
        buffer('lbs_weights', _dense(d['weights']))  # (V, 16)
        hands_mean = np.zeros(45) if flat_hand_mean else _dense(d['hands_mean']).reshape(45)
        buffer('pose_mean', np.concatenate([np.zeros(3), hands_mean]))
        parents = np.asarray(d['kintree_table'])[0].astype(np.int64).copy()
        parents[0] = -1
        self.register_buffer('parents', torch.as_tensor(parents))
        self._parents = parents.tolist()

    def forward(
        self,
        betas: torch.Tensor,
        global_orient: torch.Tensor,
        hand_pose: torch.Tensor,
        transl: torch.Tensor | None = None,
    ) -> ManoOutput:
        pose = torch.cat([global_orient, hand_pose], dim=1) + self.pose_mean
        batch = max(betas.shape[0], pose.shape[0])
        # rest shape and its joints
        v_shaped = self.v_template + torch.einsum('bl,mkl->bmk', betas, self.shapedirs)
        joints = torch.einsum('bik,ji->bjk', v_shaped, self.J_regressor)
        # pose-dependent corrective offsets
        rots = axis_angle_to_matrix(pose.reshape(-1, 3)).view(batch, -1, 3, 3)
        eye = torch.eye(3, dtype=rots.dtype, device=rots.device)
        pose_feature = (rots[:, 1:] - eye).view(batch, -1)
        v_posed = torch.matmul(pose_feature, self.posedirs).view(batch, -1, 3) + v_shaped
        # world transform of every joint along the kinematic chain
        posed_joints, rel = self._chain(rots, joints)
        n_joints = self.J_regressor.shape[0]
        per_vertex = torch.matmul(
            self.lbs_weights.unsqueeze(0).expand(batch, -1, -1), rel.view(batch, n_joints, 16)
        ).view(batch, -1, 4, 4)
        ones = torch.ones(batch, v_posed.shape[1], 1, dtype=v_posed.dtype, device=v_posed.device)
        verts = torch.matmul(per_vertex, torch.cat([v_posed, ones], dim=2).unsqueeze(-1))[:, :, :3, 0]
        if transl is not None:
            posed_joints = posed_joints + transl.unsqueeze(1)
            verts = verts + transl.unsqueeze(1)
        return ManoOutput(vertices=verts, joints=posed_joints)

    def _chain(self, rots: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint rotations + rest joints -> posed joints (B, J, 3) and the skinning transforms (B, J, 4, 4),
        which map a rest-pose point to its posed place (the rest joint position is taken out)."""
        parents = self._parents
        offsets = joints.clone()
        offsets[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
        local = torch.cat(
            [
                torch.nn.functional.pad(rots, [0, 0, 0, 1]),
                torch.nn.functional.pad(offsets.unsqueeze(-1), [0, 0, 0, 1], value=1.0),
            ],
            dim=3,
        )
        chain = [local[:, 0]]
        for j in range(1, len(parents)):
            chain.append(torch.matmul(chain[parents[j]], local[:, j]))
        world = torch.stack(chain, dim=1)
        posed_joints = world[:, :, :3, 3]
        rest_home = torch.nn.functional.pad(joints.unsqueeze(-1), [0, 0, 0, 1])  # (B, J, 4, 1), w = 0
        rel = world - torch.nn.functional.pad(torch.matmul(world, rest_home), [3, 0, 0, 0, 0, 0, 0, 0])
        return posed_joints, rel
