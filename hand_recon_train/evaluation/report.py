"""Evaluation report on a synthetic split: accuracy per protocol and per subset, two-hand metrics, detection.

``evaluate_split`` runs the network over a dataset (``SynthDataset`` items) and returns a dict;
``write_report`` turns it into ``eval_report.json``, ``eval_report.md`` and ``eval_report.png``.

Metric definitions (all in mm; every hand is read at its ground-truth centre, like ``epoch_metrics.evaluate``,
so that accuracy does not mix with detection):

* Per hand, two protocols that differ only in the root joint subtracted from both skeletons (no bone
  rescaling): ``middle_mcp`` (joint 9, the project's / ACR's default, the numbers ``epoch_metrics`` gives) and
  ``wrist`` (joint 0, the IHMR protocol). MPJPE / MPVPE: root-relative joint / vertex error. PA-MPJPE /
  PA-MPVPE: error after a similarity Procrustes fit, which removes any root translation, so they are the
  same under both protocols (repeated in each table for reading convenience).
* Per image with both ground-truth hands, the predicted hands are first placed in the camera frame the way
  the pipeline places them (``geometry.placement.place_hands``: weak-perspective 2D joints -> translation fit
  with the sample's K):
  I-MPJPE = both hands' joints aligned jointly without rotation (IHMR's per-axis alignment; ``i_mpjpe_iso``
  = one isotropic scale + translation); MRRPE = error of the left-to-right root vector, root as in the
  protocol; AVE-P / MAX-P = penetration between the two predicted meshes (IHMR definition as in
  ``train_ihmr.evaluate_refiner``: mean depth over the 2 x V model vertices, zeros included / deepest vertex;
  means over images). ``gt_ave_p`` / ``gt_max_p`` are the same numbers for the ground-truth meshes, the floor
  a perfect prediction would reach. ``root_error`` (per hand): placed middle-MCP position error;
  ``depth_ratio`` (per hand, median per subset): placed / true middle-MCP depth, the sign of a depth bias.
* Detection (``decode`` at the configured threshold): a ground-truth hand is found when a detection of its side
  lies within ``match_radius`` map pixels of its centre-map peak; unmatched detections are false positives.

Subsets are image-level: ``all``; ``single`` = exactly one valid ground-truth hand; ``interacting`` = both
valid; ``close`` = both valid and ``is_close_interaction`` on the ground-truth joints. Images without any hand
count only in ``all`` (they still matter for precision).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch

from hand_recon_ros import metrics
from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.conventions import ROOT_MIDDLE_MCP, ROOT_WRIST, SIDES
from hand_recon_ros.geometry.camera import LetterboxTransform
from hand_recon_ros.geometry.placement import place_hands

from ..datasets.common import interaction_distance, is_close_interaction
from .loop import eval_batches

__all__ = [
    'evaluate_split',
    'summarize_split',
    'write_report',
    'report_markdown',
    'json_ready',
    'hand_errors',
    'pair_errors',
    'place_hand',
    'pair_penetration',
    'PROTOCOLS',
    'SUBSETS',
]

PROTOCOLS = {'middle_mcp': ROOT_MIDDLE_MCP, 'wrist': ROOT_WRIST}
PROTOCOL_TITLES = {
    'middle_mcp': 'root-relative at the middle MCP (project default, ACR)',
    'wrist': 'root-relative at the wrist (IHMR)',
}
SUBSETS = ('all', 'interacting', 'close', 'single')
HAND_KEYS = ('mpjpe_mm', 'mpvpe_mm', 'pa_mpjpe_mm', 'pa_mpvpe_mm')
TWO_HAND_KEYS = ('i_mpjpe_mm', 'i_mpjpe_iso_mm', 'ave_p_mm', 'max_p_mm', 'gt_ave_p_mm', 'gt_max_p_mm')
_TENSOR_KEYS = ('image', 'center_maps', 'valid', 'joints_3d', 'vertices', 'K')


# ---------------------------------------------------------------------------------------------- metric parts
def hand_errors(pred_joints, pred_verts, gt_joints, gt_verts) -> dict:
    """One hand's errors (mm) under every protocol, as flat keys ``<protocol>/<metric>``.

    Inputs (21, 3) joints and (V, 3) vertices in metres, any common frame per side (root-relative metrics).
    """
    pa_j, pa_v = float(metrics.pa_mpjpe(pred_joints, gt_joints)), float(metrics.pa_mpvpe(pred_verts, gt_verts))
    row = {}
    for name, root in PROTOCOLS.items():
        row[f'{name}/mpjpe_mm'] = float(metrics.mpjpe(pred_joints, gt_joints, root=root))
        row[f'{name}/mpvpe_mm'] = float(metrics.mpvpe(pred_verts, gt_verts, pred_joints, gt_joints, root=root))
        row[f'{name}/pa_mpjpe_mm'] = pa_j
        row[f'{name}/pa_mpvpe_mm'] = pa_v
    return row


def place_hand(
    joints: np.ndarray, verts: np.ndarray, cam, K: np.ndarray, image_size: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Model-frame joints/vertices + weak camera -> camera-frame (joints, verts), placed by the pipeline's own
    ``geometry.placement.place_hands`` (camera intrinsics); None when the pipeline would drop it."""
    transform = LetterboxTransform(image_size, image_size, image_size)  # items are already network-sized
    placed = place_hands([joints], [verts], [cam], K, transform)[0]
    return None if placed is None else (placed.joints, placed.vertices)


