"""Aggregation ablation: train the same budget for ACR's three aggregation variants and tabulate them.

    python -m hand_recon_train.ablation --config ablation_tiny                 # seconds, CPU (data path only)
    python -m hand_recon_train.ablation --config ablation_light [--refiner out/train_ihmr/x/refiner.safetensors]

Variants (``ACRConfig.aggregation``): ``global`` (centre-attended global parameters only: part features zeroed
before the fusion, no cross-hand prior), ``global+part`` (no cross-hand prior) and ``full`` (ACR). Each is
trained by ``hand_recon_train.train`` from the same base config, seed and data order, into
``<out_dir>/<variant>/``, then scored on the base config's held-out synthetic split: MPJPE / PA-MPJPE
(mm, middle-MCP root, at the GT hands) and detection recall. With ``--refiner`` the IHMR-MLP effect (MPJPE,
I-MPJPE, AVE-P, MAX-P before / after refinement) is added, measured on a held-out close-interaction split
with the ACR features the refiner was trained with (its stored training config).

Writes ``<out_dir>/ablation.md`` and ``ablation.json``. A run with fewer than ``min_conclusive_samples``
training samples per variant is marked "budget too small to conclude": its differences are noise.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import yaml

from .config import TrainConfig
from .train import CONFIG_DIR, load_config, train

__all__ = [
    'ABLATION_DEFAULTS',
    'VARIANTS',
    'load_ablation_config',
    'run_ablation',
    'refiner_effect',
    'ablation_markdown',
    'main',
]

VARIANTS = ('global', 'global+part', 'full')
DESCRIPTIONS = {'global': 'global only', 'global+part': 'global + part', 'full': 'global + cross-hand + part (ACR)'}
TOO_SMALL = 'budget too small to conclude'
ABLATION_DEFAULTS = {
    'base': 'tiny_cpu',
    'set': [],
    'variants': list(VARIANTS),
    'out_dir': 'out/ablation/run',
    'min_conclusive_samples': 1_000_000,
    'refiner_val_size': 64,
}


def load_ablation_config(name_or_path, overrides: list[str] | None = None) -> dict:
    """An ablation YAML (by path or name in hand_recon_train/configs): ``base`` = the train config every
    variant starts from, ``set`` = overrides for all variants, ``variants``, ``out_dir``,
    ``min_conclusive_samples``, ``refiner_val_size``. ``overrides`` are added to ``set``."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f'{name_or_path}.yaml'
        if not path.is_file():
            raise FileNotFoundError(f'no ablation config {name_or_path!r} (not a file, not in {CONFIG_DIR})')
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - set(ABLATION_DEFAULTS))
    if not isinstance(data, dict) or unknown:
        raise ValueError(f'{path}: unknown ablation keys {unknown}; known: {sorted(ABLATION_DEFAULTS)}')
    config = {**copy.deepcopy(ABLATION_DEFAULTS), **data}
    config['set'] = list(config['set']) + list(overrides or [])
    bad = [v for v in config['variants'] if v not in VARIANTS]
    if bad or not config['variants']:
        raise ValueError(f'variants must be a non-empty subset of {VARIANTS}, got {config["variants"]}')
    config['config_source'] = str(path)
    return config


def _variant_config(config: dict, variant: str) -> TrainConfig:
    train_config = load_config(config['base'], config['set'])
    train_config.model.overrides = {**(train_config.model.overrides or {}), 'aggregation': variant}
    train_config.train.out_dir = str(Path(config['out_dir']) / variant.replace('+', '_'))
    return train_config


def refiner_effect(refiner_weights, val_size: int = 64) -> dict:
    """IHMR-MLP before/after metrics of a trained refiner (train_ihmr.evaluate_refiner) on a held-out
    close-interaction split, with the frozen ACR, init and data settings the refiner was trained with."""
    import torch

    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.refine.weights import build_from_weights

    from . import train_ihmr

    hand_model = load_hand_model()
    refiner, joint_head, document = build_from_weights(refiner_weights, hand_model)
    stored = (document.get('extra') or {}).get('config')
    if not isinstance(stored, dict):
        raise ValueError(f'{refiner_weights}: no training config stored (not written by train_ihmr)')
    ihmr_config = train_ihmr.as_ihmr_config(stored)
    network = train_ihmr.build_acr_for_features(ihmr_config, torch.device('cpu'))
    split = train_ihmr.prepare_split(
        ihmr_config, ihmr_config.data.val_seed, int(val_size), network, hand_model, torch.device('cpu')
    )
    result = train_ihmr.evaluate_refiner(refiner, joint_head, split, document['config']['joint_head_side_params'])
    result['weights'] = str(refiner_weights)
    return result


