"""Hand-model timings: smplx forward (batch 1/64, no_grad and fwd+bwd), loaders, overlay render.

    python benchmarks/bench_hand_model.py [--threads 1] [--repeats 100]

Prints min / median in ms. Runs well under a minute on a 2-core machine.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

from hand_recon_ros.hand_model import mano_loader
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_ros.hand_model.render import render_mesh_overlay
from hand_recon_ros.tools.timing import time_calls
from tools.standin import generator as standin


def report(name, timing):
    print(f'{name:<46s} min {timing.best_ms:8.3f} ms   median {timing.median_ms:8.3f} ms', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=100)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}')

    report('load_hand_model (stand-in, both sides)', time_calls(lambda: load_hand_model(device=args.device), 10, 1))
    model = load_hand_model(device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith('cuda') else (lambda: None)
    for batch in (1, 64):
        g = torch.Generator().manual_seed(batch)
        inputs = [
            t.to(args.device)
            for t in (
                torch.randn(batch, 3, generator=g) * 0.5,
                torch.randn(batch, 45, generator=g) * 0.3,
                torch.randn(batch, 10, generator=g),
                torch.randn(batch, 3, generator=g) * 0.1,
            )
        ]

        def fwd(inputs=inputs):
            with torch.no_grad():
                model('right', *inputs)
            sync()

        pose = inputs[1].clone().requires_grad_(True)

        def fwd_bwd(inputs=inputs, pose=pose):
            out = model('right', inputs[0], pose, inputs[2], inputs[3])
            out['vertices'].square().sum().backward()
            pose.grad = None
            sync()

        report(f'forward no_grad, batch {batch}', time_calls(fwd, args.repeats, warmup=3))
        report(f'forward+backward, batch {batch}', time_calls(fwd_bwd, max(args.repeats // 2, 5), warmup=3))

    with tempfile.TemporaryDirectory() as tmp:
        os.environ[mano_loader.ENV_CACHE_DIR] = os.path.join(tmp, 'cache')
        pkl = standin.write_chumpy_style_pickle(os.path.join(tmp, 'MANO_RIGHT.pkl'), 'right')
        npz = os.path.join(mano_loader.standin_dirs()[0], 'STANDIN_RIGHT.npz')
        report(
            'load chumpy-style .pkl (restricted unpickler)', time_calls(lambda: mano_loader.load_model_file(pkl), 20, 1)
        )
        mano_loader.load_model_file(pkl, use_cache=True)
        report(
            'load .pkl via user cache (.npz)',
            time_calls(lambda: mano_loader.load_model_file(pkl, use_cache=True), 20, 1),
        )
        report('load stand-in .npz', time_calls(lambda: mano_loader.load_model_file(npz), 20, 1))
    t0 = time.perf_counter()
    standin.build_standin_arrays('right')
    print(f'{"generate stand-in (right)":<46s} {1000 * (time.perf_counter() - t0):8.1f} ms')

    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    verts = []
    for side, x in (('right', -0.09), ('left', 0.09)):
        with torch.no_grad():
            v = model(side, torch.tensor([[np.pi / 2, 0, 0]]), torch.zeros(1, 45), torch.zeros(1, 10))
        v = v['vertices'][0].cpu().numpy()
        verts.append(v - v.mean(0) + np.array([x, 0.0, 0.5]))
    image = np.full((480, 640, 3), 40, np.uint8)
    faces = [model.faces('right'), model.faces('left')]
    report(
        'render_mesh_overlay, two hands, 640x480',
        time_calls(lambda: render_mesh_overlay(image, verts, faces, K, [(80, 170, 255), (255, 170, 80)]), 30, warmup=3),
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
