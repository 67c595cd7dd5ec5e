"""Evaluation on a held-out synthetic split: hand accuracy (hand_recon_ros.metrics) and detection.

Hand accuracy is measured at the ground-truth hands (parameters read like the decoder would, with the
prior gate) so it does not mix with detection; detection is scored separately from ``decode``:
a ground-truth hand counts as found when a detection of its side lies within ``match_radius`` map pixels
of its centre-map peak.

``python -m hand_recon_train.evaluate --weights out/train/x/model.safetensors --num 64 --seed 100000 [--out DIR]``
prints (or with ``--out`` writes as JSON + Markdown + PNG) the full report of ``eval_report.evaluate_split``:
MPJPE/MPVPE/PA-* per protocol and subset, I-MPJPE/MRRPE/AVE-P/MAX-P on two-hand images, detection, per scene.

Real-image check (InterHand2.6M annotation files + images, e.g. the mmpose test frames):
``python -m hand_recon_train.evaluate --interhand ../shared/realimgs/interhand26m_mmpose [--weights W] [--out DIR]``
runs the ROS-free pipeline with each frame's real intrinsics and reports per frame the detected sides,
wrist-relative MPJPE, wrist (root) error, 2D error and MRRPE against the 3D ground truth.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys

import numpy as np
import torch

from hand_recon_ros import metrics
from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.conventions import ROOT_MIDDLE_MCP, SIDES
from hand_recon_ros.geometry.camera import weak_perspective_project

from .eval_loop import eval_batches
from .eval_report import place_hand
from .losses import ACRLoss

__all__ = ['evaluate', 'projection_error_px', 'evaluate_interhand', 'interhand_markdown', 'main', 'METRIC_KEYS']

METRIC_KEYS = ('val_loss', 'mpjpe_mm', 'pa_mpjpe_mm', 'mpvpe_mm', 'pj2d_px', 'root_error_mm', 'depth_ratio', 'recall',
               'precision', 'num_hands')


@torch.no_grad()
def evaluate(model, loader, hand_model, device=None, decode_config: DecodeConfig | None = None,
             loss_fn: ACRLoss | None = None, match_radius: float = 2.0, max_batches: int | None = None) -> dict:
    """Mean metrics over the loader (keys ``METRIC_KEYS``; NaN when no hand was present). ``depth_ratio``:
    median placed / true hand depth (above 1: hands placed too far; the weak camera's scale decides it)."""
    per_hand, losses, depth_ratios = [], [], []
    tp = fn = fp = 0
    batches = loader if max_batches is None else itertools.islice(loader, max_batches)
    for step in eval_batches(model, batches, hand_model, device, decode_config, match_radius):
        batch, fused = step.batch, step.fused
        if loss_fn is not None:
            losses.append(loss_fn(step.outputs, batch, epoch=10 ** 9)[1]['total'])    # no segmentation term
        for (b, s), (pj, pv) in sorted(step.meshes.items()):
            gj, gv = batch['joints_3d'][b, s].double().cpu().numpy(), batch['vertices'][b, s].double().cpu().numpy()
            # placed in the camera frame as the pipeline does: the depth comes from the weak camera's scale
            placed = place_hand(pj, pv, fused[b, s, :3].tolist(), batch['K'][b].double().cpu().numpy(), step.size)
            root_error = depth_ratio = None
            if placed is not None:
                root_error = float(np.linalg.norm(placed[0][ROOT_MIDDLE_MCP] - gj[ROOT_MIDDLE_MCP]) * 1e3)
                depth_ratio = float(placed[0][ROOT_MIDDLE_MCP, 2] / gj[ROOT_MIDDLE_MCP, 2])
                depth_ratios.append(depth_ratio)
            per_hand.append({
                'root_error_mm': root_error,
                'mpjpe_mm': metrics.mpjpe(pj, gj, root=ROOT_MIDDLE_MCP),
                'pa_mpjpe_mm': metrics.pa_mpjpe(pj, gj),
                'mpvpe_mm': metrics.mpvpe(pv, gv, pj, gj, root=ROOT_MIDDLE_MCP),
                'pj2d_px': projection_error_px(pj, fused[b, s, :3].numpy(), batch['joints_2d'][b, s].cpu().numpy(),
                                               batch['joints_vis'][b, s].cpu().numpy(), step.size),
            })
        for image_tp, image_fn, image_fp in step.detections:
            tp, fn, fp = tp + image_tp, fn + image_fn, fp + image_fp
    summary = metrics.summarize(per_hand)
    result = {k: summary.get(k, float('nan')) for k in ('mpjpe_mm', 'pa_mpjpe_mm', 'mpvpe_mm', 'pj2d_px', 'root_error_mm')}
    result['depth_ratio'] = float(np.median(depth_ratios)) if depth_ratios else float('nan')     # 1 = unbiased
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


UNTRAINED_NOTE = ('UNTRAINED network (seeded random initialisation): these numbers only show that the data path '
                  'works; they say nothing about accuracy.')


def evaluate_interhand(reconstructor, root, split: str = 'test', max_frames: int | None = None) -> dict:
    """Run ``reconstructor`` (a ``hand_recon_ros.pipeline.HandReconstructor``) on InterHand2.6M frames.

    Per frame and ground-truth hand (valid joints only; metres in, mm / px out): ``mpjpe_mm`` wrist-relative
    (IHMR protocol), ``root_error_mm`` = wrist position error in the camera frame, ``error_2d_px`` = mean
    pixel distance of the projected joints; per frame ``mrrpe_mm`` when both hands exist and were detected.
    The best detection of each side is matched to the ground-truth hand of that side.
    """
    from hand_recon_ros.conventions import ROOT_WRIST

    from .datasets import InterHandAnnotations
    from .datasets.common import read_image

    annotations = InterHandAnnotations(root, split)
    info = reconstructor.info()
    untrained = not info['weights_file']
    frames, rows = [], []
    for index, frame in enumerate(annotations):
        if max_frames is not None and index >= max_frames:
            break
        result = reconstructor.reconstruct(read_image(frame.image_path), frame.K)
        best = {}
        for hand in sorted(result.hands, key=lambda h: -h.score):
            best.setdefault(hand.handedness, hand)
        entry = {'image': frame.image_path.name, 'hand_type': frame.hand_type,
                 'gt_sides': [s for s, v in zip(SIDES, frame.hand_valid) if v],
                 'detected_sides': sorted(best), 'scores': {s: float(h.score) for s, h in best.items()},
                 'hands': {}, 'mrrpe_mm': None}
        for s, side in enumerate(SIDES):
            if not frame.hand_valid[s]:
                continue
            gt, valid = frame.joints_cam[s], frame.joints_valid[s]
            row = {'side': side, 'detected': side in best, 'gt_wrist_m': gt[ROOT_WRIST].tolist()}
            if side in best:
                hand = best[side]
                pred = np.asarray(hand.joints_3d, np.float64)
                err2d = np.linalg.norm(np.asarray(hand.keypoints_2d, np.float64) - frame.keypoints_2d[s], axis=-1)
                row.update(mpjpe_mm=float(metrics.mpjpe(pred, gt, root=ROOT_WRIST, valid=valid)),
                           root_error_mm=float(np.linalg.norm(pred[ROOT_WRIST] - gt[ROOT_WRIST]) * 1000.0),
                           error_2d_px=float(err2d[valid].mean()), pred_wrist_m=pred[ROOT_WRIST].tolist())
                rows.append({k: row[k] for k in ('mpjpe_mm', 'root_error_mm', 'error_2d_px')})
            entry['hands'][side] = row
        if all(side in entry['hands'] and entry['hands'][side]['detected'] for side in SIDES):
            h = entry['hands']
            entry['mrrpe_mm'] = float(metrics.mrrpe(h['left']['pred_wrist_m'], h['right']['pred_wrist_m'],
                                                    h['left']['gt_wrist_m'], h['right']['gt_wrist_m']))
        frames.append(entry)
    gt_hands = sum(len(f['hands']) for f in frames)
    summary = metrics.summarize(rows + [{'mrrpe_mm': f['mrrpe_mm']} for f in frames if f['mrrpe_mm'] is not None])
    summary.pop('num_samples', None)
    summary.update(num_frames=len(frames), gt_hands=gt_hands, detected_gt_hands=len(rows),
                   false_sides=sum(len(set(f['detected_sides']) - set(f['gt_sides'])) for f in frames))
    return {'dataset': 'InterHand2.6M', 'root': str(root), 'split': split, 'untrained': untrained,
            'note': UNTRAINED_NOTE if untrained else '',
            'model': {k: info[k] for k in ('network', 'weights_file', 'weights_sha256', 'weights_description',
                                           'hand_model', 'hand_model_is_standin', 'device', 'precision')},
            'threshold': float(reconstructor.detection_threshold), 'frames': frames, 'summary': summary}


def _fmt(value, digits=1):
    return '-' if value is None or (isinstance(value, float) and not math.isfinite(value)) else f'{value:.{digits}f}'


def interhand_markdown(report: dict) -> str:
    """The report as a Markdown page: model line, one row per ground-truth hand, the means."""
    model = report['model']
    lines = ['# Real-image check: InterHand2.6M', '']
    if report['untrained']:
        lines += [f"**{report['note']}**", '']
    lines += [f"Network `{model['network']}`, weights `{model['weights_file'] or 'none (untrained)'}`, hand model "
              f"`{model['hand_model']}`{' (stand-in, not MANO)' if model['hand_model_is_standin'] else ''}, "
              f"detection threshold {report['threshold']:g}. Frames from `{report['root']}` ({report['split']}).",
              '', 'Errors against the dataset 3D ground truth in the camera frame; MPJPE is wrist-relative.', '',
              '| image | GT hands | detected | hand | MPJPE (mm) | root error (mm) | 2D error (px) | MRRPE (mm) |',
              '|---|---|---|---|---|---|---|---|']
    for f in report['frames']:
        for side, h in f['hands'].items():
            lines.append(f"| {f['image']} | {f['hand_type']} | {', '.join(f['detected_sides']) or 'none'} | {side} | "
                         f"{_fmt(h.get('mpjpe_mm'))} | {_fmt(h.get('root_error_mm'))} | "
                         f"{_fmt(h.get('error_2d_px'))} | {_fmt(f['mrrpe_mm'])} |")
    s = report['summary']
    lines += ['', f"Mean over the {s['detected_gt_hands']} detected of {s['gt_hands']} ground-truth hands: MPJPE "
              f"{_fmt(s.get('mpjpe_mm'))} mm, root error {_fmt(s.get('root_error_mm'))} mm, 2D error "
              f"{_fmt(s.get('error_2d_px'))} px; MRRPE {_fmt(s.get('mrrpe_mm'))} mm; "
              f"{s['false_sides']} detected side(s) without a ground-truth hand.", '']
    return '\n'.join(lines)


def _build_reconstructor(args):
    from hand_recon_ros.pipeline import HandReconstructor, PipelineConfig, create_reconstructor
    config = PipelineConfig(weights=args.weights or '', backbone=args.backbone, input_size=args.input_size,
                            mano_dir=args.mano_dir, device=args.device, detection_threshold=args.threshold,
                            refine=not args.no_refine)
    if not args.untrained:
        return create_reconstructor(config)
    # --untrained: never pick up a shipped default model (create_reconstructor would)
    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.runtime import resolve_device
    device = resolve_device(args.device)
    network = _untrained_acr(args.backbone, args.input_size)
    return HandReconstructor(network, load_hand_model(args.mano_dir, device=device), device,
                             detection_threshold=args.threshold, refine=config.refine)


def _main_interhand(args) -> int:
    from pathlib import Path
    if args.weights and args.untrained:
        raise SystemExit('--weights and --untrained exclude each other')
    report = evaluate_interhand(_build_reconstructor(args), args.interhand, args.split, args.num_frames)
    markdown = interhand_markdown(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'interhand_report.json').write_text(json.dumps(report, indent=2))
        (out / 'interhand_report.md').write_text(markdown)
    print(markdown)
    return 0


def _untrained_acr(backbone: str, input_size: int):
    """The seeded random-init network the pipeline falls back to (same seed), for tests of the data path."""
    from hand_recon_ros.acr.factory import BACKBONE_PRESETS, create_model
    from hand_recon_ros.pipeline import PipelineConfig
    if backbone not in BACKBONE_PRESETS:
        raise ValueError(f'--backbone must be one of {", ".join(BACKBONE_PRESETS)}, got {backbone!r}')
    return create_model(backbone, seed=PipelineConfig().seed, input_size=input_size)


def _main_synthetic(args) -> int:
    import dataclasses
    import time
    from pathlib import Path

    from hand_recon_ros.acr.weights import load_acr
    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.runtime import resolve_device

    from .eval_report import evaluate_split, json_ready, report_markdown, write_report
    from .synth import SynthConfig, SynthDataset

    if args.num < 1:
        raise SystemExit(f'--num must be >= 1, got {args.num}')
    device = resolve_device(args.device)
    model = (_untrained_acr(args.backbone, args.input_size) if args.untrained else load_acr(args.weights)).to(device)
    hand_model = load_hand_model(args.mano_dir, device=device)
    config = SynthConfig(image_size=model.config.input_size)
    data = SynthDataset(config, seed=args.seed, length=args.num, normalization=model.normalization)
    decode_config = dataclasses.replace(model.config.decode, threshold=args.threshold)   # as trained, own threshold
    start = time.perf_counter()
    result = evaluate_split(model, data, hand_model, device, decode_config, batch_size=args.batch_size,
                            close_threshold_m=args.close_threshold)
    cfg = model.config
    result['meta'] = {'network': f'acr/{cfg.backbone}@{cfg.input_size}',
                      'weights': args.weights or 'none (untrained)', 'split seed': args.seed, 'samples': args.num,
                      'hand model': hand_model.identity + (' (stand-in, not MANO)' if hand_model.is_standin else ''),
                      'detection threshold': args.threshold,
                      'seconds': round(time.perf_counter() - start, 1)}
    if args.untrained:
        result['meta']['note'] = UNTRAINED_NOTE
    title = f'Synthetic split evaluation: {Path(args.weights).name if args.weights else "untrained network"}'
    if args.out:
        paths = write_report(result, args.out, title)
        print(report_markdown(result, title))
        print('wrote ' + ', '.join(str(p) for p in paths.values()))
    else:    # the tables; the per-image / per-hand rows only go to the --out JSON
        summary = {k: v for k, v in result.items() if k not in ('per_image', 'per_hand')}
        print(json.dumps(json_ready(summary), indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Evaluate ACR weights on a held-out synthetic split (accuracy per '
                                     'protocol and subset, two-hand metrics, detection; --out writes JSON, Markdown '
                                     'and plots), or (--interhand) the whole pipeline on real InterHand2.6M frames.')
    parser.add_argument('--weights', help='model .safetensors (from save_acr / hand_recon_train); the synthetic '
                        'split needs it or --untrained; with --interhand the default is the shipped model')
    parser.add_argument('--num', type=int, default=64, help='number of samples')
    parser.add_argument('--seed', type=int, default=100000, help='synthetic split seed (held out from training)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threshold', type=float, default=DecodeConfig().threshold)
    parser.add_argument('--out', metavar='DIR', help='write the report here: eval_report.{json,md,png} (synthetic) '
                        'or interhand_report.{json,md} (--interhand); synthetic without it: print JSON')
    parser.add_argument('--untrained', action='store_true', help='seeded random-init network (tests, data path)')
    parser.add_argument('--backbone', default='resnet18', help='untrained network backbone')
    parser.add_argument('--input-size', type=int, default=256, help='untrained network input size')
    parser.add_argument('--mano-dir', default=None)
    parser.add_argument('--close-threshold', type=float, default=0.04, metavar='M',
                        help='synthetic "close" subset: mean nearest-joint distance between the hands below this '
                        '(metres)')
    real = parser.add_argument_group('real-image check (InterHand2.6M)')
    real.add_argument('--interhand', metavar='DIR', help='InterHand2.6M folder (official or mmpose file names)')
    real.add_argument('--split', default='test')
    real.add_argument('--num-frames', type=int, default=None, help='evaluate only the first N frames')
    real.add_argument('--no-refine', action='store_true', help='skip the IHMR refinement stage')
    args = parser.parse_args(argv)
    if args.interhand:
        return _main_interhand(args)
    if args.weights and args.untrained:
        parser.error('--weights and --untrained exclude each other')
    if not args.weights and not args.untrained:
        parser.error('--weights (or --untrained) is required (or use --interhand DIR)')
    return _main_synthetic(args)


if __name__ == '__main__':
    sys.exit(main())
