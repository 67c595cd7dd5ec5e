"""The trainer's per-epoch metrics on a held-out synthetic split: hand accuracy (hand_recon_ros.metrics) and detection.

Hand accuracy is measured at the ground-truth hands (parameters read like the decoder would, with the
prior gate) so it does not mix with detection; detection is scored separately from ``decode``:
a ground-truth hand counts as found when a detection of its side lies within ``match_radius`` map pixels
of its centre-map peak. The full report of a split is ``report.evaluate_split``; the command line is
``python -m hand_recon_train.evaluation`` (cli.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from hand_recon_ros import metrics
from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.conventions import ROOT_MIDDLE_MCP
from hand_recon_ros.geometry.camera import weak_perspective_project

from ..losses import ACRLoss
from .loop import eval_batches
from .report import place_hand

__all__ = ['evaluate', 'projection_error_px', 'METRIC_KEYS']

METRIC_KEYS = (
    'val_loss',
    'mpjpe_mm',
    'pa_mpjpe_mm',
    'mpvpe_mm',
    'pj2d_px',
    'root_error_mm',
    'depth_ratio',
    'recall',
    'precision',
    'num_hands',
)


@torch.no_grad()
def evaluate(
    model,
    loader,
    hand_model,
    device=None,
    decode_config: DecodeConfig | None = None,
    loss_fn: ACRLoss | None = None,
    match_radius: float = 2.0,
    max_batches: int | None = None,
) -> dict:
    """Mean metrics over the loader (keys ``METRIC_KEYS``; NaN when no hand was present). ``depth_ratio``:
    median placed / true hand depth (above 1: hands placed too far; the weak camera's scale decides it)."""
    per_hand, losses, depth_ratios = [], [], []
    tp = fn = fp = 0
    batches = loader if max_batches is None else itertools.islice(loader, max_batches)
    for step in eval_batches(model, batches, hand_model, device, decode_config, match_radius):
        batch, fused = step.batch, step.fused
        if loss_fn is not None:
            losses.append(loss_fn(step.outputs, batch, epoch=10**9)[1]['total'])  # no segmentation term
        for (b, s), (pj, pv) in sorted(step.meshes.items()):
            gj, gv = batch['joints_3d'][b, s].double().cpu().numpy(), batch['vertices'][b, s].double().cpu().numpy()
            # placed in the camera frame as the pipeline does: the depth comes from the weak camera's scale
            placed = place_hand(pj, pv, fused[b, s, :3].tolist(), batch['K'][b].double().cpu().numpy(), step.size)
            root_error = depth_ratio = None
            if placed is not None:
                root_error = float(np.linalg.norm(placed[0][ROOT_MIDDLE_MCP] - gj[ROOT_MIDDLE_MCP]) * 1e3)
                depth_ratio = float(placed[0][ROOT_MIDDLE_MCP, 2] / gj[ROOT_MIDDLE_MCP, 2])
                depth_ratios.append(depth_ratio)
            per_hand.append(
                {
                    'root_error_mm': root_error,
                    'mpjpe_mm': metrics.mpjpe(pj, gj, root=ROOT_MIDDLE_MCP),
                    'pa_mpjpe_mm': metrics.pa_mpjpe(pj, gj),
                    'mpvpe_mm': metrics.mpvpe(pv, gv, pj, gj, root=ROOT_MIDDLE_MCP),
                    'pj2d_px': projection_error_px(
                        pj,
                        fused[b, s, :3].numpy(),
                        batch['joints_2d'][b, s].cpu().numpy(),
                        batch['joints_vis'][b, s].cpu().numpy(),
                        step.size,
                    ),
                }
            )
        for image_tp, image_fn, image_fp in step.detections:
            tp, fn, fp = tp + image_tp, fn + image_fn, fp + image_fp
    summary = metrics.summarize(per_hand)
    result = {
        k: summary.get(k, float('nan')) for k in ('mpjpe_mm', 'pa_mpjpe_mm', 'mpvpe_mm', 'pj2d_px', 'root_error_mm')
    }
    result['depth_ratio'] = float(np.median(depth_ratios)) if depth_ratios else float('nan')  # 1 = unbiased
    result['val_loss'] = float(np.mean(losses)) if losses else float('nan')
    result['recall'] = tp / (tp + fn) if tp + fn else float('nan')
    result['precision'] = tp / (tp + fp) if tp + fp else float('nan')
    result['num_hands'] = len(per_hand)
    return {k: result[k] for k in METRIC_KEYS}


def projection_error_px(joints, cam, joints_2d, visible, size: int) -> float | None:
    """Mean 2D error (network-input pixels) of ``joints`` (21, 3) under the weak camera ``cam`` (s, tx, ty)
    against ``joints_2d`` (21, 2) in [-1, 1], over the visible joints; None when none is visible."""
    visible = np.asarray(visible).astype(bool)
    if not visible.any():
        return None
    rel = np.asarray(joints, np.float64) - np.asarray(joints, np.float64)[ROOT_MIDDLE_MCP]
    # both sides in [-1, 1] first, then to pixels the same way: (p + 1) * size / 2
    projected = weak_perspective_project(rel, *np.asarray(cam, np.float64)[:3])
    error = np.linalg.norm(projected - np.asarray(joints_2d, np.float64), axis=-1) * (size / 2.0)
    return float(error[visible].mean())
