"""Training throughput on this machine: samples per second per config, and where the time goes.

    .venv/bin/python benchmarks/bench_train.py                              # real_cpu config (teacher + synthetic)
    .venv/bin/python benchmarks/bench_train.py --configs default_cpu real_cpu --steps 6

For each config: the data side (one sample at a time in this process, per source: synthetic render, teacher-labelled
photo, each with the config's augmentation), the compute side (forward + loss + backward + Adam step on a fixed batch,
fp32 and bf16 autocast, contiguous and channels_last), and the end-to-end rate of the trainer's own loop
(``train.max_steps``), which overlaps data (loader workers) with compute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hand_recon_ros.acr.network import build_acr
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_train.augment import AugmentConfig, AugmentedDataset
from hand_recon_train.datasets.mixed import build_real_dataset, harmonize, parse_real_sources
from hand_recon_train.losses import ACRLoss, LossConfig
from hand_recon_train.synth import SynthConfig, SynthDataset
from hand_recon_train.train import load_config, train


def _time_samples(dataset, n):
    t = []
    for i in range(n):
        t0 = time.perf_counter()
        dataset[i]
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def _collate(samples):
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', nargs='+', default=['real_cpu'])
    p.add_argument('--samples', type=int, default=16, help='samples timed per data source')
    p.add_argument('--steps', type=int, default=4, help='timed optimiser steps per compute variant')
    p.add_argument('--loop-steps', type=int, default=6, help='steps of the real training loop (0: skip)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument(
        '--clock',
        choices=('wall', 'cpu'),
        default='wall',
        help='compute steps in wall time or process CPU time (load-robust at --threads 1 on a shared '
        'machine; the trainer-loop column is always wall time)',
    )
    args = p.parse_args(argv)
    clock = time.process_time if args.clock == 'cpu' else time.perf_counter
    torch.set_num_threads(args.threads)
    print(
        '| config | input | batch | data ms/sample (source) | compute variant | ms/step | samples/s compute | '
        'samples/s trainer loop |'
    )
    print('|---|---|---|---|---|---|---|---|')
    for name in args.configs:
        cfg = load_config(name)
        m, d, o = cfg.model, cfg.data, cfg.optim
        torch.manual_seed(0)
        model = build_acr(m.preset, input_size=m.input_size)
        S, B = model.config.input_size, o.batch_size
        synth = SynthDataset(
            SynthConfig.from_dict({**d.synth, 'image_size': S}),
            seed=0,
            length=10_000,
            normalization=model.normalization,
        )
        aug = AugmentConfig.from_dict(d.augment)
        sources = [('synthetic', synth)]
        for src in parse_real_sources(d.real):
            try:
                sources.append((src['type'], build_real_dataset(src, S, model.normalization)))
            except (OSError, ValueError) as exc:
                print(f'<!-- {src["type"]} skipped: {exc} -->')
        data_cols = []
        batch_samples = []
        for sname, ds in sources:
            if aug.enabled:
                ds = AugmentedDataset(ds, aug, seed=0, normalization=model.normalization)
            data_cols.append(f'{1000 * _time_samples(ds, args.samples):.1f} ({sname})')
            batch_samples += [harmonize(ds[i], 0, 778) for i in range(B // len(sources) + 1)]
        batch = _collate(batch_samples[:B])
        hand_model = load_hand_model()
        loss_fn = ACRLoss(hand_model, LossConfig.from_dict(cfg.loss))
        loop_rate = '-'
        if args.loop_steps:
            with tempfile.TemporaryDirectory() as tmp:
                run = load_config(
                    name,
                    [
                        f'train.max_steps={args.loop_steps + 2}',
                        f'train.out_dir={tmp}',
                        f'data.val_size={B}',
                        'train.init_weights=null',
                        'train.log_every=1',
                    ],
                )
                train(run)
                import csv

                rows = list(csv.DictReader(open(Path(tmp) / 'train_log.csv')))
                # rate over the steps after the first two (loader start-up)
                t0, t1 = float(rows[1]['seconds']), float(rows[-1]['seconds'])
                loop_rate = f'{(len(rows) - 2) * B / max(t1 - t0, 1e-9):.1f}'
        for amp in (None, 'bf16'):
            for cl in (False, True):
                net = (
                    model.to(memory_format=torch.channels_last)
                    if cl
                    else model.to(memory_format=torch.contiguous_format)
                )
                opt = torch.optim.Adam(net.parameters(), lr=1e-5)
                image = batch['image'].contiguous(memory_format=torch.channels_last) if cl else batch['image']
                times = []
                for i in range(args.steps + 1):
                    t0 = clock()
                    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp == 'bf16'):
                        out = net(image)
                    out = {k: v.float() for k, v in out.items()}
                    total, _ = loss_fn(out, batch, 99)
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    opt.step()
                    if i:
                        times.append(clock() - t0)
                ms = 1000 * statistics.median(times)
                variant = f"{amp or 'fp32'}{' channels_last' if cl else ''}"
                print(
                    f"| {name} | {S} | {B} | {'; '.join(data_cols)} | {variant} | {ms:.0f} | {1000 * B / ms:.1f} | "
                    f"{loop_rate if (amp == cfg.train.amp and not cl) else ''} |"
                )
    print(
        '\nThe trainer loop column is the configured variant (train.amp, contiguous), data loaded by '
        'data.num_workers workers beside the compute.'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
