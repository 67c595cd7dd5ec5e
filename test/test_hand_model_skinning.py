"""The in-house skinning layer gives smplx's outputs on the shipped stand-in hand, and is what the stand-in
uses by default, so that path runs without smplx's (non-commercial) code."""

import os
import subprocess
import sys

import pytest
import torch

from hand_recon_ros.hand_model.model import SKINNING_ENV, load_hand_model, resolve_skinning

from conftest import REPO


@pytest.fixture(scope='module')
def models():
    return {name: load_hand_model(skinning=name) for name in ('smplx', 'builtin')}


def _inputs(batch, seed):
    g = torch.Generator().manual_seed(seed)
    return dict(
        global_orient=torch.randn(batch, 3, generator=g) * 1.5,
        hand_pose=torch.randn(batch, 45, generator=g) * 0.6,
        betas=torch.randn(batch, 10, generator=g) * 1.5,
        transl=torch.randn(batch, 3, generator=g) * 0.3,
    )


@pytest.mark.parametrize('side', ['right', 'left'])
@pytest.mark.parametrize('batch', [1, 33])
def test_builtin_skinning_equals_smplx_on_the_stand_in(models, side, batch):
    assert models['smplx'].skinning == 'smplx' and models['builtin'].skinning == 'builtin'
    inputs = _inputs(batch, seed=batch)
    with torch.no_grad():
        ref = models['smplx'](side, **inputs)
        ours = models['builtin'](side, **inputs)
    for key in ('vertices', 'joints', 'joints16'):
        assert ours[key].shape == ref[key].shape
        # same arithmetic in the same order: equal to the last bit here; 1e-7 m allows another BLAS
        assert (ours[key] - ref[key]).abs().max().item() <= 1e-7, key


def test_flat_hand_mean_and_gradients_match(models):
    flat = {name: load_hand_model(skinning=name, flat_hand_mean=True) for name in ('smplx', 'builtin')}
    inputs = _inputs(4, seed=7)
    with torch.no_grad():
        assert torch.allclose(
            flat['smplx']('left', **inputs)['vertices'], flat['builtin']('left', **inputs)['vertices'], atol=1e-7
        )
    grads = {}
    for name, model in models.items():  # the refinement optimises through the hand model
        pose = inputs['hand_pose'].clone().requires_grad_(True)
        out = model('right', inputs['global_orient'], pose, inputs['betas'], inputs['transl'])
        (out['vertices'].square().sum() + out['joints'].sum()).backward()
        grads[name] = pose.grad
    assert torch.allclose(grads['builtin'], grads['smplx'], rtol=1e-5, atol=1e-6)


def test_skinning_is_selectable(monkeypatch):
    monkeypatch.delenv(SKINNING_ENV, raising=False)
    assert resolve_skinning(None, is_standin=True) == 'builtin'
    assert resolve_skinning(None, is_standin=False) == 'smplx'
    assert resolve_skinning('smplx', is_standin=True) == 'smplx'
    monkeypatch.setenv(SKINNING_ENV, 'smplx')
    assert resolve_skinning(None, is_standin=True) == 'smplx'
    assert load_hand_model().skinning == 'smplx'
    monkeypatch.setenv(SKINNING_ENV, 'mano')
    with pytest.raises(ValueError, match='skinning'):
        resolve_skinning(None, is_standin=True)
    with pytest.raises(ValueError, match='use_pca'):
        load_hand_model(skinning='builtin', use_pca=True, num_pca_comps=12)


def test_the_stand_in_path_never_imports_smplx():
    """A fresh process: the node's pipeline on the stand-in (network + hand model + one frame)."""
    probe = (
        'import sys, numpy as np\n'
        'from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor\n'
        "rec = create_reconstructor(PipelineConfig(weights='untrained', device='cpu', input_size=128))\n"
        'rec.reconstruct(np.zeros((120, 160, 3), np.uint8))\n'
        "print('SMPLX', 'smplx' in sys.modules, rec.hand_model.skinning)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != SKINNING_ENV}
    env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
    out = subprocess.run(
        [sys.executable, '-c', probe], capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'SMPLX False builtin' in out.stdout, out.stdout + out.stderr[-2000:]
