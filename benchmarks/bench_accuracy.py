"""Speed / accuracy frontier: each trained ACR model's held-out synthetic accuracy per subset next to its cost.

    .venv/bin/python benchmarks/bench_accuracy.py                       # models/acr_default.safetensors
    .venv/bin/python benchmarks/bench_accuracy.py --weights out/ablation/cpu/*/model.safetensors --num 256

Accuracy: ``hand_recon_train.evaluation.report.evaluate_split`` on the held-out synthetic split (seed 100000, never
trained on) rendered at each model's input size: MPJPE / PA-MPJPE (mm, middle-MCP root, at the ground-truth
hands) per subset, detection recall and the root (placement) error. Cost: the ROS-free pipeline
(``HandReconstructor.reconstruct``) on 640x480 frames of that split, refinement off and on, median ms per
frame. Refinement: on 60 frames of close and interacting pairs (seed + 2), how many of the frames with two
hands the refinement (the shipped IHMR-MLP weights, or the untrained refiner when none ship) changed.
Untrained networks are not listed: their accuracy means nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hand_recon_ros.acr.weights import load_acr
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
from hand_recon_ros.tools.timing import time_calls
from hand_recon_train.evaluation.report import evaluate_split
from hand_recon_train.synth import SynthConfig, SynthDataset

REPO = Path(__file__).resolve().parents[1]


def _f(value, digits=1, suffix=''):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    return f'{value:.{digits}f}{suffix}'


def _training_of(weights: Path) -> str:
    """Training samples, from the exported JSON (``extra.training``) or the run folder's manifest."""
    documents = []
    for path in (weights.with_suffix('.json'), weights.parent / 'manifest.json'):
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    for document in documents:
        extra = document.get('extra') or document
        stages = (extra.get('training') or {}).get('stages') or extra.get('stages') or []
        if len(stages) > 1 and all(stage.get('samples') for stage in stages):  # warm-started runs: the chain
            total = sum(int(stage['samples']) for stage in stages)
            return (
                f'{total / 1000:.0f}k samples ({len(stages)} stages: '
                f"{' + '.join(str(stage['steps']) for stage in stages)} steps)"
            )
        steps = (extra.get('training') or {}).get('steps') or extra.get('steps')
        batch = ((extra.get('config') or {}).get('optim') or {}).get('batch_size')
        if steps and batch:
            return f'{int(steps) * int(batch) / 1000:.0f}k samples ({steps} steps)'
    return '?'


