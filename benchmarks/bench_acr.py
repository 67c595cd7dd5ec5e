"""Per-stage CPU latency of the ACR network (random weights, batch 1) and GFLOP per stage.

Stages: preprocess (letterbox of a 640x480 BGR frame), backbone, heads (CoordConv + 8 towers +
segmentation), aggregation (part attention, centre attention, fusion, image feature), decoding
(NMS + sampling + prior). Modes: fp32 eager (contiguous), fp32 eager channels_last, bf16 channels_last
(torch.autocast over the network stages, outputs back to fp32 before decoding, as the node's ``precision: bf16``;
fast where the CPU has bf16 instructions, e.g. AVX512-BF16 or AMX), bf16 traced (the whole network as the node runs
it by default: one frozen TorchScript graph under bf16 autocast, ``acr/traced.py``, ``network.trace``), and with
``--ort`` the whole map network under onnxruntime (same decoding).

    .venv/bin/python benchmarks/bench_acr.py                 # default set, about a minute on 2 cores
    .venv/bin/python benchmarks/bench_acr.py --configs light@256 --iters 30 --ort
    .venv/bin/python benchmarks/bench_acr.py --configs light@192 effnet@192 light@224 effnet@224 light@256 effnet@256 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from hand_recon_ros.acr.decoding import DecodeConfig, decode
from hand_recon_ros.acr.factory import SHORT_NAMES, create_model, parse_network_spec
from hand_recon_ros.acr.preprocess import letterbox
from hand_recon_ros.tools.timing import time_calls

LIGHT = ('light', 'effnet')  # timed with --iters; the big ones with --big-iters
DEFAULT_CONFIGS = ['light@256', 'light@320', 'light@384', 'effnet@224', 'resnet50@512', 'hrnet_w32@512']
STAGES = ('preprocess', 'backbone', 'heads', 'aggregation', 'decoding')
# --clock cpu: process CPU time instead of wall time. On a machine shared with other jobs, CPU time at --threads 1
# stays close to the idle-core latency while wall time swings with the load (not a latency at 2 threads: it sums both).
CLOCK = time.perf_counter
# threshold 0 so decoding always samples one hand per side (untrained centre maps sit at 0.1)
DECODE = DecodeConfig(threshold=0.0)


def _gflop(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def _run_stages(net, frame: np.ndarray, size: int, channels_last: bool, bf16: bool = False) -> dict[str, float]:
    times = {}
    t0 = CLOCK()
    images, _ = letterbox(frame, size, normalization=net.normalization, channels_last=channels_last)
    t1 = CLOCK()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        feats = net.forward_backbone(images)
        t2 = CLOCK()
        maps = net.forward_heads(feats)
        t3 = CLOCK()
        out = net.forward_aggregation(maps)
    if bf16:
        out = {k: v.float() for k, v in out.items()}
    t4 = CLOCK()
    decode(out, DECODE)
    t5 = CLOCK()
    for name, a, b in zip(STAGES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
        times[name] = (b - a) * 1e3
    return times


def sgemm_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """The machine's practical fp32 peak for these threads: the best of a few n x n matrix products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = time_calls(lambda: torch.mm(a, b), repeats, warmup=1).best_s
    return 2.0 * n**3 / best / 1e9


def bench_eager(net, frame, size, iters, channels_last, bf16=False) -> dict[str, float]:
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        _run_stages(net, frame, size, channels_last, bf16)  # warm-up
        runs = [_run_stages(net, frame, size, channels_last, bf16) for _ in range(iters)]
    result = {s: statistics.median(r[s] for r in runs) for s in STAGES}
    result['total'] = statistics.median(sum(r.values()) for r in runs)
    return result


def bench_traced(net, frame, size, iters) -> dict[str, float]:
    from hand_recon_ros.acr.traced import TracedNetwork

    net = net.to(memory_format=torch.channels_last)
    runner = TracedNetwork(net, torch.bfloat16)
    runs = []
    with torch.inference_mode():
        for i in range(iters + 1):  # the first run traces: not timed
            t0 = CLOCK()
            images, _ = letterbox(frame, size, normalization=net.normalization, channels_last=True)
            t1 = CLOCK()
            out = {k: v.float() for k, v in runner(images).items()}
            t2 = CLOCK()
            decode(out, DECODE)
            t3 = CLOCK()
            if i:
                runs.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3))
    if runner.mode != 'traced':
        raise RuntimeError(f'the network did not trace: {runner.fallback_reason}')
    pre, network, dec = (statistics.median(r[i] for r in runs) for i in range(3))
    return {'preprocess': pre, 'network': network, 'decoding': dec, 'total': statistics.median(sum(r) for r in runs)}