def pair_penetration(hand_model, verts_left, verts_right) -> dict:
    """AVE-P / MAX-P (mm) of two camera-frame meshes, closed at the wrist, over the model's vertices only."""
    from hand_recon_ros.hand_model.penetration import penetration_metrics

    nv = hand_model.num_vertices
    wl = hand_model.watertight_vertices('left', np.asarray(verts_left, np.float64))
    wr = hand_model.watertight_vertices('right', np.asarray(verts_right, np.float64))
    return penetration_metrics(
        wl, hand_model.watertight_faces('left'), wr, hand_model.watertight_faces('right'), n_query_a=nv, n_query_b=nv
    )


def pair_errors(pred: dict, gt: dict, hand_model, gt_penetration: dict | None = None) -> dict:
    """Two-hand metrics of one image. ``pred`` / ``gt``: {'left': (joints, verts), 'right': ...} in the camera
    frame (metres); a predicted side may be None (not placed), which leaves the predicted metrics NaN.
    ``gt_penetration``: a precomputed ``pair_penetration`` of the GT meshes."""
    gt_pen = gt_penetration or pair_penetration(hand_model, gt['left'][1], gt['right'][1])
    row = {k: float('nan') for k in TWO_HAND_KEYS}
    row.update({f'{p}/mrrpe_mm': float('nan') for p in PROTOCOLS})
    row.update(gt_ave_p_mm=gt_pen['ave_p_mm'], gt_max_p_mm=gt_pen['max_p_mm'], placed=False)
    if pred.get('left') is None or pred.get('right') is None:
        return row
    (pl, vl), (pr, vr) = pred['left'], pred['right']
    gl, gr = gt['left'][0], gt['right'][0]
    pen = pair_penetration(hand_model, vl, vr)
    row.update(
        placed=True,
        ave_p_mm=pen['ave_p_mm'],
        max_p_mm=pen['max_p_mm'],
        i_mpjpe_mm=float(metrics.i_mpjpe(pl, pr, gl, gr, alignment='per_axis')),
        i_mpjpe_iso_mm=float(metrics.i_mpjpe(pl, pr, gl, gr, alignment='isotropic')),
    )
    for name, root in PROTOCOLS.items():
        row[f'{name}/mrrpe_mm'] = float(metrics.mrrpe(pl[root], pr[root], gl[root], gr[root]))
    return row