class AutocastNetwork(torch.nn.Module):
    """The network under bf16 autocast, outputs back in fp32: what the node runs with ``precision: bf16``
    (the metrics and MANO after it stay fp32)."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, images):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = self.network(images)
        return {k: v.float() for k, v in out.items()}


def time_pipeline(
    weights: Path, frames: list[np.ndarray], K: np.ndarray, refine: bool, repeats: int, precision: str = 'fp32'
) -> float:
    reconstructor = create_reconstructor(
        PipelineConfig(weights=str(weights), device='cpu', refine=refine, allow_untrained=False, precision=precision)
    )
    for frame in frames[:2]:
        reconstructor.reconstruct(frame, K)  # warm-up
    cycle = itertools.cycle(frames)
    return time_calls(lambda: reconstructor.reconstruct(next(cycle), K), repeats).median_ms


def refinement_changes(weights: Path, frames: list[np.ndarray], K: np.ndarray, precision: str = 'fp32'):
    """(two-hand frames, frames where the refinement changed a hand): how often the shipped refiner acts."""
    reconstructor = create_reconstructor(
        PipelineConfig(weights=str(weights), device='cpu', refine=True, allow_untrained=False, precision=precision)
    )
    two_hand = changed = 0
    for frame in frames:
        hands = reconstructor.reconstruct(frame, K).hands
        two_hand += len({h.handedness for h in hands}) == 2
        changed += any(h.refined_factors for h in hands)
    return two_hand, changed


def camera_frames(num: int, seed: int, scene_weights: dict | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """640x480 frames with hands (the synthetic generator at 640 px, cropped to 4:3) and their intrinsics."""
    extra = {'scene_weights': scene_weights} if scene_weights else {}
    data = SynthDataset(SynthConfig(image_size=640, supersample=1, **extra), seed=seed, length=num)
    frames, K = [], None
    for i in range(num):
        raw = data.raw(i)
        frames.append(np.ascontiguousarray(raw['image'][80:560]))
        K = raw['K'].astype(np.float64).copy()
        K[1, 2] -= 80.0
    return frames, K


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--weights', nargs='*', default=None, help='ACR .safetensors files (default: models/acr_*.safetensors)'
    )
    parser.add_argument('--num', type=int, default=128, help='held-out synthetic images per model')
    parser.add_argument('--seed', type=int, default=100000)
    parser.add_argument('--repeats', type=int, default=20, help='timed pipeline frames per setting')
    parser.add_argument(
        '--close-frames',
        type=int,
        default=60,
        help='640x480 frames of close / interacting pairs on which refinement changes are counted',
    )
    parser.add_argument('--quick', action='store_true', help='tiny run (tests): 8 images, 3 timed frames')
    parser.add_argument(
        '--precision',
        nargs='+',
        default=['fp32'],
        choices=['fp32', 'bf16'],
        help="network precision(s) to measure; bf16 = the node's precision: bf16 (autocast)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.num, args.repeats = 8, 3
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    weights = [Path(w) for w in (args.weights or sorted(str(p) for p in (REPO / 'models').glob('acr_*.safetensors')))]
    if not weights:
        print('no trained ACR model found (models/acr_*.safetensors); nothing to measure')
        return 1
    hand_model = load_hand_model()
    frames, K = camera_frames(4 if args.quick else 8, args.seed + 1)
    # close and interacting pairs, where the refinement's gate opens
    close_frames, close_K = camera_frames(
        4 if args.quick else args.close_frames, args.seed + 2, scene_weights={'interacting': 0.4, 'close': 0.6}
    )
    load = os.getloadavg()[0]
    rows = []
    t_start = time.perf_counter()
    for path in weights:
        if not path.is_file():
            print(f'skipping {path}: not a file')
            continue
        model = load_acr(path).eval()
        size = model.config.input_size
        split = SynthDataset(
            SynthConfig(image_size=size), seed=args.seed, length=args.num, normalization=model.normalization
        )
        for precision in args.precision:
            evaluated = AutocastNetwork(model) if precision == 'bf16' else model
            result = evaluate_split(evaluated, split, hand_model, torch.device('cpu'), model.config.decode)
            ms_off = time_pipeline(path, frames, K, refine=False, repeats=args.repeats, precision=precision)
            ms_on = time_pipeline(path, frames, K, refine=True, repeats=args.repeats, precision=precision)
            two_hand, changed = refinement_changes(path, close_frames, close_K, precision)
            rows.append(
                {
                    'weights': str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
                    'network': f'{model.config.backbone}@{size}',
                    'precision': precision,
                    'aggregation': model.config.aggregation,
                    'training': _training_of(path),
                    'subsets': result['subsets'],
                    'ms_off': ms_off,
                    'ms_on': ms_on,
                    'refine_changed': changed,
                    'refine_two_hand': two_hand,
                }
            )
    print(
        f'# Speed / accuracy frontier\n\nMachine: {platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} cores, torch {torch.__version__}, CPU {"/".join(args.precision)}; load average {load:.2f} at start; '
        f'{args.num} held-out synthetic images (seed {args.seed}) per model; pipeline on 640x480 frames, '
        f'median of {args.repeats}; stand-in hand model; took {time.perf_counter() - t_start:.0f} s.\n'
    )
    print(
        '| model | network | precision | aggregation | training | MPJPE all / single / interacting | PA-MPJPE all | '
        'recall | root error | depth placed / true | pipeline ms (FPS), refine off / on | refinement changed / two-hand '
        'frames |'
    )
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        s = r['subsets']
        mp = ' / '.join(_f(s[k]['protocols']['middle_mcp']['mpjpe_mm']) for k in ('all', 'single', 'interacting'))
        print(
            f"| `{r['weights']}` | {r['network']} | {r['precision']} | {r['aggregation']} | {r['training']} | {mp} | "
            f"{_f(s['all']['protocols']['middle_mcp']['pa_mpjpe_mm'])} | {_f(100 * s['all']['recall'], 0, ' %')} | "
            f"{_f(s['all']['root_error_mm'], 0)} | {_f(s['all']['depth_ratio_median'], 2)} | "
            f"{_f(r['ms_off'])} ({_f(1000 / r['ms_off'], 0)}) / "
            f"{_f(r['ms_on'])} ({_f(1000 / r['ms_on'], 0)}) | {r['refine_changed']} / {r['refine_two_hand']} |"
        )
    print(
        '\nMPJPE / PA-MPJPE / root error in mm (middle-MCP root, at the ground-truth hands); depth placed / true: '
        'median ratio of the placed to the true hand depth (1 = unbiased, above 1 = placed too far). Every model here '
        'is a CPU-budget preview trained on the synthetic stand-in domain only: compare rows, not papers.'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
