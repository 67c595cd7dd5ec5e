"""Evaluation on a held-out synthetic split: hand accuracy (hand_recon_ros.metrics) and detection.

Hand accuracy is measured at the ground-truth hands (parameters read like the decoder would, with the
prior gate) so it does not mix with detection; detection is scored separately from ``decode``:
a ground-truth hand counts as found when a detection of its side lies within ``match_radius`` map pixels
of its centre-map peak.

``python -m hand_recon_train.evaluate --weights out/train/x/model.safetensors --num 64 --seed 100000``
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch

from hand_recon_ros import metrics
from hand_recon_ros.acr.decoding import DecodeConfig, decode
from hand_recon_ros.conventions import ROOT_MIDDLE_MCP
from hand_recon_ros.pipeline import params_to_mano

from .losses import ACRLoss, peak_positions, select_hand_params

__all__ = ['evaluate', 'main', 'METRIC_KEYS']

SIDE_NAMES = ('left', 'right')
METRIC_KEYS = ('val_loss', 'mpjpe_mm', 'pa_mpjpe_mm', 'mpvpe_mm', 'pj2d_px', 'recall', 'precision', 'num_hands')


@torch.no_grad()
def evaluate(model, loader, hand_model, device=None, decode_config: DecodeConfig | None = None,
             loss_fn: ACRLoss | None = None, match_radius: float = 2.0, max_batches: int | None = None) -> dict:
    """Mean metrics over the loader (keys ``METRIC_KEYS``; NaN when no hand was present)."""
    device = device or next(model.parameters()).device
    decode_config = decode_config or DecodeConfig()
    was_training = model.training
    model.eval()
    per_hand, losses = [], []
    tp = fn = fp = 0
    for n_batch, batch in enumerate(loader):
        if max_batches is not None and n_batch >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = {k: v.float() for k, v in model(batch['image']).items()}
        if loss_fn is not None:
            losses.append(loss_fn(outputs, batch, epoch=10 ** 9)[1]['total'])    # no segmentation term
        valid = batch['valid'].bool()
        fused, _ = select_hand_params(outputs, batch['center_maps'], valid, decode_config)
        size = batch['image'].shape[-1]
        for b, s in torch.nonzero(valid).tolist():
            mano = params_to_mano(fused[b, s][None].cpu())
            out = hand_model(SIDE_NAMES[s], mano['global_orient'].to(device), mano['hand_pose'].to(device),
                             mano['betas'].to(device))
            pj, pv = out['joints'][0].cpu().numpy(), out['vertices'][0].cpu().numpy()
            gj, gv = batch['joints_3d'][b, s].cpu().numpy(), batch['vertices'][b, s].cpu().numpy()
            cam = fused[b, s, :3].cpu().numpy()
            rel = pj - pj[ROOT_MIDDLE_MCP]
            proj = (cam[0] * rel[:, :2] + cam[1:]) * (size / 2.0)
            gt2d = (batch['joints_2d'][b, s].cpu().numpy() + 1.0) * (size / 2.0)
            vis = batch['joints_vis'][b, s].cpu().numpy().astype(bool)
            per_hand.append({
                'mpjpe_mm': metrics.mpjpe(pj, gj, root=ROOT_MIDDLE_MCP),
                'pa_mpjpe_mm': metrics.pa_mpjpe(pj, gj),
                'mpvpe_mm': metrics.mpvpe(pv, gv, pj, gj, root=ROOT_MIDDLE_MCP),
                'pj2d_px': float(np.linalg.norm(proj - gt2d, axis=-1)[vis].mean()) if vis.any() else None,
            })
        dets = decode({k: outputs[k].cpu() for k in ('center_maps', 'params', 'prior')}, decode_config)
        peaks = peak_positions(batch['center_maps']).cpu()
        used = set()
        for b in range(valid.shape[0]):
            for s in range(2):
                rows = [i for i in range(len(dets)) if int(dets.batch_index[i]) == b and int(dets.side[i]) == s]
                if valid[b, s]:
                    hit = [i for i in rows if math.hypot(int(dets.y[i]) - int(peaks[b, s, 0]),
                                                         int(dets.x[i]) - int(peaks[b, s, 1])) <= match_radius]
                    tp, fn = (tp + 1, fn) if hit else (tp, fn + 1)
                    used.update(hit[:1])
        fp += len(dets) - len(used)
    if was_training:
        model.train()
    summary = metrics.summarize(per_hand)
    result = {k: summary.get(k, float('nan')) for k in ('mpjpe_mm', 'pa_mpjpe_mm', 'mpvpe_mm', 'pj2d_px')}
    result['val_loss'] = float(np.mean(losses)) if losses else float('nan')
    result['recall'] = tp / (tp + fn) if tp + fn else float('nan')
    result['precision'] = tp / (tp + fp) if tp + fp else float('nan')
    result['num_hands'] = len(per_hand)
    return {k: result[k] for k in METRIC_KEYS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Evaluate ACR weights on a held-out synthetic split.')
    parser.add_argument('--weights', required=True, help='model .safetensors (from save_acr / hand_recon_train)')
    parser.add_argument('--num', type=int, default=64, help='number of samples')
    parser.add_argument('--seed', type=int, default=100000, help='synthetic split seed (held out from training)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threshold', type=float, default=DecodeConfig().threshold)
    args = parser.parse_args(argv)

    from torch.utils.data import DataLoader

    from hand_recon_ros.acr.weights import load_acr
    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.pipeline import resolve_device

    from .synth import SynthConfig, SynthDataset

    device = resolve_device(args.device)
    model = load_acr(args.weights).to(device)
    data = SynthDataset(SynthConfig(image_size=model.config.input_size), seed=args.seed, length=args.num,
                        normalization=model.normalization)
    loader = DataLoader(data, batch_size=args.batch_size)
    result = evaluate(model, loader, load_hand_model(device=device), device,
                      DecodeConfig(threshold=args.threshold))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