# ---------------------------------------------------------------------------------------------- the split
def _items_with_scene(dataset):
    """(item, scene) per index. ``SynthDataset.__getitem__`` renders through ``self.raw``: a shallow copy whose
    ``raw`` returns the sample already rendered for its scene label avoids rendering every image twice."""
    from ..synth import SynthDataset

    if not isinstance(dataset, SynthDataset):
        for i in range(len(dataset)):
            yield dataset[i], 'unknown'
        return
    view = copy.copy(dataset)
    for i in range(len(dataset)):
        raw = dataset.raw(i)
        view.raw = lambda _index, _raw=raw: _raw
        yield view[i], str(raw.get('scene', 'unknown'))  # cached samples carry no scene label


def _batches(dataset, batch_size):
    """Stacked item tensors plus ``scene``: the items' scene labels."""
    items, scenes = [], []
    for item, scene in _items_with_scene(dataset):
        missing = [k for k in _TENSOR_KEYS if k not in item]
        if missing:
            raise ValueError(
                f'dataset items need {_TENSOR_KEYS}; missing {missing} (real datasets without '
                'vertices cannot be scored here)'
            )
        items.append(item)
        scenes.append(scene)
        if len(items) == batch_size:
            yield {'scene': scenes, **{k: torch.stack([it[k] for it in items]) for k in _TENSOR_KEYS}}
            items, scenes = [], []
    if items:
        yield {'scene': scenes, **{k: torch.stack([it[k] for it in items]) for k in _TENSOR_KEYS}}


def _subsets_of(image: dict) -> list[str]:
    names = ['all']
    if image['num_gt_hands'] == 1:
        names.append('single')
    elif image['num_gt_hands'] == 2:
        names.append('interacting')
        if image['close']:
            names.append('close')
    return names


def _nan_to_none(value):
    return None if value is None or not math.isfinite(value) else float(value)


