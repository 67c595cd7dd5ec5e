"""The evaluation loop of ``epoch_metrics.evaluate`` (the trainer's per-epoch metrics) and
``report.evaluate_split`` (the full report): the network over batches of synthetic items, each hand read
at its ground-truth centre (parameters as the decoder reads them, with the prior gate) and turned into a mesh,
and detection scored per image. Each caller computes its own metrics from the yielded batches."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from hand_recon_ros.acr.decoding import DecodeConfig, decode
from hand_recon_ros.acr.params import params_to_mano
from hand_recon_ros.conventions import SIDES

from ..losses import peak_positions, select_hand_params

__all__ = ['EvalBatch', 'eval_batches', 'detections_per_image']


@dataclass
class EvalBatch:
    batch: dict  # the items' tensors, on the device
    outputs: dict  # network outputs (float32)
    fused: torch.Tensor  # (B, 2, P) parameters read at the ground-truth centres, CPU
    valid: np.ndarray  # (B, 2) bool: ground-truth hand present
    meshes: dict  # (b, s) -> (joints (21, 3), vertices (V, 3)) float64, model frame
    detections: list  # per image (true positives, false negatives, false positives)

    @property
    def size(self) -> int:
        return int(self.batch['image'].shape[-1])


def detections_per_image(
    outputs: dict, center_maps: torch.Tensor, valid: torch.Tensor, decode_config: DecodeConfig, match_radius: float
) -> list[tuple[int, int, int]]:
    """(tp, fn, fp) per image: a ground-truth hand is found when a detection of its side lies within
    ``match_radius`` map pixels of its centre-map peak; unmatched detections are false positives."""
    dets = decode({k: outputs[k].cpu() for k in ('center_maps', 'params', 'prior')}, decode_config)
    peaks = peak_positions(center_maps).cpu()
    det_b, det_s = dets.batch_index.tolist(), dets.side.tolist()
    det_y, det_x = dets.y.tolist(), dets.x.tolist()
    counts = []
    for b in range(valid.shape[0]):
        tp = fn = 0
        used = set()
        mine = [i for i in range(len(det_b)) if int(det_b[i]) == b]
        for s in range(2):
            if not valid[b, s]:
                continue
            hit = [
                i
                for i in mine
                if int(det_s[i]) == s
                and math.hypot(int(det_y[i]) - int(peaks[b, s, 0]), int(det_x[i]) - int(peaks[b, s, 1])) <= match_radius
            ]
            tp, fn = (tp + 1, fn) if hit else (tp, fn + 1)
            used.update(hit[:1])
        counts.append((tp, fn, len(mine) - len(used)))
    return counts


@torch.no_grad()
def _meshes(fused: torch.Tensor, valid: np.ndarray, hand_model, device) -> dict:
    meshes = {}
    for s, side in enumerate(SIDES):  # one hand-model call per side and batch
        rows = np.nonzero(valid[:, s])[0].tolist()
        if not rows:
            continue
        mano = params_to_mano(fused[rows, s])
        out = hand_model(side, mano['global_orient'].to(device), mano['hand_pose'].to(device), mano['betas'].to(device))
        joints, verts = (out[k].double().cpu().numpy() for k in ('joints', 'vertices'))
        for k, b in enumerate(rows):
            meshes[b, s] = (joints[k], verts[k])
    return meshes


def eval_batches(
    model: torch.nn.Module,
    batches: Iterable[dict],
    hand_model,
    device=None,
    decode_config: DecodeConfig | None = None,
    match_radius: float = 2.0,
) -> Iterator[EvalBatch]:
    """The network in eval mode (its mode restored at the end) over ``batches`` (dicts of stacked item tensors
    with at least image, center_maps, valid; other entries, e.g. scene labels, pass through)."""
    device = device or next(model.parameters()).device
    decode_config = decode_config or DecodeConfig()
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with torch.no_grad():
                outputs = {k: v.float() for k, v in model(batch['image']).items()}
                valid = batch['valid'].bool()
                fused, _ = select_hand_params(outputs, batch['center_maps'], valid, decode_config)
            fused, valid_np = fused.cpu(), valid.cpu().numpy()
            yield EvalBatch(
                batch=batch,
                outputs=outputs,
                fused=fused,
                valid=valid_np,
                meshes=_meshes(fused, valid_np, hand_model, device),
                detections=detections_per_image(
                    outputs, batch['center_maps'], valid.cpu(), decode_config, match_radius
                ),
            )
    finally:
        if was_training:
            model.train()
