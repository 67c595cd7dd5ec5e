"""Synthetic-data and training-step throughput on this machine (prints figures; < 60 s by default).

    .venv/bin/python benchmarks/bench_synth.py                 # generation @128/@256, 1 and 2 workers, train step
    .venv/bin/python benchmarks/bench_synth.py --no-train --samples 40

Generation runs in the DataLoader workers during training, so samples/s per core is what bounds a
data-on-the-fly run; the training-step figure (forward + backward + Adam, light network) bounds the rest.
"""

import argparse
import time

import torch
from torch.utils.data import DataLoader


def _generation(size, supersample, samples, hand_model):
    from hand_recon_train.synth import SynthConfig, SynthGenerator

    gen = SynthGenerator(SynthConfig(image_size=size, supersample=supersample), seed=0, hand_model=hand_model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like a DataLoader worker
    for i in range(3):
        gen.sample(10**6 + i)  # warm-up
    t = time.perf_counter()
    for i in range(samples):
        gen.sample(i)
    rate = samples / (time.perf_counter() - t)
    torch.set_num_threads(threads)
    return rate


def _loader(size, workers, samples):
    from hand_recon_train.synth import SynthConfig, SynthDataset

    data = SynthDataset(SynthConfig(image_size=size), seed=0, length=samples + 8 * max(workers, 1))
    loader = DataLoader(data, batch_size=8, num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up + hand model load not counted
    t = time.perf_counter()
    n = 0
    for batch in it:
        n += batch['image'].shape[0]
    return n / (time.perf_counter() - t)


def _train_step(size, batch_size, steps, hand_model):
    from hand_recon_ros.acr.network import build_acr
    from hand_recon_train.losses import ACRLoss
    from hand_recon_train.synth import SynthConfig, SynthDataset

    torch.manual_seed(0)
    net = build_acr('acr_light', input_size=size)
    data = SynthDataset(SynthConfig(image_size=size), seed=0, length=batch_size, normalization=net.normalization)
    batch = next(iter(DataLoader(data, batch_size=batch_size)))
    loss = ACRLoss(hand_model)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        total, _ = loss(net(batch['image']), batch, epoch=0)
        opt.zero_grad()
        total.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    median = sorted(times[1:])[len(times[1:]) // 2]
    return median, batch_size / median


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=60, help='samples per generation measurement')
    parser.add_argument('--no-train', action='store_true', help='skip the training-step measurement')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from hand_recon_ros.hand_model.model import load_hand_model

    hand_model = load_hand_model()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    for size, ss in ((128, 1), (256, 1), (256, 2), (512, 2)):
        rate = _generation(size, ss, args.samples, hand_model)
        print(f'generation  S={size:3d} supersample={ss}: {rate:6.1f} samples/s  ({1e3 / rate:5.1f} ms/sample, 1 core)')
    for workers in (0, 2):
        rate = _loader(256, workers, args.samples)
        print(f'DataLoader  S=256 supersample=2, {workers} workers: {rate:6.1f} samples/s (incl. tensor conversion)')
    if not args.no_train:
        for size, bs in ((128, 8), (256, 8)):
            seconds, rate = _train_step(size, bs, 4, hand_model)
            print(
                f'train step  acr_light@{size} batch {bs}: {seconds * 1e3:7.0f} ms/step, {rate:5.1f} samples/s '
                '(forward + losses + backward + Adam, CPU)'
            )


if __name__ == '__main__':
    main()
