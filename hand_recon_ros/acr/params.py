"""The network's per-hand parameter vector -> MANO inputs. Layout in :mod:`hand_recon_ros.acr.network`:
[0:3] weak camera (s, tx, ty), [3:99] 16 rotations in 6D (root first), [99:109] betas."""

from __future__ import annotations

import torch

from hand_recon_ros.geometry import rotations

__all__ = ['params_to_mano']


def params_to_mano(params: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N, 109) ACR parameters -> cam (N, 3), axis-angle global_orient (N, 3), hand_pose (N, 45), betas,
    the root rotation matrices (N, 3, 3) and the same root rotations as (x, y, z, w) quaternions (N, 4)."""
    n = params.shape[0]
    rot6d = params[:, 3:99].reshape(n, 16, 6)
    mats = rotations.rot6d_to_matrix(rot6d, layout='interleaved')
    # matrix_to_axis_angle goes through the quaternion anyway: keep it, the root one is the wrist orientation
    quats = rotations.matrix_to_quaternion(mats)
    aa = rotations.quaternion_to_axis_angle(quats)
    return {
        'cam': params[:, :3],
        'global_orient': aa[:, 0],
        'hand_pose': aa[:, 1:].reshape(n, 45),
        'betas': params[:, 99:109],
        'root_rotation': mats[:, 0],
        'root_quaternion': quats[:, 0],
    }
