"""``create_model(name_or_weights)``: one entry point that turns a preset name, a backbone name, a short benchmark
name or a weights file into an ACR network, plus where shipped weights are found and which preset a backbone means.

    create_model('acr_light', input_size=128)          # preset (random init)
    create_model('resnet18')                           # backbone -> its preset (BACKBONE_PRESETS)
    create_model('resnet34')                           # a backbone without a preset: ACRConfig defaults
    create_model('light')                              # short name used by the benchmarks' NAME@SIZE
    create_model('models/acr_default.safetensors')     # trained weights (+ their JSON config)
    create_model('')                                   # the shipped default model (FileNotFoundError if absent)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .backbones import list_backbones
from .network import PRESETS, ACRConfig, ACRNet, build_acr

__all__ = [
    'BACKBONE_PRESETS',
    'DEFAULT_WEIGHTS',
    'SHORT_NAMES',
    'UNTRAINED',
    'NetworkSpec',
    'create_model',
    'find_default_weights',
    'find_shipped',
    'model_search_dirs',
    'parse_network_spec',
    'resolve_preset',
    'weights_description',
]

DEFAULT_WEIGHTS = 'acr_default.safetensors'
UNTRAINED = 'untrained'  # weights value that asks for the seeded random-init network (tests, benchmarks)

# The one backbone -> preset table (a backbone's untrained network is its preset's architecture).
BACKBONE_PRESETS: dict[str, str] = {spec['backbone']: name for name, spec in PRESETS.items()}
# The short names of NAME@SIZE benchmark configs.
SHORT_NAMES: dict[str, str] = {
    'light': 'acr_light',
    'effnet': 'acr_effnet_lite0',
    'resnet50': 'acr_resnet50',
    'hrnet_w32': 'acr_hrnet_w32',
}


class NetworkSpec(NamedTuple):
    """A benchmark's ``NAME@SIZE`` network config, e.g. ``light@256``."""

    name: str  # a key of SHORT_NAMES
    input_size: int

    @property
    def preset(self) -> str:
        return SHORT_NAMES[self.name]

    @property
    def backbone(self) -> str:
        """What the node's ``network.backbone`` parameter takes for this config."""
        return str(PRESETS[self.preset]['backbone'])

    def __str__(self) -> str:
        return f'{self.name}@{self.input_size}'


def parse_network_spec(spec: str) -> NetworkSpec:
    """``'light@256'`` -> NetworkSpec('light', 256): the one naming of every benchmark's ``--configs``."""
    name, _, size = str(spec).partition('@')
    if name not in SHORT_NAMES or not size.isdigit() or int(size) < 32:
        raise ValueError(f'bad network config {spec!r}: use NAME@SIZE with NAME in {", ".join(SHORT_NAMES)}')
    return NetworkSpec(name, int(size))


def model_search_dirs() -> list[Path]:
    """Where shipped models live: the source tree, then the installed share folder."""
    return [Path(__file__).resolve().parents[2] / 'models', Path(sys.prefix) / 'share' / 'hand_recon_ros' / 'models']


def find_shipped(filename: str) -> Path | None:
    """First ``filename`` in :func:`model_search_dirs`, or None."""
    return next((d / filename for d in model_search_dirs() if (d / filename).is_file()), None)


def find_default_weights() -> Path | None:
    """The shipped ACR model (``models/acr_default.safetensors``), or None."""
    return find_shipped(DEFAULT_WEIGHTS)


def resolve_preset(name: str) -> str:
    """A preset name, a short benchmark name or a backbone name -> the preset name (ValueError if none)."""
    if name in PRESETS:
        return name
    preset = SHORT_NAMES.get(name) or BACKBONE_PRESETS.get(name)
    if preset is None:
        known = sorted(set(PRESETS) | set(SHORT_NAMES) | set(BACKBONE_PRESETS))
        raise ValueError(f'unknown model name {name!r}; known: {", ".join(known)} (or a .safetensors file)')
    return preset


def weights_description(path: str | Path) -> str:
    """The free-text description in the JSON manifest next to a weights file ('' when absent or unreadable)."""
    manifest = Path(path).with_suffix('.json')
    if not manifest.is_file():
        return ''
    try:
        meta = json.loads(manifest.read_text())
        return meta.get('description') or (meta.get('extra') or {}).get('description', '')
    except (ValueError, AttributeError):
        return ''


def create_model(name_or_weights: str | Path = '', *, seed: int | None = None, **overrides: Any) -> ACRNet:
    """An ACR network from a weights file (trained) or a model name (random init, ``seed`` if given).

    ``''`` loads the shipped default model. ``overrides`` (``input_size``, ``center_attention``, ...) apply to
    named models only: a weights file carries its own config.
    """
    from .weights import load_acr

    text = str(name_or_weights)
    if text == '':
        path = find_default_weights()
        if path is None:
            raise FileNotFoundError(
                'no shipped default model found in ' + ', '.join(str(d) for d in model_search_dirs())
            )
        name_or_weights = path
    if isinstance(name_or_weights, Path) or text.endswith('.safetensors'):
        path = Path(name_or_weights).expanduser()
        if overrides:
            raise ValueError(f'a weights file carries its config; cannot override {sorted(overrides)}')
        if not path.is_file():
            raise FileNotFoundError(f'weights file not found: {path}')
        return load_acr(path)
    if text in list_backbones() and text not in BACKBONE_PRESETS:
        config: str | ACRConfig = ACRConfig(backbone=text)  # a registered backbone without a preset
    else:
        config = resolve_preset(text)
    if seed is not None:
        torch.manual_seed(seed)
    return build_acr(config, **overrides)
