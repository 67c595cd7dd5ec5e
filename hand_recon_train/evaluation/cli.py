"""The evaluation command line: ``python -m hand_recon_train.evaluation`` (installed as ``hand_recon_eval``).

``python -m hand_recon_train.evaluation --weights out/train/x/model.safetensors --num 64 --seed 100000 [--out DIR]``
prints (or with ``--out`` writes as JSON + Markdown + PNG) the full report of ``report.evaluate_split``:
MPJPE/MPVPE/PA-* per protocol and subset, I-MPJPE/MRRPE/AVE-P/MAX-P on two-hand images, detection, per scene.

Real-image check (InterHand2.6M annotation files + images, e.g. the mmpose test frames):
``python -m hand_recon_train.evaluation --interhand ../shared/realimgs/interhand26m_mmpose [--weights W] [--out DIR]``
runs the ROS-free pipeline with each frame's real intrinsics (interhand.py).
"""

from __future__ import annotations

import argparse
import json

from hand_recon_ros.acr.decoding import DecodeConfig

from .interhand import UNTRAINED_NOTE, evaluate_interhand, interhand_markdown

__all__ = ['main']


def _build_reconstructor(args):
    from hand_recon_ros.pipeline import HandReconstructor, PipelineConfig, create_reconstructor

    config = PipelineConfig(
        weights=args.weights or '',
        backbone=args.backbone,
        input_size=args.input_size,
        mano_dir=args.mano_dir,
        device=args.device,
        detection_threshold=args.threshold,
        refine=not args.no_refine,
    )
    if not args.untrained:
        return create_reconstructor(config)
    # --untrained: never pick up a shipped default model (create_reconstructor would)
    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.runtime import resolve_device

    device = resolve_device(args.device)
    network = _untrained_acr(args.backbone, args.input_size)
    return HandReconstructor(
        network,
        load_hand_model(args.mano_dir, device=device),
        device,
        detection_threshold=args.threshold,
        refine=config.refine,
    )


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

    from ..synth import SynthConfig, SynthDataset
    from .report import evaluate_split, json_ready, report_markdown, write_report

    if args.num < 1:
        raise SystemExit(f'--num must be >= 1, got {args.num}')
    device = resolve_device(args.device)
    model = (_untrained_acr(args.backbone, args.input_size) if args.untrained else load_acr(args.weights)).to(device)
    hand_model = load_hand_model(args.mano_dir, device=device)
    config = SynthConfig(image_size=model.config.input_size)
    data = SynthDataset(config, seed=args.seed, length=args.num, normalization=model.normalization)
    decode_config = dataclasses.replace(model.config.decode, threshold=args.threshold)  # as trained, own threshold
    start = time.perf_counter()
    result = evaluate_split(
        model,
        data,
        hand_model,
        device,
        decode_config,
        batch_size=args.batch_size,
        close_threshold_m=args.close_threshold,
    )
    cfg = model.config
    result['meta'] = {
        'network': f'acr/{cfg.backbone}@{cfg.input_size}',
        'weights': args.weights or 'none (untrained)',
        'split seed': args.seed,
        'samples': args.num,
        'hand model': hand_model.identity + (' (stand-in, not MANO)' if hand_model.is_standin else ''),
        'detection threshold': args.threshold,
        'seconds': round(time.perf_counter() - start, 1),
    }
    if args.untrained:
        result['meta']['note'] = UNTRAINED_NOTE
    title = f'Synthetic split evaluation: {Path(args.weights).name if args.weights else "untrained network"}'
    if args.out:
        paths = write_report(result, args.out, title)
        print(report_markdown(result, title))
        print('wrote ' + ', '.join(str(p) for p in paths.values()))
    else:  # the tables; the per-image / per-hand rows only go to the --out JSON
        summary = {k: v for k, v in result.items() if k not in ('per_image', 'per_hand')}
        print(json.dumps(json_ready(summary), indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Evaluate ACR weights on a held-out synthetic split (accuracy per '
        'protocol and subset, two-hand metrics, detection; --out writes JSON, Markdown '
        'and plots), or (--interhand) the whole pipeline on real InterHand2.6M frames.'
    )
    parser.add_argument(
        '--weights',
        help='model .safetensors (from save_acr / hand_recon_train); the synthetic '
        'split needs it or --untrained; with --interhand the default is the shipped model',
    )
    parser.add_argument('--num', type=int, default=64, help='number of samples')
    parser.add_argument('--seed', type=int, default=100000, help='synthetic split seed (held out from training)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threshold', type=float, default=DecodeConfig().threshold)
    parser.add_argument(
        '--out',
        metavar='DIR',
        help='write the report here: eval_report.{json,md,png} (synthetic) '
        'or interhand_report.{json,md} (--interhand); synthetic without it: print JSON',
    )
    parser.add_argument('--untrained', action='store_true', help='seeded random-init network (tests, data path)')
    parser.add_argument('--backbone', default='resnet18', help='untrained network backbone')
    parser.add_argument('--input-size', type=int, default=256, help='untrained network input size')
    parser.add_argument('--mano-dir', default=None)
    parser.add_argument(
        '--close-threshold',
        type=float,
        default=0.04,
        metavar='M',
        help='synthetic "close" subset: mean nearest-joint distance between the hands below this ' '(metres)',
    )
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