def bench_ort(net, frame, size, iters, threads) -> dict[str, float]:
    from hand_recon_ros.acr.onnx_model import OnnxACR, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        result = export_onnx(net, Path(tmp) / 'acr.onnx', input_size=size)
        session = OnnxACR(result.path, num_threads=threads, decode_config=DECODE)
        images, _ = letterbox(frame, size, normalization=net.normalization)
        session.forward_inference(images)
        runs = []
        for _ in range(iters):
            t0 = time.perf_counter()
            images, _ = letterbox(frame, size, normalization=net.normalization)
            t1 = time.perf_counter()
            out = session(images)
            t2 = time.perf_counter()
            decode(out, DECODE)
            t3 = time.perf_counter()
            runs.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3))
    pre, network, dec = (statistics.median(r[i] for r in runs) for i in range(3))
    return {
        'preprocess': pre,
        'network': network,
        'decoding': dec,
        'total': statistics.median(sum(r) for r in runs),
        'exporter': result.exporter,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--configs', nargs='+', default=DEFAULT_CONFIGS, help='NAME@SIZE with NAME in ' + ', '.join(SHORT_NAMES)
    )
    parser.add_argument('--iters', type=int, default=10, help='timed runs for the light configs')
    parser.add_argument('--big-iters', type=int, default=3, help='timed runs for resnet50/hrnet_w32')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--ort', action='store_true', help='also time the exported network under onnxruntime')
    parser.add_argument(
        '--clock',
        choices=('wall', 'cpu'),
        default='wall',
        help='eager stage timings in wall time or process CPU time (load-robust at --threads 1)',
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == 'cpu' else time.perf_counter

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    bf16_native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    print(
        f'torch {torch.__version__}, threads {args.threads}, batch 1, fp32 (and bf16 autocast: native bf16 '
        f'instructions {"present" if bf16_native else "absent, emulated: slow"}), random weights, '
        f'frame 640x480, median ms ({"process CPU" if args.clock == "cpu" else "wall"} time)\n'
    )
    peak = sgemm_gflops(args.threads)
    print(
        f'Practical fp32 peak of this machine at {args.threads} threads: {peak:.0f} GFLOP/s (best 2048x2048 '
        'torch.mm); "GFLOP/s" below = counted network FLOPs (direct convolution) / network time (backbone + '
        'heads + aggregation). Above 100% means the convolution library needs fewer operations than counted '
        '(Winograd-style 3x3 kernels): an effective rate.\n'
    )
    header = (
        '| config | mode | ' + ' | '.join(STAGES) + ' | total ms | GFLOP backbone / heads / aggr. / total | '
        'GFLOP/s (% of peak) |'
    )
    print(header)
    print('|' + '---|' * (header.count('|') - 1))
    for spec in args.configs:
        try:
            name, size = parse_network_spec(spec)
        except ValueError as exc:
            parser.error(str(exc))
        net = create_model(name, input_size=size).eval()
        iters = args.iters if name in LIGHT else args.big_iters
        with torch.inference_mode():
            x = torch.zeros(1, 3, size, size)
            feats = net.forward_backbone(x)
            maps = net.forward_heads(feats)
            # each closure runs inside _gflop, in this iteration: bound by default arguments to say so
            flops = [
                _gflop(lambda net=net, x=x: net.forward_backbone(x)),
                _gflop(lambda net=net, feats=feats: net.forward_heads(feats)),
                _gflop(lambda net=net, maps=maps: net.forward_aggregation(maps)),
            ]
        flop_text = ' / '.join(f'{f:.2f}' for f in flops) + f' / **{sum(flops):.2f}**'
        for mode, channels_last, bf16 in (
            ('eager', False, False),
            ('channels_last', True, False),
            ('bf16 channels_last', True, True),
        ):
            r = bench_eager(net, frame, size, iters, channels_last, bf16)
            cells = ' | '.join(f'{r[s]:.1f}' for s in STAGES)
            rate = sum(flops) / ((r['backbone'] + r['heads'] + r['aggregation']) / 1e3)
            print(
                f'| {spec} | {mode} | {cells} | **{r["total"]:.1f}** | {flop_text} | {rate:.0f} ({100 * rate / peak:.0f}%) |',
                flush=True,
            )
        r = bench_traced(net, frame, size, iters)
        rate = sum(flops) / (r['network'] / 1e3)
        print(
            f'| {spec} | bf16 traced | {r["preprocess"]:.1f} | network {r["network"]:.1f} | (incl.) | (incl.) | '
            f'{r["decoding"]:.1f} | **{r["total"]:.1f}** | {flop_text} | {rate:.0f} ({100 * rate / peak:.0f}%) |',
            flush=True,
        )
        if args.ort:
            net = net.to(memory_format=torch.contiguous_format)
            r = bench_ort(net, frame, size, iters, args.threads)
            rate = sum(flops) / (r['network'] / 1e3)
            print(
                f'| {spec} | ORT ({r["exporter"]}) | {r["preprocess"]:.1f} | network {r["network"]:.1f} | '
                f'(incl.) | (incl.) | {r["decoding"]:.1f} | **{r["total"]:.1f}** | {flop_text} | '
                f'{rate:.0f} ({100 * rate / peak:.0f}%) |',
                flush=True,
            )


if __name__ == '__main__':
    main()
