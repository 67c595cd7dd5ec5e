"""Two-process DDP training on the CPU (gloo) through torchrun, as a user would start it."""

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hand_recon_ros.acr.weights import load_acr

TORCHRUN = Path(sys.executable).with_name('torchrun')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file(), reason='torchrun is not installed next to the interpreter')
def test_torchrun_two_cpu_processes_train_three_steps(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [
        str(TORCHRUN),
        '--nproc_per_node',
        '2',
        '--master_addr',
        '127.0.0.1',
        '--master_port',
        str(_free_port()),
        '-m',
        'hand_recon_train.train',
        '--config',
        'tiny_cpu',
        '--out-dir',
        str(tmp_path),
        '--max-steps',
        '3',
        '--set',
        'train.progress=false',
        '--set',
        'train.threads=1',
        '--set',
        'data.train_size=24',
        '--set',
        'data.val_size=4',
        '--set',
        'optim.epochs=1',
    ]
    proc = subprocess.run(
        cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / 'train_log.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['step']) for r in rows] == [1, 2, 3]  # 24 samples / (batch 4 x 2 ranks) = 3 steps
    assert 'world_size": 2' in (tmp_path / 'manifest.json').read_text()
    model = load_acr(tmp_path / 'model.safetensors')
    assert model.config.input_size == 128
