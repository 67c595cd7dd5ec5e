"""Added per-frame latency of the IHMR refinement (MLP with verification, and OPT) on the stand-in hands.

Scenes (two stand-in hands laid palm over palm, 0.5 m from the camera; see test/test_refine_support.py):
  single       one hand: the gate returns at once
  distant      wrists 0.45 m apart (> gate 0.3 m): the gate returns at once
  close_free   hands 5.5 cm apart, no penetration: one MANO pass + one collision check, no stage runs
  close_pair   hands pushed 2.5 cm into each other, UNTRAINED refiner + joint head (what ships today)
  worst_case   same pair, stage MLPs that move every factor 20 % toward the joint head's hand, so all five
               stages pass the joint check and need a collision check (upper bound for trained MLPs)
  joint_head   the joint head's forward pass alone (B = 1)
  shipped_all / shipped_auto   the pushed pair through the shipped trained refiner (models/ihmr_default) and its
               joint head, every stage / the stages its held-out pairs accepted (refinement.stages: auto)
Then IHMR-OPT (default OptConfig: 4 stages x 40 Adam steps) on the pushed pair. With ``--heldout N``: the
shipped refiner on the first N held-out pairs of its own training config (real ACR features of rendered close and
interacting pairs, `ihmr_cpu` validation seed), one pair at a time, every stage against `auto`: ms per pair and
whether the published results differ.
Target (issue 5): MLP refinement < 15 ms per frame for a close pair on this CPU.

    .venv/bin/python benchmarks/bench_refine.py [--runs 30] [--opt-runs 2] [--threads 1] [--weights FILE]
"""

import argparse
import statistics
import time

import numpy as np
import torch

from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_ros.refine.factors import HandParams, TwoHandState, forward_hands
from hand_recon_ros.refine.joint_head import JointHead, joint_template
from hand_recon_ros.refine.optimize import OptConfig, optimize_state
from hand_recon_ros.refine.refiner import build_refiner


def pair(dy, dx=-0.176, left_orient=(0.0, 0.0, 0.0), right_orient=(0.0, 0.0, 0.0), left_pose=None, betas=0.0):
    t = torch.tensor
    right = HandParams(t(right_orient), torch.zeros(45), torch.full((10,), betas), t([0.0, 0.0, 0.5]))
    left = HandParams(
        t(left_orient), torch.zeros(45) if left_pose is None else left_pose, torch.full((10,), betas), t([dx, dy, 0.5])
    )
    return TwoHandState(left=left, right=right)


@torch.no_grad()
def head_from(state, hm):
    m = forward_hands(hm, state.to_vector())
    jl, jr = m['left'][1], m['right'][1]
    return {'joints_3d': torch.stack([jl - jl[:, :1], jr - jr[:, :1]], 1), 'relative_translation': jl[:, 0] - jr[:, 0]}


