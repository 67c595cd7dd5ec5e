"""Resumable training checkpoints: model and Adam state as tensors in one safetensors file, the rest (epoch,
step, param groups, config) as JSON metadata. Never pickle, so a checkpoint cannot run code when loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = ['CHECKPOINT_NAME', 'save_checkpoint', 'load_checkpoint', 'read_checkpoint_state']

CHECKPOINT_NAME = 'checkpoint.safetensors'


def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    """Model and Adam state as tensors in one safetensors file; the rest (epoch, step, param groups) as
    JSON metadata. Never pickle, so a checkpoint cannot run code when loaded."""
    tensors = {f'model.{k}': v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, entry in opt['state'].items():
        for key, value in entry.items():
            tensors[f'optim.{index}.{key}'] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {'state': state, 'param_groups': opt['param_groups']}
    tmp = path.with_name(path.name + '.tmp')
    save_file(tensors, str(tmp), metadata={'checkpoint': json.dumps(meta)})
    os.replace(tmp, path)


def _checkpoint_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f'no checkpoint at {path}')
    return path


def _open_checkpoint(path: Path):
    try:
        return safe_open(str(path), framework='pt')
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise ValueError(
            f'{path} is not a readable checkpoint ({error}); resume from an earlier copy or restart'
        ) from error


def _checkpoint_meta(handle, path: Path) -> dict:
    meta = json.loads((handle.metadata() or {}).get('checkpoint', 'null') or 'null')
    if not isinstance(meta, dict):
        raise ValueError(f'{path} is not a hand_recon_train checkpoint (no checkpoint metadata)')
    return meta


def read_checkpoint_state(path: Path) -> dict:
    """The saved ``state`` (epoch, step, config) of a checkpoint, without reading its tensors."""
    path = _checkpoint_file(path)
    with _open_checkpoint(path) as handle:
        return _checkpoint_meta(handle, path)['state']


def load_checkpoint(path: Path, model, optimizer=None) -> dict:
    """Restore model (and optimizer) from :func:`save_checkpoint`; returns the saved ``state`` dict."""
    path = _checkpoint_file(path)
    with _open_checkpoint(path) as handle:
        meta = _checkpoint_meta(handle, path)
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    model_state = {k[len('model.') :]: v for k, v in tensors.items() if k.startswith('model.')}
    from hand_recon_ros.acr.weights import check_state_dict

    check_state_dict(model, model_state, str(path))
    model.load_state_dict(model_state, strict=True)
    if optimizer is not None:
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith('optim.'):
                _, index, name = key.split('.', 2)
                state.setdefault(int(index), {})[name] = value
        groups = meta['param_groups']
        for group in groups:
            if isinstance(group.get('betas'), list):
                group['betas'] = tuple(group['betas'])
        optimizer.load_state_dict({'state': state, 'param_groups': groups})
    return meta['state']
