"""ACR training losses (method-acr-ihmr.md §2.2): MANO parameters, 3D joints (MPJPE + PA-MPJPE), 2D
projection, bone lengths, centre focal loss (sigmoid/logit form) and part-segmentation cross-entropy.

The parameters that are supervised are the ones the decoder hands to the pipeline: ``params`` plus the
cross-hand prior with the decoder's gate (so training and inference see the same quantity). In
``'softmax'`` centre-attention mode ``params`` is (B, 2, 109); in ``'peak'`` mode the maps are read at
the ground-truth centre of each hand. Only hands that exist in the image (``valid``) are supervised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hand_recon_ros.acr.decoding import DecodeConfig, interaction_coefficient, kernel_from_cam_scale
from hand_recon_ros.config_utils import dataclass_from_dict
from hand_recon_ros.conventions import BONES, ROOT_MIDDLE_MCP, SIDES
from hand_recon_ros.geometry import rotations
from hand_recon_ros.geometry.procrustes import similarity_procrustes

__all__ = [
    'LOSS_TERMS',
    'PAPER_WEIGHTS',
    'ACRLoss',
    'LossConfig',
    'center_focal_loss',
    'side_exclusion_loss',
    'peak_positions',
    'select_hand_params',
]

# Paper weights [paper, unconfirmed]: j3d 200, paj3d 360, pj2d 400, bone 200, pose 80, shape 10, centre 80,
# part segmentation 160. 'cam' (direct weak-camera regression) is 0 like the release (supervise_cam_params=False).
PAPER_WEIGHTS = {
    'pose': 80.0,
    'shape': 10.0,
    'j3d': 200.0,
    'paj3d': 360.0,
    'pj2d': 400.0,
    'bone': 200.0,
    'center': 80.0,
    'seg': 160.0,
    'cam': 0.0,
}
# Optional mesh smoothness terms (DIR supplement practice, off in the paper setup): 'edge' = mean |edge length
# error| (m), 'normal' = mean |cos| between predicted edges and the ground-truth face normal. They need
# ground-truth vertices (synthetic data; real samples carry has_vertices = False).
MESH_TERMS = {'edge': 0.0, 'normal': 0.0}
# Optional, off by default: 'side_excl' penalises a pixel where both side maps fire more than the ground truth has
# both sides there (one hand seen as a left and a right: the same-spot pairs of benchmarks/calibrate_threshold.py).
EXTRA_TERMS = {'side_excl': 0.0}
LOSS_TERMS = tuple(PAPER_WEIGHTS) + tuple(MESH_TERMS) + tuple(EXTRA_TERMS)
_BONE_PARENT = torch.tensor([p for p, _ in BONES])
_BONE_CHILD = torch.tensor([c for _, c in BONES])


@dataclass
class LossConfig:
    """``seg_epochs``: hybrid supervision, part-seg CE only while ``epoch < seg_epochs`` (release: 2).
    ``smooth_l1``: SmoothL1 (``smooth_l1_beta`` in the term's units) instead of L2 / Euclidean errors."""

    weights: dict = field(default_factory=lambda: dict(PAPER_WEIGHTS))
    seg_epochs: int = 2
    smooth_l1: bool = False
    smooth_l1_beta: float = 0.01

    def __post_init__(self):
        merged = {**PAPER_WEIGHTS, **MESH_TERMS, **EXTRA_TERMS}
        unknown = sorted(set(self.weights) - set(merged))
        if unknown:
            raise ValueError(f'unknown loss weights {unknown}; known: {list(merged)}')
        merged.update({k: float(v) for k, v in self.weights.items()})
        if any(v < 0 or not math.isfinite(v) for v in merged.values()):
            raise ValueError(f'loss weights must be finite and >= 0, got {merged}')
        self.weights = merged
        if self.seg_epochs < 0 or self.smooth_l1_beta <= 0:
            raise ValueError('seg_epochs must be >= 0 and smooth_l1_beta > 0')

    @classmethod
    def from_dict(cls, data: dict | None) -> LossConfig:
        return dataclass_from_dict(cls, data, 'loss config')


def center_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0, positive_threshold: float = 0.999
) -> torch.Tensor:
    """CornerNet focal loss on raw centre logits (p = sigmoid(logit), logs via logsigmoid: no clamping).

    Positives are target pixels == 1 (the Gaussian peaks). Each map's sum is divided by its number of
    positives (1 when it has none), then maps are averaged.
    """
    if logits.shape != target.shape or logits.dim() != 4:
        raise ValueError(
            f'logits and target must both be (B, 2, h, w), got {tuple(logits.shape)} and ' f'{tuple(target.shape)}'
        )
    logits, target = logits.float(), target.float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    pos = (target >= positive_threshold).float()
    pos_loss = -((1.0 - p) ** alpha) * log_p * pos
    neg_loss = -((1.0 - target) ** beta) * (p**alpha) * log_not_p * (1.0 - pos)
    per_map = (pos_loss + neg_loss).sum(dim=(-2, -1)) / pos.sum(dim=(-2, -1)).clamp_min(1.0)
    return per_map.mean()