def stats(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f'median {statistics.median(values):7.2f} ms   p90 {p90:7.2f} ms   min {values[0]:7.2f} ms'


def time_refine(refiner, state, feature, head, runs):
    totals, parts, names = [], {}, ()
    for i in range(runs + 2):
        t = time.perf_counter()
        _, names, timings = refiner.refine(state, feature, head)
        total = (time.perf_counter() - t) * 1e3
        if i >= 2:  # two warm-up calls
            totals.append(total)
            for k, v in timings.items():
                parts.setdefault(k, []).append(v)
    return totals, parts, names


def shipped_rows(args, hm, state, feature):
    """The trained refiner on the pushed pair: all stages, then the stages resolve_stages('auto') keeps."""
    from hand_recon_ros.acr.factory import find_shipped
    from hand_recon_ros.refine.refiner import resolve_stages
    from hand_recon_ros.refine.weights import build_from_weights

    path = args.weights or find_shipped('ihmr_default.safetensors')
    if not path:
        print('shipped_*     no trained refiner found')
        return
    refiner, joint_head, document = build_from_weights(path, hand_model=hm)
    with torch.no_grad():
        head = joint_head(feature)
    rates = (document.get('extra') or {}).get('metrics', {}).get('accept_rate')
    for spec in ('all', 'auto'):
        refiner.set_stages(resolve_stages(spec, rates))
        totals, parts, names = time_refine(refiner, state, feature, head, args.runs)
        detail = '  '.join(f'{k[7:]} {statistics.median(v):.2f}' for k, v in parts.items() if k != 'refine_total')
        print(
            f'{"shipped_" + spec:12s} {stats(totals)}   accepted {names or "-"}   [{detail}]  stages {refiner.stages}'
        )


def heldout_rows(args, hm):
    """Per-pair refinement time on held-out pairs with the real network's features: all stages vs auto."""
    from hand_recon_ros.acr.factory import find_shipped
    from hand_recon_ros.refine.refiner import resolve_stages
    from hand_recon_ros.refine.weights import build_from_weights
    from hand_recon_ros.runtime import sha256_of
    from hand_recon_train import train_ihmr as ti

    path = args.weights or find_shipped('ihmr_default.safetensors')
    refiner, joint_head, document = build_from_weights(path, hand_model=hm)
    acr = (document.get('extra') or {}).get('acr_sha256', '')
    acr_path = find_shipped('acr_default.safetensors')
    config = ti.load_ihmr_config('ihmr_cpu', [f'acr.weights={acr_path}'])
    network = ti.build_acr_for_features(config, torch.device('cpu'))
    split = ti.prepare_split(config, config.data.val_seed, args.heldout, network, hm, torch.device('cpu'))
    head = ti.joint_head_outputs(joint_head, split, False)
    rates = (document.get('extra') or {}).get('metrics', {}).get('accept_rate')
    n = len(split['index'])
    print(f'held-out pairs: {n} (refiner for ACR {acr[:12]}, running ACR {sha256_of(acr_path)[:12]})')
    results = {}
    for spec in ('all', 'auto'):
        refiner.set_stages(resolve_stages(spec, rates))
        times, vecs, accepted, parts = [], [], [], {}
        for _ in range(2):  # the first pass warms up; the second is timed
            times.clear(), vecs.clear(), accepted.clear(), parts.clear()
            for i in range(n):
                sl = slice(i, i + 1)
                t = time.perf_counter()
                vec, acc, timings = refiner.refine_batch(
                    split['init_vec'][sl], split['feature'][sl], {k: v[sl] for k, v in head.items()}
                )
                times.append((time.perf_counter() - t) * 1e3)
                vecs.append(vec), accepted.append(acc)
                for k, v in timings.items():
                    parts.setdefault(k, []).append(v)
        results[spec] = torch.cat(vecs), np.concatenate(accepted)
        print(
            f'heldout_{spec:5s} {stats(times)}   mean {statistics.mean(times):6.2f} ms   '
            f'accepted per stage {results[spec][1].sum(0).tolist()}   stages {refiner.stages}'
        )
        print('             mean ' + '  '.join(f'{k[7:]} {statistics.mean(v):.2f}' for k, v in parts.items()))
    same = torch.equal(results['all'][0], results['auto'][0])
    print(f'auto publishes the same refined hands as all on these pairs: {same}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', type=int, default=30)
    ap.add_argument('--opt-runs', type=int, default=2)
    ap.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (0 = torch default; tiny ops: 1 is fastest on a shared small CPU)',
    )
    ap.add_argument('--heldout', type=int, default=0, help='time the shipped refiner on N held-out pairs (0: skip)')
    ap.add_argument('--weights', default='', help="trained refiner for the shipped_* rows ('' = the shipped one)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hm = load_hand_model()
    refiner = build_refiner(1024, hm)
    joint_head = JointHead(1024, template=joint_template(hm)).eval()
    feature = torch.randn(1, 1024)
    with torch.no_grad():
        untrained_head = joint_head(feature)
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, hand model: {hm.identity}')

    jh = []
    with torch.no_grad():
        for _ in range(args.runs):
            t = time.perf_counter()
            joint_head(feature)
            jh.append((time.perf_counter() - t) * 1e3)
    print(f'{"joint_head":12s} {stats(jh)}')

    pushed = pair(0.025)
    scenes = {
        'single': (TwoHandState(left=pushed.left), untrained_head),
        'distant': (pair(0.025, dx=-0.45), untrained_head),
        'close_free': (pair(0.055), untrained_head),
        'close_pair': (pushed, untrained_head),
    }
    for name, (state, head) in scenes.items():
        totals, parts, names = time_refine(refiner, state, feature, head, args.runs)
        detail = '  '.join(f'{k[7:]} {statistics.median(v):.2f}' for k, v in parts.items() if k != 'refine_total')
        print(f'{name:12s} {stats(totals)}   accepted {names or "-"}   [{detail}]')

    # Worst case: every stage's candidate lowers the joint error, so each stage needs a collision check.
    curl = torch.zeros(45)
    curl[[2, 5, 8, 11]] = 0.2
    truth = pair(0.055, left_orient=(0.0, 0.1, 0.0), right_orient=(0.0, -0.1, 0.0), left_pose=curl, betas=0.3)
    delta = (truth.to_vector() - pushed.to_vector())[0]
    worst = build_refiner(1024, hm)
    cols = {
        'translation': delta[0:3],
        'left_orient': delta[3:6],
        'right_orient': delta[6:9],
        'fingers': delta[9:99],
        'shape': delta[99:119],
    }
    with torch.no_grad():
        for factor, mlp in worst.mlps.items():
            mlp.net[-1].weight.zero_()
            mlp.net[-1].bias.copy_(0.2 * cols[factor])
    totals, parts, names = time_refine(worst, pushed, feature, head_from(truth, hm), args.runs)
    detail = '  '.join(f'{k[7:]} {statistics.median(v):.2f}' for k, v in parts.items() if k != 'refine_total')
    print(f'{"worst_case":12s} {stats(totals)}   accepted {names or "-"}   [{detail}]')

    shipped_rows(args, hm, pushed, feature)
    if args.heldout > 0:
        heldout_rows(args, hm)

    config = OptConfig()
    head = head_from(pair(0.055), hm)
    for i in range(args.opt_runs):
        t = time.perf_counter()
        _, names, info = optimize_state(pushed, head, hm, config)
        total = (time.perf_counter() - t) * 1e3
        stages = '  '.join(f'{k} {v:.0f}' for k, v in info['timings_ms'].items())
        print(
            f'OPT run {i}: {total:8.0f} ms ({len(config.stages)} stages x {config.steps} steps) [{stages}] '
            f'collision {info["collision_start"][0]:.3f} -> {info["collision_end"][0]:.3f} m, joint error '
            f'{1e3 * info["joint_error_start"][0]:.1f} -> {1e3 * info["joint_error_end"][0]:.1f} mm, '
            f'accepted {names}'
        )


if __name__ == '__main__':
    main()