def _nanmedian(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float('nan')


def _summarize_group(images: list[dict], hands: list[dict]) -> dict:
    tp, fn, fp = (sum(im[k] for im in images) for k in ('tp', 'fn', 'fp'))
    pairs = [im['pair'] for im in images if im['pair'] is not None]
    hand_mean = metrics.summarize([{k: v for k, v in h.items() if '/' in k or k == 'root_error_mm'} for h in hands])
    pair_mean = metrics.summarize([{k: v for k, v in p.items() if k != 'placed'} for p in pairs])
    group = {
        'num_images': len(images),
        'num_hands': len(hands),
        'num_pairs': len(pairs),
        'num_pairs_placed': sum(bool(p['placed']) for p in pairs),
        'recall': tp / (tp + fn) if tp + fn else float('nan'),
        'precision': tp / (tp + fp) if tp + fp else float('nan'),
        'root_error_mm': hand_mean.get('root_error_mm', float('nan')),
        'depth_ratio_median': _nanmedian([h.get('depth_ratio', float('nan')) for h in hands]),
        'protocols': {},
        'two_hand': {k: pair_mean.get(k, float('nan')) for k in TWO_HAND_KEYS},
    }
    for name in PROTOCOLS:
        row = {k: hand_mean.get(f'{name}/{k}', float('nan')) for k in HAND_KEYS}
        row['mrrpe_mm'] = pair_mean.get(f'{name}/mrrpe_mm', float('nan'))
        group['protocols'][name] = row
    return group


@torch.no_grad()
def evaluate_split(
    model,
    dataset,
    hand_model,
    device=None,
    decode_config: DecodeConfig | None = None,
    batch_size: int = 8,
    close_threshold_m: float = 0.04,
    match_radius: float = 2.0,
) -> dict:
    """Score ``model`` on ``dataset`` (items as ``SynthDataset``'s: K in network pixels, camera-frame GT).

    Returns ``{'subsets': {name: {num_images, num_hands, num_pairs, num_pairs_placed, recall, precision,
    root_error_mm, depth_ratio_median, protocols: {middle_mcp|wrist: {mpjpe_mm, mpvpe_mm, pa_mpjpe_mm, pa_mpvpe_mm, mrrpe_mm}},
    two_hand: {i_mpjpe_mm, i_mpjpe_iso_mm, ave_p_mm, max_p_mm, gt_ave_p_mm, gt_max_p_mm}}}, 'scenes': {scene:
    {num_images, num_hands, mpjpe_mm, pa_mpjpe_mm, recall}}, 'per_image': [...], 'per_hand': [...], ...}``;
    means are NaN where a subset has nothing to average (e.g. two-hand metrics without a two-hand image).
    Definitions: see the module docstring.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
    if not (isinstance(close_threshold_m, (int, float)) and close_threshold_m > 0):
        raise ValueError(f'close_threshold_m must be a positive number of metres, got {close_threshold_m!r}')
    per_image: list[dict] = []
    per_hand: list[dict] = []
    for step in eval_batches(model, _batches(dataset, batch_size), hand_model, device, decode_config, match_radius):
        batch, fused, valid_np, meshes, scenes = step.batch, step.fused, step.valid, step.meshes, step.batch['scene']
        gt_joints = batch['joints_3d'].double().cpu().numpy()
        gt_verts = batch['vertices'].double().cpu().numpy()
        Ks = batch['K'].double().cpu().numpy()
        for b in range(valid_np.shape[0]):
            index = len(per_image)
            tp, fn, fp = step.detections[b]
            image = {
                'index': index,
                'scene': scenes[b],
                'num_gt_hands': int(valid_np[b].sum()),
                'close': False,
                'interaction_distance_mm': None,
                'tp': tp,
                'fn': fn,
                'fp': fp,
                'pair': None,
            }
            placed = {}
            for s, side in enumerate(SIDES):
                if not valid_np[b, s]:
                    continue
                pj, pv = meshes[b, s]
                row = {'index': index, 'side': side, 'scene': scenes[b]}
                row.update(hand_errors(pj, pv, gt_joints[b, s], gt_verts[b, s]))
                placed[side] = place_hand(pj, pv, fused[b, s, :3].tolist(), Ks[b], step.size)
                row['root_error_mm'] = (
                    float('nan')
                    if placed[side] is None
                    else float(
                        np.linalg.norm(placed[side][0][ROOT_MIDDLE_MCP] - gt_joints[b, s, ROOT_MIDDLE_MCP]) * 1e3
                    )
                )
                row['depth_ratio'] = (
                    float('nan')
                    if placed[side] is None
                    else float(placed[side][0][ROOT_MIDDLE_MCP, 2] / gt_joints[b, s, ROOT_MIDDLE_MCP, 2])
                )
                per_hand.append(row)
            if image['num_gt_hands'] == 2:
                gl, gr = gt_joints[b, 0], gt_joints[b, 1]
                image['interaction_distance_mm'] = interaction_distance(gl, gr) * 1e3
                image['close'] = is_close_interaction(gl, gr, threshold=close_threshold_m)
                gt = {side: (gt_joints[b, s], gt_verts[b, s]) for s, side in enumerate(SIDES)}
                image['pair'] = pair_errors(placed, gt, hand_model)
            image['subsets'] = _subsets_of(image)
            per_image.append(image)
    return summarize_split(per_image, per_hand, close_threshold_m)


def summarize_split(per_image: list[dict], per_hand: list[dict], close_threshold_m: float = 0.04) -> dict:
    """Group per-image / per-hand rows (from ``evaluate_split``) into the subset and scene tables."""
    subsets = {}
    for name in SUBSETS:
        images = [im for im in per_image if name in im['subsets']]
        members = {im['index'] for im in images}
        subsets[name] = _summarize_group(images, [h for h in per_hand if h['index'] in members])
    scenes = {}
    for scene in sorted({im['scene'] for im in per_image}):
        images = [im for im in per_image if im['scene'] == scene]
        hands = [h for h in per_hand if h['scene'] == scene]
        group = _summarize_group(images, hands)
        scenes[scene] = {
            'num_images': group['num_images'],
            'num_hands': group['num_hands'],
            'mpjpe_mm': group['protocols']['middle_mcp']['mpjpe_mm'],
            'pa_mpjpe_mm': group['protocols']['middle_mcp']['pa_mpjpe_mm'],
            'recall': group['recall'],
        }
    return {
        'num_images': len(per_image),
        'num_hands': len(per_hand),
        'close_threshold_m': float(close_threshold_m),
        'protocols': {
            name: {'root_joint': root, 'description': PROTOCOL_TITLES[name]} for name, root in PROTOCOLS.items()
        },
        'subsets': subsets,
        'scenes': scenes,
        'per_image': per_image,
        'per_hand': per_hand,
    }


# ---------------------------------------------------------------------------------------------- the report
def json_ready(value):
    """NaN -> null (strict JSON), numpy scalars/arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _nan_to_none(float(value))
    return value


def _fmt(value, digits=1):
    return '-' if value is None or not math.isfinite(value) else f'{value:.{digits}f}'


def _pct(value):
    return '-' if value is None or not math.isfinite(value) else f'{100.0 * value:.1f} %'


def report_markdown(result: dict, title: str = 'Synthetic split evaluation') -> str:
    """The result as Markdown: one table per protocol (a row per subset), two-hand, detection, per scene."""
    meta = result.get('meta', {})
    lines = [f'# {title}', '']
    if meta.get('note'):
        lines += [f"**{meta['note']}**", '']
    if meta:
        described = ', '.join(f'{k} `{v}`' for k, v in meta.items() if k != 'note')
        lines += [f'{described}.', '']
    subsets = result['subsets']
    lines += [
        f"{result['num_images']} images, {result['num_hands']} ground-truth hands. Hand errors are read at "
        "the ground-truth hands (mm). Subsets: `interacting` = both hands present, `close` = both present with "
        f"a mean nearest-joint distance under {1e3 * result['close_threshold_m']:g} mm, `single` = one hand.",
        '',
    ]
    for name, info in result['protocols'].items():
        lines += [
            f"## Protocol: {info['description']}",
            '',
            '| subset | images | hands | MPJPE | MPVPE | PA-MPJPE | PA-MPVPE | MRRPE |',
            '|---|---:|---:|---:|---:|---:|---:|---:|',
        ]
        for subset in SUBSETS:
            g, p = subsets[subset], subsets[subset]['protocols'][name]
            lines.append(
                f"| {subset} | {g['num_images']} | {g['num_hands']} | {_fmt(p['mpjpe_mm'])} | "
                f"{_fmt(p['mpvpe_mm'])} | {_fmt(p['pa_mpjpe_mm'])} | {_fmt(p['pa_mpvpe_mm'])} | "
                f"{_fmt(p['mrrpe_mm'])} |"
            )
        lines.append('')
    lines += [
        '## Two-hand images (both hands placed in the camera frame with the sample K, as the pipeline does)',
        '',
        '| subset | pairs | placed | I-MPJPE | I-MPJPE (iso) | AVE-P | MAX-P | GT AVE-P | GT MAX-P |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for subset in ('all', 'interacting', 'close'):
        g, t = subsets[subset], subsets[subset]['two_hand']
        lines.append(
            f"| {subset} | {g['num_pairs']} | {g['num_pairs_placed']} | {_fmt(t['i_mpjpe_mm'])} | "
            f"{_fmt(t['i_mpjpe_iso_mm'])} | {_fmt(t['ave_p_mm'], 2)} | {_fmt(t['max_p_mm'], 2)} | "
            f"{_fmt(t['gt_ave_p_mm'], 2)} | {_fmt(t['gt_max_p_mm'], 2)} |"
        )
    lines += [
        '',
        '## Detection and placement',
        '',
        '| subset | images | GT hands | recall | precision | root error (mm) | depth placed / true (median) |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    for subset in SUBSETS:
        g = subsets[subset]
        lines.append(
            f"| {subset} | {g['num_images']} | {g['num_hands']} | {_pct(g['recall'])} | "
            f"{_pct(g['precision'])} | {_fmt(g['root_error_mm'])} | {_fmt(g['depth_ratio_median'], 2)} |"
        )
    lines += [
        '',
        '## Per generator scene',
        '',
        '| scene | images | hands | MPJPE | PA-MPJPE | recall |',
        '|---|---:|---:|---:|---:|---:|',
    ]
    for scene, g in result['scenes'].items():
        lines.append(
            f"| {scene} | {g['num_images']} | {g['num_hands']} | {_fmt(g['mpjpe_mm'])} | "
            f"{_fmt(g['pa_mpjpe_mm'])} | {_pct(g['recall'])} |"
        )
    lines += [
        '',
        'Definitions: MPJPE/MPVPE root-relative (no bone rescaling); PA-* after a similarity Procrustes fit '
        '(the same under both protocols); MRRPE = error of the left-to-right root vector; I-MPJPE = both hands '
        'aligned jointly without rotation (IHMR per-axis; iso = one scale + translation); AVE-P/MAX-P = '
        'penetration between the two meshes (mean over all 2 x V vertices / deepest vertex, averaged over '
        'images), GT = the ground-truth meshes; root error = placed middle-MCP position error; depth placed / '
        'true = median ratio of the placed to the true middle-MCP depth (above 1: hands placed too far); recall / '
        'precision: a detection of the same side within 2 map pixels of the ground-truth centre. "-" = '
        'nothing to average.',
        '',
    ]
    return '\n'.join(lines)


def _plot(result: dict, path: Path, title: str):
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    fig = Figure(figsize=(18, 9), layout='constrained')
    axes = fig.subplots(2, 3)
    subsets = result['subsets']
    x = np.arange(len(SUBSETS))
    series = [
        ('MPJPE (middle MCP)', 'middle_mcp', 'mpjpe_mm'),
        ('MPJPE (wrist)', 'wrist', 'mpjpe_mm'),
        ('PA-MPJPE', 'middle_mcp', 'pa_mpjpe_mm'),
        ('MPVPE (middle MCP)', 'middle_mcp', 'mpvpe_mm'),
    ]
    ax = axes[0, 0]
    width = 0.8 / len(series)
    for k, (label, proto, key) in enumerate(series):
        ax.bar(
            x + (k - (len(series) - 1) / 2) * width,
            [subsets[s]['protocols'][proto][key] for s in SUBSETS],
            width,
            label=label,
        )
    ax.set_xticks(x, [f"{s}\n({subsets[s]['num_hands']} hands)" for s in SUBSETS])
    ax.set_ylabel('mm')
    ax.set_title('Per-hand errors by subset')
    ax.margins(y=0.3)  # room for the legend above the bars
    ax.legend(fontsize=8, ncol=2, loc='upper center')

    ax = axes[0, 1]
    values = np.array([h['middle_mcp/mpjpe_mm'] for h in result['per_hand']], np.float64)
    values = values[np.isfinite(values)]
    if len(values):
        ax.hist(values, bins=min(40, max(5, len(values) // 4)), color='tab:blue', alpha=0.6)
        cdf = ax.twinx()
        ordered = np.sort(values)
        cdf.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), color='tab:red')
        cdf.set_ylim(0, 1.02)
        cdf.set_ylabel('fraction of hands (CDF)')
        ax.axvline(
            float(np.median(values)), color='k', linestyle='--', linewidth=1, label=f'median {np.median(values):.1f} mm'
        )
        ax.legend(fontsize=8, loc='center right')
    ax.set_xlabel('per-hand MPJPE, middle-MCP protocol (mm)')
    ax.set_ylabel('hands')
    ax.set_title('Distribution of per-hand MPJPE')

    ax = axes[1, 0]
    scenes = list(result['scenes'])
    xs = np.arange(len(scenes))
    ax.bar(xs - 0.2, [result['scenes'][s]['mpjpe_mm'] for s in scenes], 0.4, label='MPJPE (middle MCP)')
    ax.bar(xs + 0.2, [result['scenes'][s]['pa_mpjpe_mm'] for s in scenes], 0.4, label='PA-MPJPE')
    ax.set_xticks(xs, [f"{s}\n({result['scenes'][s]['num_hands']})" for s in scenes], fontsize=8)
    ax.set_ylabel('mm')
    ax.set_title('Per generator scene (hands)')
    ax.legend(fontsize=8)

    two = ('interacting', 'close')
    panels = [
        (
            axes[1, 1],
            'Two-hand placement errors',
            [
                ('I-MPJPE', lambda g: g['two_hand']['i_mpjpe_mm']),
                ('I-MPJPE iso', lambda g: g['two_hand']['i_mpjpe_iso_mm']),
                ('MRRPE MCP', lambda g: g['protocols']['middle_mcp']['mrrpe_mm']),
                ('MRRPE wrist', lambda g: g['protocols']['wrist']['mrrpe_mm']),
            ],
        ),
        (
            axes[1, 2],
            'Penetration: prediction vs ground truth',
            [
                ('AVE-P', lambda g: g['two_hand']['ave_p_mm']),
                ('GT AVE-P', lambda g: g['two_hand']['gt_ave_p_mm']),
                ('MAX-P', lambda g: g['two_hand']['max_p_mm']),
                ('GT MAX-P', lambda g: g['two_hand']['gt_max_p_mm']),
            ],
        ),
    ]
    for ax, panel_title, columns in panels:
        xm = np.arange(len(columns))
        for k, subset in enumerate(two):
            ax.bar(
                xm + (k - 0.5) * 0.4,
                [f(subsets[subset]) for _, f in columns],
                0.4,
                label=f"{subset} ({subsets[subset]['num_pairs']} images)",
            )
        ax.set_xticks(xm, [m for m, _ in columns], fontsize=8)
        ax.set_ylabel('mm')
        ax.set_title(panel_title)
        ax.legend(fontsize=8)

    ax = axes[0, 2]
    ax.bar(x - 0.2, [100 * subsets[s]['recall'] for s in SUBSETS], 0.4, label='recall')
    ax.bar(x + 0.2, [100 * subsets[s]['precision'] for s in SUBSETS], 0.4, label='precision')
    ax.set_xticks(x, [f"{s}\n({subsets[s]['num_images']} images)" for s in SUBSETS])
    ax.set_ylim(0, 105)
    ax.set_ylabel('%')
    ax.set_title('Detection')
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def write_report(result: dict, out_dir, title: str = 'Synthetic split evaluation') -> dict:
    """Write ``eval_report.json`` (NaN as null), ``eval_report.md`` and ``eval_report.png`` into ``out_dir``;
    returns their paths."""
    for key in ('subsets', 'scenes', 'protocols', 'per_hand'):
        if key not in result:
            raise ValueError(f'result has no {key!r}: pass what evaluate_split returned')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {'json': out / 'eval_report.json', 'markdown': out / 'eval_report.md', 'plot': out / 'eval_report.png'}
    paths['json'].write_text(json.dumps(json_ready(result), indent=1, allow_nan=False))
    paths['markdown'].write_text(report_markdown(result, title))
    _plot(result, paths['plot'], title)
    return paths
