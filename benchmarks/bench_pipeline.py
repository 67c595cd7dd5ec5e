"""Per-stage latency of the whole ROS-free pipeline (HandReconstructor.reconstruct) per configuration.

Stages: preprocess (letterbox), network (backbone + heads + aggregation; split in bench_acr.py), decode,
MANO + camera (smplx for both hands, 2D/3D joints, metric translation), IHMR-MLP refinement (runs when the
two hands are within the gate; untrained weights here). The detection threshold is set to 0
so both hands always go through MANO even with untrained weights.
``--stages`` adds a finer split of everything but the network, timed piece by piece on the same frame:
letterbox, decode, 6D -> axis-angle, smplx (both hands), metric translation + results, and the node's ROS
conversions (bgr8 Image message -> numpy, FrameResult -> HandArray with meshes, its serialisation; skipped
when rclpy is not importable).
Usage: .venv/bin/python benchmarks/bench_pipeline.py [--iters 15] [--threads 2] [--configs light@256 ...]
       [--no-refine] [--stages]
"""

import argparse
import statistics
import time

import numpy as np
import torch

from hand_recon_ros.acr.factory import SHORT_NAMES, parse_network_spec
from hand_recon_ros.acr.params import params_to_mano
from hand_recon_ros.conventions import SIDES
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
from hand_recon_ros.runtime import single_intra_op_thread
from hand_recon_ros.tools.timing import time_calls


def median_ms(fn, iters):
    return time_calls(fn, iters).median_ms


def stage_breakdown(rec, image, K, iters):
    """Median ms of each non-network piece of one frame, each timed on its own (same inputs as the pipeline)."""
    from hand_recon_ros.acr.decoding import decode
    from hand_recon_ros.acr.preprocess import letterbox

    out = {
        'letterbox': median_ms(
            lambda: letterbox(image, rec.input_size, bgr=True, normalization=rec.normalization, channels_last=True),
            iters,
        )
    }
    with torch.inference_mode():
        outputs = rec.network(
            letterbox(image, rec.input_size, normalization=rec.normalization, channels_last=True)[0].contiguous(
                memory_format=torch.channels_last
            )
        )
        outputs = {k: v.float().cpu() for k, v in outputs.items() if k in ('center_maps', 'params', 'prior')}

        def run_decode():
            with single_intra_op_thread():
                return decode(outputs, rec.decode_config())

        dets = run_decode()
        out['decode'] = median_ms(run_decode, iters)
        order = sorted(range(len(dets)), key=lambda i: -float(dets.score[i]))[: max(1, rec.max_hands)]
        params, sides = dets.params[order].float(), [SIDES[int(dets.side[i])] for i in order]
        scores = [float(dets.score[i]) for i in order]

        def run_rotations():
            with single_intra_op_thread():
                return params_to_mano(params)

        mano = run_rotations()
        out['6D -> axis-angle'] = median_ms(run_rotations, iters)

        def run_smplx():
            with single_intra_op_thread():
                for side in SIDES:
                    sel = torch.tensor([i for i, s in enumerate(sides) if s == side])
                    if len(sel):
                        rec.hand_model(side, mano['global_orient'][sel], mano['hand_pose'][sel], mano['betas'][sel])

        out['smplx (both hands)'] = median_ms(run_smplx, iters)
        whole = median_ms(lambda: rec.hands_from_params(params, sides, scores, image.shape[:2], K), iters)
        out['translation + results'] = max(0.0, whole - out['6D -> axis-angle'] - out['smplx (both hands)'])
    try:
        from rclpy.serialization import serialize_message
        from std_msgs.msg import Header

        from hand_recon_ros.ros import conversions
        from hand_recon_ros.ros.image_conversion import numpy_to_imgmsg, to_bgr8
    except ImportError as exc:
        print(f'(ROS conversions skipped: {exc})')
        return out
    msg = numpy_to_imgmsg(image, 'bgr8')
    frame = rec.reconstruct(image, K)
    header = Header()
    out['ROS: Image -> bgr8'] = median_ms(lambda: to_bgr8(msg), iters)
    out['ROS: HandArray (meshes)'] = median_ms(lambda: conversions.hand_array_msg(frame, header, True), iters)
    hand_array = conversions.hand_array_msg(frame, header, True)
    out['ROS: serialise HandArray'] = median_ms(lambda: serialize_message(hand_array), iters)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--configs',
        nargs='*',
        default=['light@256', 'light@320', 'resnet50@512', 'hrnet_w32@512'],
        help='NAME@SIZE with NAME in ' + ', '.join(SHORT_NAMES),
    )
    parser.add_argument('--iters', type=int, default=15)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='fp32')
    parser.add_argument('--no-refine', action='store_true', help='IHMR-MLP refinement off')
    parser.add_argument('--stages', action='store_true', help='also split the non-network part piece by piece')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    rows, breakdowns = [], []
    for name in args.configs:
        try:
            key, size = parse_network_spec(name)
        except ValueError as exc:
            parser.error(str(exc))
        rec = create_reconstructor(
            PipelineConfig(
                weights='untrained',
                device=args.device,
                precision=args.precision,
                backbone=key,
                input_size=int(size),
                detection_threshold=0.0,
                refine=not args.no_refine,
            )
        )
        for _ in range(3):
            rec.reconstruct(image, K)
        stages, totals, n_hands = {}, [], []
        iters = args.iters if key == 'light' else max(3, args.iters // 3)
        for _ in range(iters):
            t = time.perf_counter()
            frame = rec.reconstruct(image, K)
            totals.append((time.perf_counter() - t) * 1e3)
            n_hands.append(len(frame.hands))
            for k, v in frame.timings_ms.items():
                stages.setdefault(k, []).append(v)
        med = {k: statistics.median(v) for k, v in stages.items()}
        rows.append((name, med, statistics.median(totals), min(totals), statistics.median(n_hands)))
        print(
            f'{name}: '
            + ', '.join(f'{k} {v:.1f}' for k, v in med.items())
            + f' | total {statistics.median(totals):.1f} ms (min {min(totals):.1f})',
            flush=True,
        )
        if args.stages:
            breakdowns.append((name, stage_breakdown(rec, image, K, max(args.iters, 20))))
    print(
        f'\n640x480 frame, batch 1, {args.threads} threads, {args.device} {args.precision}, '
        f'refinement {"off" if args.no_refine else "on"}, torch {torch.__version__}, median ms over the iterations\n'
    )
    print('| config | preprocess | network | decode | MANO + camera | IHMR-MLP refine | total (min) | hands |')
    print('|---|---|---|---|---|---|---|---|')
    for name, med, total, tmin, hands in rows:
        print(
            f"| {name} | {med['preprocess']:.1f} | {med['network']:.1f} | {med['decode']:.1f} | "
            f"{med['mano_and_camera']:.1f} | {med.get('refine', 0.0):.1f} | {total:.1f} ({tmin:.1f}) | {hands:g} |"
        )
    if breakdowns:
        keys = list(breakdowns[0][1])
        print('\nNon-network pieces, each timed alone (median ms):\n')
        print('| config | ' + ' | '.join(keys) + ' |')
        print('|---' * (len(keys) + 1) + '|')
        for name, parts in breakdowns:
            print(f'| {name} | ' + ' | '.join(f'{parts.get(k, float("nan")):.3f}' for k in keys) + ' |')


if __name__ == '__main__':
    main()
