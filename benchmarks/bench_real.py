"""Real-image benchmark: ACR models, MediaPipe and MediaPipe + fit side by side on real photos.

    .venv/bin/python benchmarks/bench_real.py                          # shipped model + MediaPipe, both label sets
    .venv/bin/python benchmarks/bench_real.py --weights a.safetensors b.safetensors --fit

Label sets and the matching rule: ``hand_recon_train/evaluation/real_images.py``. ``realval`` needs the teacher labels
(``python -m hand_recon_train.teacher label``); MediaPipe columns need ``.venv-teacher`` (``scripts/setup_teacher.sh``).
Writes ``<out>/real_benchmark.md``, ``.json`` and one contact sheet per set (``sheet_<set>.png``).
``pasted``: held-out overlapping pairs made from validation-split hands (``hand_recon_train/datasets/pasted.py``).
``rotated``: validation frames turned by 90, 180 and 270 degrees with their labels (``real_images.load_rotated``).
3D columns (sets with true 3D: InterHand2.6M, synthetic): wrist-aligned MPJPE, PA-MPJPE, root depth error; under the
table, the hand model's mean pose's PA-MPJPE on the same synthetic hands (what a model that learnt no pose scores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hand_recon_train.evaluation import real_images as rb
from hand_recon_train.teacher.corpus import default_root

REPO = Path(__file__).resolve().parents[1]


# per-model decoding options of the pipeline (hand_recon_ros/detection_defaults.py): flag, what it sets
DECODING_OPTIONS = (
    ('--side-separation', 'map pixels (decoding.DecodeConfig, 0 = off)'),
    ('--center-anchor', 'map pixels (pipeline.anchor_camera, 0 = off)'),
    ('--max-pair-overlap', '2D box IoU (pipeline.drop_overlapping_hands, 1 = off)'),
    # the landmark network on a crop around each found hand (hand_recon_ros/landmarks/crop_stage.py)
    ('--landmarks', "crop passes of the landmark network per hand (0 = off): its 2D keypoints replace ACR's"),
    (
        '--landmark-presence',
        "with --landmarks: drop a hand whose crop's presence is under this unless on a palm (default: the node's)",
    ),
    ('--landmark-sides', "with --landmarks: 1 = a redrawn hand takes its crop's side (the node's, default), 0 = ACR's"),
    (
        '--landmark-palms',
        "with --landmarks: 1 = first crops on MediaPipe's palm detections (the node's, default), 0 = off",
    ),
    ('--landmark-new-hands', 'with --landmark-palms 1: 1 = free palms read as a hand become hands (default), 0 = off'),
)
TAGS = {
    'threshold': '@',
    'side_separation': '/sep',
    'center_anchor': '/anchor',
    'max_pair_overlap': '/iou',
    'landmarks': '/lm',
    'landmark_presence': '/pres',
    'landmark_sides': '/lmside',
    'landmark_palms': '/palms',
    'landmark_new_hands': '/new',
}


def mean_pose_reference(frames) -> str:
    """PA-MPJPE of the hand model's mean pose against the synthetic hands: what a network that learnt no pose
    scores (the issue's 'flat template hand' bar)."""
    import numpy as np
    import torch

    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.metrics import pa_mpjpe

    model = load_hand_model()
    zeros = torch.zeros(1, 3)
    mean_pose = {
        side: model(side, zeros, torch.zeros(1, 45), torch.zeros(1, 10), zeros)['joints'][0].double().numpy()
        for side in ('left', 'right')
    }
    errors = [
        float(pa_mpjpe(mean_pose[h.side], h.joints_cam))
        for f in frames
        for h in f.hands
        if h.joints_cam is not None and h.side in mean_pose
    ]
    return (
        f'Synthetic hands: the mean pose of the hand model scores PA-MPJPE {np.mean(errors):.1f} mm on the same '
        f'{len(errors)} hands (what a model that learnt no pose gets).'
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--weights', nargs='*', default=[''], help="ACR weights ('' = the shipped model)")
    p.add_argument(
        '--sets',
        nargs='+',
        default=['annotated', 'realval', 'rotated', 'pasted', 'synthetic'],
        choices=['annotated', 'realval', 'rotated', 'pasted', 'synthetic'],
    )
    p.add_argument('--pasted', type=int, default=60, help='held-out pasted pairs (validation-split hands)')
    p.add_argument('--synth-per-scene', type=int, default=40)
    p.add_argument('--labels', type=Path, default=REPO / 'out/teacher/realimgs-train.labels.json')
    p.add_argument('--annotated-root', type=Path, default=REPO.parent / 'shared' / 'realimgs')
    p.add_argument('--train-root', type=Path, default=None)
    p.add_argument('--max-realval', type=int, default=None, help='first N validation frames only')
    p.add_argument('--no-mediapipe', action='store_true')
    p.add_argument('--fit', action='store_true', help='add MediaPipe + hand-model fit (3D)')
    p.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument(
        '--threshold',
        type=float,
        nargs='*',
        default=[],
        help='centre-map threshold: one for every --weights, or one per --weights (default: the shipped one)',
    )
    p.add_argument('--min-side-share', type=float, default=None, help='minimum side share (default: the shipped one)')
    for flag, what in DECODING_OPTIONS:
        p.add_argument(
            flag, type=float, nargs='*', default=[], help=f'{what}: one for every --weights, or one per --weights'
        )
    p.add_argument('--out', type=Path, default=REPO / 'out/bench/real')
    args = p.parse_args(argv)
    per_model = {}
    for flag in ['--threshold'] + [flag for flag, _ in DECODING_OPTIONS]:
        values = getattr(args, flag[2:].replace('-', '_'))
        if len(values) not in (0, 1, len(args.weights)):
            p.error(f'{flag} takes one value or one per --weights ({len(args.weights)}), got {len(values)}')
        per_model[flag[2:].replace('-', '_')] = values * len(args.weights) if len(values) == 1 else values

    frames_by_set = {}
    if 'annotated' in args.sets:
        if args.annotated_root.is_dir():
            frames_by_set['annotated'] = rb.load_annotated(args.annotated_root)
        else:
            print(f'annotated photos not found at {args.annotated_root}: skipped')
    if 'realval' in args.sets:
        if args.labels.is_file():
            frames = rb.load_realval(args.labels, args.train_root or default_root())
            frames_by_set['realval'] = frames[: args.max_realval]
        else:
            print(f'no teacher labels at {args.labels} (python -m hand_recon_train.teacher label): realval skipped')
    if 'rotated' in args.sets and args.labels.is_file():
        frames_by_set['rotated'] = rb.load_rotated(args.labels, args.train_root or default_root(), args.out)
    if 'pasted' in args.sets and args.labels.is_file():
        frames_by_set['pasted'] = rb.load_pasted(
            args.labels, args.train_root or default_root(), args.out, count=args.pasted
        )
    if 'synthetic' in args.sets:
        frames_by_set['synthetic'] = rb.load_synthetic(args.out, per_scene=args.synth_per_scene)
    if not frames_by_set:
        print('nothing to benchmark')
        return 1
    all_frames = [f for fs in frames_by_set.values() for f in fs]
    methods = []
    for i, w in enumerate(args.weights):
        name = 'acr (shipped)' if not w else f'acr:{Path(w).parent.name or Path(w).stem}'
        if len(args.weights) > 1 and name in [m.name for m in methods]:
            name += f'#{i}'
        options = {key: values[i] for key, values in per_model.items() if values}
        for key, value in options.items():
            name += f'{TAGS[key]}{value:g}'
        methods.append(
            rb.AcrMethod(w, name=name, precision=args.precision, min_side_share=args.min_side_share, **options)
        )
    if not args.no_mediapipe:
        if rb.teacher_available():
            args.out.mkdir(parents=True, exist_ok=True)
            methods.append(rb.MediaPipeMethod(all_frames, args.out / 'mediapipe.raw.jsonl'))
            if args.fit:
                from hand_recon_ros.hand_model.model import load_hand_model

                methods.append(
                    rb.MediaPipeMethod(
                        all_frames, args.out / 'mediapipe.raw.jsonl', fit=True, hand_model=load_hand_model()
                    )
                )
        else:
            print('MediaPipe column skipped: no teacher environment (scripts/setup_teacher.sh)')
    results = rb.run_benchmark(all_frames, methods)
    table = rb.markdown_table(results, all_frames)
    if 'synthetic' in frames_by_set:
        table += '\n\n' + mean_pose_reference(frames_by_set['synthetic'])
    print('Methods: ' + '; '.join(f"{n} = {r['description']}" for n, r in results.items()))
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'real_benchmark.md').write_text(table + '\n')
    (args.out / 'real_benchmark.json').write_text(
        json.dumps({n: {k: v for k, v in r.items() if k != 'preds'} for n, r in results.items()}, indent=2)
    )
    for set_name, frames in frames_by_set.items():
        pick = frames
        if set_name == 'realval':  # the sheet shows the two-hand frames first, then a spread of the rest
            pick = [f for f in frames if f.two_hand][:8] + [f for f in frames if not f.two_hand][::40][:10]
        elif set_name == 'pasted':
            pick = frames[:16]
        elif set_name == 'rotated':  # per turn: two-hand frames first, then a spread
            pick = []
            for angle in sorted({f.extra['angle'] for f in frames}):
                turned = [f for f in frames if f.extra['angle'] == angle]
                pick += [f for f in turned if f.two_hand][:3] + [f for f in turned if not f.two_hand][::60][:4]
        elif set_name == 'synthetic':
            pick = [f for f in frames if f.set_name != 'synth/separate'][::5] + [
                f for f in frames if f.set_name == 'synth/separate'
            ][:4]
        path = rb.contact_sheet(pick, results, args.out / f'sheet_{set_name}.png')
        print(f'\ncontact sheet: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