def side_exclusion_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) centre logits and targets -> how much both side maps fire on the same pixels beyond what the
    ground truth has there: sum over pixels of relu(p_left * p_right - t_left * t_right), per image divided by its
    number of labelled peaks (1 when none), averaged. Zero for maps equal to the targets, also for overlapping pairs."""
    if logits.shape != target.shape or logits.dim() != 4 or logits.shape[1] != 2:
        raise ValueError(
            f'logits and target must both be (B, 2, h, w), got {tuple(logits.shape)} and {tuple(target.shape)}'
        )
    p = torch.sigmoid(logits.float())
    target = target.float()
    excess = F.relu(p[:, 0] * p[:, 1] - target[:, 0] * target[:, 1])
    peaks = (target >= 0.999).float().sum(dim=(1, 2, 3)).clamp_min(1.0)
    return (excess.sum(dim=(-2, -1)) / peaks).mean()


def peak_positions(center_targets: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) targets -> (B, 2, 2) integer (y, x) of each map's maximum."""
    b, s, h, w = center_targets.shape
    flat = center_targets.reshape(b, s, h * w).argmax(dim=-1)
    return torch.stack([flat // w, flat % w], dim=-1)


def select_hand_params(
    outputs: dict, center_targets: torch.Tensor, valid: torch.Tensor, decode_config: DecodeConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, 109) parameters per side as the decoder would output them for the ground-truth hands, and
    the (B, 2) prior coefficient used. Peak mode reads the maps at the GT centres."""
    config = decode_config or DecodeConfig()
    params, prior = outputs['params'], outputs['prior']
    peaks = peak_positions(center_targets)  # (B, 2, 2)
    b_idx = torch.arange(params.shape[0], device=params.device)
    if params.dim() == 5:
        per_side, prior_side = [], []
        for side in range(2):
            y, x = peaks[:, side, 0], peaks[:, side, 1]
            oy, ox = peaks[:, 1 - side, 0], peaks[:, 1 - side, 1]
            per_side.append(params[b_idx, side, :, y, x])
            prior_side.append(prior[b_idx, side, :, oy, ox])  # inverse query: read at the other centre
        params, prior = torch.stack(per_side, 1), torch.stack(prior_side, 1)
    map_size = center_targets.shape[-1]
    radius = config.prior_radius if config.prior_radius is not None else map_size / 2.0
    both = valid.all(dim=1)
    distance = (peaks[:, 0] - peaks[:, 1]).float().norm(dim=-1)
    coeff = torch.zeros(params.shape[0], 2, dtype=params.dtype, device=params.device)
    for i in torch.nonzero(both).flatten().tolist():
        for side in range(2):
            k_own = k_other = 0.0
            if config.prior_gate == 'soft':
                scales = params[i, :, 0].detach()
                k_own = kernel_from_cam_scale(float(scales[side]), map_size, config.hand_extent_m)
                k_other = kernel_from_cam_scale(float(scales[1 - side]), map_size, config.hand_extent_m)
            coeff[i, side] = interaction_coefficient(
                float(distance[i]), config.prior_gate, radius, k_own, k_other, config.prior_gamma
            )
    fused = torch.cat([params[..., :3], params[..., 3:] + coeff[..., None] * prior], dim=-1)
    return fused, coeff


def _aligned_fixed(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``pred`` (N, J, 3) after its best similarity alignment onto ``gt``, with scale and rotation held fixed in
    the backward pass: at the optimum that is the same gradient (envelope theorem), and it avoids the SVD's
    backward, which is NaN for degenerate joint sets (collinear or coincident points)."""
    with torch.no_grad():
        scale, rotation, _ = similarity_procrustes(pred, gt)
    centred = pred - pred.mean(dim=-2, keepdim=True)
    return scale[:, None, None] * centred @ rotation.transpose(-1, -2) + gt.mean(dim=-2, keepdim=True)


class ACRLoss(torch.nn.Module):
    """Weighted sum of the terms; ``forward`` returns (total, {term: weighted value (detached)})."""

    def __init__(self, hand_model, config: LossConfig | None = None, decode_config: DecodeConfig | None = None):
        super().__init__()
        self.config = config or LossConfig()
        self.decode_config = decode_config or DecodeConfig()
        self.hand_model = hand_model.requires_grad_(False)
        # mesh topology for the optional smoothness terms: unique edges and faces per side
        for side in SIDES:
            faces = torch.as_tensor(np.asarray(hand_model.faces(side)), dtype=torch.long)
            edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values.unique(dim=0)
            self.register_buffer(f'faces_{side}', faces, persistent=False)
            self.register_buffer(f'edges_{side}', edges, persistent=False)

    def _mesh_terms(self, verts: torch.Tensor, gt: torch.Tensor, side: str) -> dict:
        """Edge-length and normal-consistency errors of (N, V, 3) predicted vs ground-truth meshes of one side."""
        edges, faces = getattr(self, f'edges_{side}'), getattr(self, f'faces_{side}')
        length = (verts[:, edges[:, 0]] - verts[:, edges[:, 1]]).norm(dim=-1)
        length_gt = (gt[:, edges[:, 0]] - gt[:, edges[:, 1]]).norm(dim=-1)
        a, b, c = (gt[:, faces[:, k]] for k in range(3))
        normal_gt = F.normalize(torch.cross(b - a, c - a, dim=-1), dim=-1)
        cosines = []
        for i, j in ((0, 1), (1, 2), (2, 0)):
            edge = F.normalize(verts[:, faces[:, i]] - verts[:, faces[:, j]], dim=-1)
            cosines.append((edge * normal_gt).sum(-1).abs())
        return {'edge': (length - length_gt).abs().mean(), 'normal': torch.stack(cosines).mean()}

    def _points(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean point error over (N, J, D) points: Euclidean, or SmoothL1 summed over coordinates."""
        if self.config.smooth_l1:
            err = F.smooth_l1_loss(pred, gt, reduction='none', beta=self.config.smooth_l1_beta).sum(-1)
        else:
            err = (pred - gt).norm(dim=-1)
        if mask is None:
            return err.mean()
        mask = mask.to(err.dtype)
        return (err * mask).sum() / mask.sum().clamp_min(1.0)

    def _l2(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        if self.config.smooth_l1:
            return F.smooth_l1_loss(pred, gt, beta=self.config.smooth_l1_beta)
        return F.mse_loss(pred, gt)

    def forward(self, outputs: dict, batch: dict, epoch: int = 0) -> tuple[torch.Tensor, dict]:
        w = self.config.weights
        terms = {}
        terms['center'] = center_focal_loss(outputs['center_maps'], batch['center_maps'])
        if w['side_excl'] > 0:
            terms['side_excl'] = side_exclusion_loss(outputs['center_maps'], batch['center_maps'])
        # Real datasets have no part labels (all pixels ignore_index = -100): no term rather than a NaN mean.
        if w['seg'] > 0 and epoch < self.config.seg_epochs and bool((batch['seg'] != -100).any()):
            terms['seg'] = F.cross_entropy(outputs['segmentation'].float(), batch['seg'])
        valid = batch['valid'].bool()
        fused, _ = select_hand_params(outputs, batch['center_maps'], valid, self.decode_config)
        b_idx, s_idx = torch.nonzero(valid, as_tuple=True)
        if len(b_idx):
            terms.update(self._hand_terms(fused.float()[b_idx, s_idx], batch, b_idx, s_idx))
        device = outputs['center_maps'].device
        total = torch.zeros((), device=device)
        for name, value in terms.items():
            total = total + w[name] * value
        logged = {name: float(w[name] * value.detach()) for name, value in terms.items()}
        logged['total'] = float(total.detach())
        return total, logged

    def _hand_terms(self, p: torch.Tensor, batch: dict, b_idx: torch.Tensor, s_idx: torch.Tensor) -> dict:
        n = p.shape[0]
        mats = rotations.rot6d_to_matrix(p[:, 3:99].reshape(n, 16, 6), layout='interleaved')
        gt_aa = torch.cat([batch['global_orient'][b_idx, s_idx], batch['hand_pose'][b_idx, s_idx]], dim=-1)
        gt_mats = rotations.axis_angle_to_matrix(gt_aa.reshape(n, 16, 3))
        betas = p[:, 99:109]
        # Real samples: MANO targets only where the dataset has them; joints only where annotated.
        has_mano = (
            batch['has_mano'][b_idx, s_idx].bool()
            if 'has_mano' in batch
            else torch.ones(n, dtype=torch.bool, device=p.device)
        )
        jvalid = (
            batch['joints_valid'][b_idx, s_idx].bool()
            if 'joints_valid' in batch
            else torch.ones(n, 21, dtype=torch.bool, device=p.device)
        )
        terms = {}
        if has_mano.any():
            terms['pose'] = self._l2(mats[has_mano], gt_mats[has_mano])
            terms['shape'] = self._l2(betas[has_mano], batch['betas'][b_idx, s_idx][has_mano])
        if self.config.weights['cam'] > 0:
            terms['cam'] = self._l2(p[:, :3], batch['cam'][b_idx, s_idx])
        aa = rotations.matrix_to_axis_angle(mats)
        joints = torch.zeros(n, 21, 3, dtype=p.dtype, device=p.device)
        w = self.config.weights
        mesh_wanted = (w['edge'] > 0 or w['normal'] > 0) and 'vertices' in batch
        mesh_parts = []
        for side in (0, 1):
            sel = torch.nonzero(s_idx == side).flatten()
            if len(sel):
                out = self.hand_model(SIDES[side], aa[sel, 0], aa[sel, 1:].reshape(len(sel), 45), betas[sel])
                joints = joints.index_put((sel,), out['joints'].to(p.dtype))
                if mesh_wanted:
                    has = (
                        batch['has_vertices'][b_idx[sel], side].bool()
                        if 'has_vertices' in batch
                        else torch.ones(len(sel), dtype=torch.bool, device=p.device)
                    )
                    if has.any():
                        gt_verts = batch['vertices'][b_idx[sel][has], side]
                        mesh_parts.append(
                            (self._mesh_terms(out['vertices'][has], gt_verts, SIDES[side]), int(has.sum()))
                        )
        if mesh_parts:  # hand-count weighted mean over the two sides
            total = sum(count for _, count in mesh_parts)
            for name in ('edge', 'normal'):
                if w[name] > 0:
                    terms[name] = sum(part[name] * count for part, count in mesh_parts) / total
        root = ROOT_MIDDLE_MCP
        pred_rel = joints - joints[:, root : root + 1]
        gt = batch['joints_3d'][b_idx, s_idx]
        gt_rel = gt - gt[:, root : root + 1]
        proj = p[:, 0, None, None] * pred_rel[..., :2] + p[:, None, 1:3]
        terms['pj2d'] = self._points(proj, batch['joints_2d'][b_idx, s_idx], batch['joints_vis'][b_idx, s_idx])
        jvalid = jvalid & jvalid[:, root : root + 1]  # relative joints need a valid root
        if not jvalid.any():
            return terms
        terms['j3d'] = self._points(pred_rel, gt_rel, jvalid)
        full = jvalid.all(dim=1)  # Procrustes needs every joint of the hand
        if full.any():
            terms['paj3d'] = self._points(_aligned_fixed(pred_rel[full], gt_rel[full]), gt_rel[full])
        parent, child = _BONE_PARENT.to(p.device), _BONE_CHILD.to(p.device)
        bone_pred = (pred_rel[:, child] - pred_rel[:, parent]).norm(dim=-1)
        bone_gt = (gt_rel[:, child] - gt_rel[:, parent]).norm(dim=-1)
        bone_ok = (jvalid[:, child] & jvalid[:, parent]).to(p.dtype)
        terms['bone'] = ((bone_pred - bone_gt).abs() * bone_ok).sum() / bone_ok.sum().clamp_min(1.0)
        return terms
