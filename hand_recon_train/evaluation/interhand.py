"""Real-image check on InterHand2.6M frames: the whole ROS-free pipeline with each frame's real intrinsics,
per frame the detected sides, wrist-relative MPJPE, wrist (root) error, 2D error and MRRPE against the 3D
ground truth (``hand_type`` is the dataset's own per-frame annotation: left, right or interacting).
"""

from __future__ import annotations

import math

import numpy as np

from hand_recon_ros import metrics
from hand_recon_ros.conventions import SIDES

__all__ = ['evaluate_interhand', 'interhand_markdown', 'UNTRAINED_NOTE']

UNTRAINED_NOTE = (
    'UNTRAINED network (seeded random initialisation): these numbers only show that the data path '
    'works; they say nothing about accuracy.'
)


def evaluate_interhand(reconstructor, root, split: str = 'test', max_frames: int | None = None) -> dict:
    """Run ``reconstructor`` (a ``hand_recon_ros.pipeline.HandReconstructor``) on InterHand2.6M frames.

    Per frame and ground-truth hand (valid joints only; metres in, mm / px out): ``mpjpe_mm`` wrist-relative
    (IHMR protocol), ``root_error_mm`` = wrist position error in the camera frame, ``error_2d_px`` = mean
    pixel distance of the projected joints; per frame ``mrrpe_mm`` when both hands exist and were detected.
    The best detection of each side is matched to the ground-truth hand of that side.
    """
    from hand_recon_ros.conventions import ROOT_WRIST

    from ..datasets import InterHandAnnotations
    from ..datasets.common import read_image

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
        entry = {
            'image': frame.image_path.name,
            'hand_type': frame.hand_type,
            'gt_sides': [s for s, v in zip(SIDES, frame.hand_valid) if v],
            'detected_sides': sorted(best),
            'scores': {s: float(h.score) for s, h in best.items()},
            'hands': {},
            'mrrpe_mm': None,
        }
        for s, side in enumerate(SIDES):
            if not frame.hand_valid[s]:
                continue
            gt, valid = frame.joints_cam[s], frame.joints_valid[s]
            row = {'side': side, 'detected': side in best, 'gt_wrist_m': gt[ROOT_WRIST].tolist()}
            if side in best:
                hand = best[side]
                pred = np.asarray(hand.joints_3d, np.float64)
                err2d = np.linalg.norm(np.asarray(hand.keypoints_2d, np.float64) - frame.keypoints_2d[s], axis=-1)
                row.update(
                    mpjpe_mm=float(metrics.mpjpe(pred, gt, root=ROOT_WRIST, valid=valid)),
                    root_error_mm=float(np.linalg.norm(pred[ROOT_WRIST] - gt[ROOT_WRIST]) * 1000.0),
                    error_2d_px=float(err2d[valid].mean()),
                    pred_wrist_m=pred[ROOT_WRIST].tolist(),
                )
                rows.append({k: row[k] for k in ('mpjpe_mm', 'root_error_mm', 'error_2d_px')})
            entry['hands'][side] = row
        if all(side in entry['hands'] and entry['hands'][side]['detected'] for side in SIDES):
            h = entry['hands']
            entry['mrrpe_mm'] = float(
                metrics.mrrpe(
                    h['left']['pred_wrist_m'],
                    h['right']['pred_wrist_m'],
                    h['left']['gt_wrist_m'],
                    h['right']['gt_wrist_m'],
                )
            )
        frames.append(entry)
    gt_hands = sum(len(f['hands']) for f in frames)
    summary = metrics.summarize(rows + [{'mrrpe_mm': f['mrrpe_mm']} for f in frames if f['mrrpe_mm'] is not None])
    summary.pop('num_samples', None)
    summary.update(
        num_frames=len(frames),
        gt_hands=gt_hands,
        detected_gt_hands=len(rows),
        false_sides=sum(len(set(f['detected_sides']) - set(f['gt_sides'])) for f in frames),
    )
    return {
        'dataset': 'InterHand2.6M',
        'root': str(root),
        'split': split,
        'untrained': untrained,
        'note': UNTRAINED_NOTE if untrained else '',
        'model': {
            k: info[k]
            for k in (
                'network',
                'weights_file',
                'weights_sha256',
                'weights_description',
                'hand_model',
                'hand_model_is_standin',
                'device',
                'precision',
            )
        },
        'threshold': float(reconstructor.detection_threshold),
        'frames': frames,
        'summary': summary,
    }


def _fmt(value, digits=1):
    return '-' if value is None or (isinstance(value, float) and not math.isfinite(value)) else f'{value:.{digits}f}'


def interhand_markdown(report: dict) -> str:
    """The report as a Markdown page: model line, one row per ground-truth hand, the means."""
    model = report['model']
    lines = ['# Real-image check: InterHand2.6M', '']
    if report['untrained']:
        lines += [f"**{report['note']}**", '']
    lines += [
        f"Network `{model['network']}`, weights `{model['weights_file'] or 'none (untrained)'}`, hand model "
        f"`{model['hand_model']}`{' (stand-in, not MANO)' if model['hand_model_is_standin'] else ''}, "
        f"detection threshold {report['threshold']:g}. Frames from `{report['root']}` ({report['split']}).",
        '',
        'Errors against the dataset 3D ground truth in the camera frame; MPJPE is wrist-relative.',
        '',
        '| image | GT hands | detected | hand | MPJPE (mm) | root error (mm) | 2D error (px) | MRRPE (mm) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for f in report['frames']:
        for side, h in f['hands'].items():
            lines.append(
                f"| {f['image']} | {f['hand_type']} | {', '.join(f['detected_sides']) or 'none'} | {side} | "
                f"{_fmt(h.get('mpjpe_mm'))} | {_fmt(h.get('root_error_mm'))} | "
                f"{_fmt(h.get('error_2d_px'))} | {_fmt(f['mrrpe_mm'])} |"
            )
    s = report['summary']
    lines += [
        '',
        f"Mean over the {s['detected_gt_hands']} detected of {s['gt_hands']} ground-truth hands: MPJPE "
        f"{_fmt(s.get('mpjpe_mm'))} mm, root error {_fmt(s.get('root_error_mm'))} mm, 2D error "
        f"{_fmt(s.get('error_2d_px'))} px; MRRPE {_fmt(s.get('mrrpe_mm'))} mm; "
        f"{s['false_sides']} detected side(s) without a ground-truth hand.",
        '',
    ]
    return '\n'.join(lines)
