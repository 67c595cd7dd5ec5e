"""ACR weights as safetensors + a JSON config (never pickle: a weights file must not be able to run code).

``save_acr(model, 'model.safetensors')`` writes ``model.safetensors`` and ``model.json``; the config is
also stored in the safetensors metadata so a lone weights file still loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .network import NUM_PARAMS, ACRConfig, ACRNet

__all__ = ['FORMAT_VERSION', 'check_state_dict', 'load_acr', 'load_acr_config', 'load_state_dict_into', 'save_acr']

FORMAT_VERSION = 1
_METADATA_KEY = 'acr_config'
_MAX_LISTED = 20


def safetensors_metadata(path: str | Path) -> dict:
    """The string metadata of a safetensors file (no tensors read); a clear error for a corrupt file."""
    try:
        with safe_open(str(path), framework='pt') as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f'{path}: not a readable safetensors file ({exc})') from None


def _config_path(weights_path: Path) -> Path:
    return weights_path.with_suffix('.json')


def save_acr(model: ACRNet, path: str | Path, extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``<path>`` (safetensors) and ``<path without suffix>.json``; returns both paths."""
    if not isinstance(model, ACRNet):
        raise TypeError(f'model must be an ACRNet, got {type(model).__name__}')
    path = Path(path)
    if path.suffix != '.safetensors':
        raise ValueError(f'weights path must end in .safetensors, got {path.name!r}')
    document = {
        'format_version': FORMAT_VERSION,
        'architecture': 'acr',
        'config': model.config.to_dict(),
        'num_params_per_hand': NUM_PARAMS,
        'num_parameters': sum(p.numel() for p in model.parameters()),
        'extra': extra or {},
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={_METADATA_KEY: json.dumps(document)})
    config_path = _config_path(path)
    config_path.write_text(json.dumps(document, indent=2, sort_keys=True) + '\n')
    return path, config_path


def _parse_document(text: str, source: str) -> dict:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f'{source}: not valid JSON ({exc})') from None
    if not isinstance(document, dict) or document.get('architecture') != 'acr' or 'config' not in document:
        raise ValueError(f"{source}: not an ACR config (needs architecture='acr' and a 'config' object)")
    if document.get('format_version') != FORMAT_VERSION:
        raise ValueError(
            f'{source}: format_version {document.get("format_version")!r} is not supported '
            f'(expected {FORMAT_VERSION})'
        )
    return document


def load_acr_config(path: str | Path) -> ACRConfig:
    """Config of a saved model: from the JSON next to it, else from the safetensors metadata."""
    path = Path(path)
    config_path = _config_path(path)
    if config_path.is_file():
        document = _parse_document(config_path.read_text(), str(config_path))
    else:
        if not path.is_file():
            raise FileNotFoundError(f'no weights file at {path}')
        metadata = safetensors_metadata(path)
        if _METADATA_KEY not in metadata:
            raise ValueError(f'{path}: no {config_path.name} and no config in the safetensors metadata')
        document = _parse_document(metadata[_METADATA_KEY], f'{path} metadata')
    return ACRConfig.from_dict(document['config'])


def _listing(items: list[str]) -> str:
    shown = ', '.join(items[:_MAX_LISTED])
    return shown + (f' ... (+{len(items) - _MAX_LISTED} more)' if len(items) > _MAX_LISTED else '')


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = 'state dict') -> None:
    """Raise ValueError listing missing keys, unexpected keys and shape mismatches (all at once)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f'{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}'
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing key(s): {_listing(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected key(s): {_listing(unexpected)}')
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatch(es): {_listing(mismatched)}')
    if problems:
        raise ValueError(f'{source} does not match the architecture: ' + '; '.join(problems))


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f'no weights file at {path}')
    try:
        return load_file(str(path), device='cpu')
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ValueError(f'{path}: corrupt or not a safetensors file ({exc})') from None


def load_state_dict_into(model: ACRNet, path: str | Path) -> ACRNet:
    """Load weights into an existing model after checking every key and shape."""
    path = Path(path)
    state = _read_tensors(path)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model


def load_acr(path: str | Path) -> ACRNet:
    """Build the network described by the saved config and load its weights (eval mode)."""
    path = Path(path)
    config = load_acr_config(path)
    model = ACRNet(config)
    load_state_dict_into(model, path)
    return model.eval()