def run_ablation(config: dict, refiner_weights=None) -> dict:
    """Train and score every variant; returns the table data (also written as ablation.json / .md)."""
    out_dir = Path(config['out_dir'])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in config['variants']:
        train_config = _variant_config(config, variant)
        t0 = time.perf_counter()
        result = train(train_config)
        steps = len(result['history'])
        samples = steps * train_config.optim.batch_size
        m = result['metrics']
        rows.append(
            {
                'variant': variant,
                'description': DESCRIPTIONS[variant],
                'steps': steps,
                'samples': samples,
                'seconds': round(time.perf_counter() - t0, 1),
                'weights': result['model'],
                **{
                    k: m.get(k, math.nan)
                    for k in ('mpjpe_mm', 'pa_mpjpe_mm', 'mpvpe_mm', 'recall', 'precision', 'num_hands')
                },
            }
        )
    min_samples = min(r['samples'] for r in rows)
    report = {
        'base': config['base'],
        'set': config['set'],
        'rows': rows,
        'min_conclusive_samples': config['min_conclusive_samples'],
        'conclusive': min_samples >= config['min_conclusive_samples'],
        'val': {k: _variant_config(config, 'full')['data'][k] for k in ('val_seed', 'val_size')},
        'refiner': refiner_effect(refiner_weights, config['refiner_val_size']) if refiner_weights else None,
    }
    (out_dir / 'ablation.json').write_text(json.dumps(report, indent=2, default=str) + '\n')
    (out_dir / 'ablation.md').write_text(ablation_markdown(report))
    return report


def _f(value, digits=1):
    return '-' if value is None or (isinstance(value, float) and not math.isfinite(value)) else f'{value:.{digits}f}'


def ablation_markdown(report: dict) -> str:
    lines = ['# ACR aggregation ablation (synthetic benchmark)', '']
    if not report['conclusive']:
        lines += [
            f"**{TOO_SMALL}**: {min(r['samples'] for r in report['rows'])} training samples per variant "
            f"(< {report['min_conclusive_samples']}); the differences below are noise.",
            '',
        ]
    lines += [
        f"Base config `{report['base']}`"
        + (f" with `{' '.join(report['set'])}`" if report['set'] else '')
        + f"; held-out split seed {report['val']['val_seed']}, {report['val']['val_size']} images. "
        'MPJPE / PA-MPJPE at the ground-truth hands (middle-MCP root), recall of the decoder.',
        '',
        '| variant | aggregation | steps | samples | MPJPE (mm) | PA-MPJPE (mm) | recall |',
        '|---|---|---|---|---|---|---|',
    ]
    for r in report['rows']:
        lines.append(
            f"| {r['description']} | `{r['variant']}` | {r['steps']} | {r['samples']} | {_f(r['mpjpe_mm'])} | "
            f"{_f(r['pa_mpjpe_mm'])} | {_f(r['recall'], 3)} |"
        )
    ref = report.get('refiner')
    if ref:
        lines += [
            '',
            f"## IHMR-MLP refinement (`{ref['weights']}`)",
            '',
            f"{ref['num_pairs']} held-out close pairs, {ref['num_colliding_before']} interpenetrating before "
            f"and {ref['num_colliding_after']} after refinement.",
            '',
            '| | MPJPE (mm) | I-MPJPE (mm) | AVE-P (mm) | MAX-P (mm) |',
            '|---|---|---|---|---|',
        ]
        for name in ('before', 'after'):
            m = ref[name]
            lines.append(
                f"| {name} refinement | {_f(m['mpjpe_mm'])} | {_f(m['i_mpjpe_mm'])} | {_f(m['ave_p_mm'], 3)} | "
                f"{_f(m['max_p_mm'], 2)} |"
            )
        rates = ', '.join(f'{k} {100 * v:.0f} %' for k, v in ref['accept_rate'].items())
        lines += ['', f'Accepted stages: {rates}.']
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Train and compare the ACR aggregation variants.')
    parser.add_argument('--config', default='ablation_tiny', help='ablation YAML or a name in hand_recon_train/configs')
    parser.add_argument('--refiner', default=None, help='IHMR-MLP weights (train_ihmr) to add the refinement effect')
    parser.add_argument('--out-dir', default=None)
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='SECTION.KEY=VALUE',
        help='train-config override for every variant (repeatable)',
    )
    args = parser.parse_args(argv)
    config = load_ablation_config(args.config, args.set)
    if args.out_dir:
        config['out_dir'] = args.out_dir
    report = run_ablation(config, args.refiner)
    print(ablation_markdown(report))
    print(f"wrote {Path(config['out_dir']) / 'ablation.md'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
