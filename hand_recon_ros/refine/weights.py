"""Trained IHMR-MLP weights: the factor MLPs of ``Refiner`` and the ``JointHead`` in one safetensors file.

Written by ``hand_recon_train.train_ihmr``; read here so the node needs no training package::

    from hand_recon_ros.refine.weights import load_refiner_weights
    document = load_refiner_weights(refiner, joint_head, 'out/train_ihmr/x/refiner.safetensors')

Tensors are ``refiner.<key>`` and ``joint_head.<key>`` (state-dict keys); the architecture (feature size,
hidden widths, factor order, whether the joint head takes ACR's side parameters) and the training record
are JSON in the metadata (key ``ihmr_refiner``) and in ``<name>.json`` next to the file. Never pickle. The
joint head's template is not stored (non-persistent; derived from the hand model at build time): load the
weights with the same kind of hand model they were trained with (``document['hand_model']``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hand_recon_ros.acr.weights import safetensors_metadata

if TYPE_CHECKING:
    from hand_recon_ros.hand_model.model import HandModel
    from hand_recon_ros.refine.joint_head import JointHead
    from hand_recon_ros.refine.refiner import FactorMLP, Refiner

__all__ = [
    'FORMAT_VERSION',
    'refiner_architecture',
    'save_refiner_weights',
    'read_refiner_document',
    'load_refiner_weights',
    'build_from_weights',
]

FORMAT_VERSION = 1
ARCHITECTURE = 'ihmr_mlp'
_METADATA_KEY = 'ihmr_refiner'


def _linear_widths(sequential: Iterable[torch.nn.Module]) -> list[int]:
    return [m.out_features for m in sequential if isinstance(m, torch.nn.Linear)]


def refiner_architecture(refiner: Refiner, joint_head: JointHead, use_side_params: bool = False) -> dict[str, Any]:
    """What is needed to rebuild both modules with matching shapes."""
    first = cast('FactorMLP', next(iter(refiner.mlps.values())))  # ModuleDict is typed as holding Modules
    return {
        'feature_dim': int(refiner.feature_dim),
        'factors': list(refiner.factors),
        'mlp_hidden': _linear_widths(first.net)[:-1],
        'gate_m': float(refiner.gate_m),
        'joint_head_hidden': _linear_widths(joint_head.trunk),
        'joint_head_side_params': bool(use_side_params),
    }


def save_refiner_weights(
    refiner: Refiner,
    joint_head: JointHead,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
    use_side_params: bool = False,
    hand_model_identity: str = '',
) -> tuple[Path, Path]:
    """Write ``path`` (.safetensors) and ``path`` with ``.json``; returns both paths."""
    path = Path(path)
    if path.suffix != '.safetensors':
        raise ValueError(f'weights path must end in .safetensors, got {path.name!r}')
    if refiner.feature_dim != joint_head.feature_dim:
        raise ValueError(f'refiner feature_dim {refiner.feature_dim} != joint head {joint_head.feature_dim}')
    document = {
        'format_version': FORMAT_VERSION,
        'architecture': ARCHITECTURE,
        'config': refiner_architecture(refiner, joint_head, use_side_params),
        'hand_model': hand_model_identity,
        'extra': extra or {},
    }
    tensors = {f'refiner.{k}': v.detach().cpu().contiguous() for k, v in refiner.state_dict().items()}
    tensors.update({f'joint_head.{k}': v.detach().cpu().contiguous() for k, v in joint_head.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={_METADATA_KEY: json.dumps(document, default=str)})
    json_path = path.with_suffix('.json')
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + '\n')
    return path, json_path


def _check_document(document: Any, source: str) -> dict[str, Any]:
    if not isinstance(document, dict) or document.get('architecture') != ARCHITECTURE or 'config' not in document:
        raise ValueError(f"{source}: not IHMR-MLP weights (needs architecture={ARCHITECTURE!r} and a 'config')")
    if document.get('format_version') != FORMAT_VERSION:
        raise ValueError(
            f"{source}: format_version {document.get('format_version')!r} is not supported "
            f'(expected {FORMAT_VERSION})'
        )
    return document


def read_refiner_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON document stored in the file's metadata (architecture, hand model, training record)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no refiner weights file at {path}')
    metadata = safetensors_metadata(path)
    if _METADATA_KEY not in metadata:
        raise ValueError(f'{path}: no {_METADATA_KEY!r} metadata (not written by save_refiner_weights)')
    try:
        document = json.loads(metadata[_METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path}: metadata is not valid JSON ({exc})') from None
    return _check_document(document, str(path))


def _load_part(
    module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, path: str | os.PathLike[str]
) -> None:
    from hand_recon_ros.acr.weights import check_state_dict

    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    check_state_dict(module, state, f'{path} [{prefix[:-1]}]')
    module.load_state_dict(state, strict=True)


def load_refiner_weights(refiner: Refiner, joint_head: JointHead, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load trained weights into an existing ``Refiner`` (build_refiner) and ``JointHead``; every key and
    shape is checked first (ValueError listing the problems). Returns the stored document; its
    ``config['joint_head_side_params']`` says whether the head was trained with ACR's per-side parameters
    (True) or with ``side_params=None`` (False, what ``pipeline.refine_hands`` passes today)."""
    path = Path(path)
    document = read_refiner_document(path)
    if refiner is None or joint_head is None:
        raise TypeError('load_refiner_weights needs both the refiner and the joint head')
    if tuple(document['config'].get('factors', ())) != tuple(refiner.factors):
        raise ValueError(f"{path}: factor order {document['config'].get('factors')} != refiner {refiner.factors}")
    try:
        tensors = load_file(str(path), device='cpu')
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ValueError(f'{path}: corrupt or not a safetensors file ({exc})') from None
    _load_part(refiner, tensors, 'refiner.', path)
    _load_part(joint_head, tensors, 'joint_head.', path)
    return document


def build_from_weights(
    path: str | os.PathLike[str], hand_model: HandModel | None = None, **refiner_kwargs: Any
) -> tuple[Refiner, JointHead, dict[str, Any]]:
    """-> (refiner, joint_head, document) built with the stored architecture and loaded, in eval mode.
    ``hand_model=None`` loads the default model (as build_refiner)."""
    from hand_recon_ros.refine.joint_head import JointHead, joint_template
    from hand_recon_ros.refine.refiner import build_refiner

    document = read_refiner_document(path)
    cfg = document['config']
    if hand_model is None:
        from hand_recon_ros.hand_model.model import load_hand_model

        hand_model = load_hand_model()
    refiner_kwargs.setdefault('gate_m', cfg['gate_m'])
    refiner = build_refiner(
        cfg['feature_dim'], hand_model=hand_model, hidden=tuple(cfg['mlp_hidden']), **refiner_kwargs
    )
    joint_head = JointHead(
        cfg['feature_dim'], hidden=tuple(cfg['joint_head_hidden']), template=joint_template(hand_model)
    ).to(hand_model.device)
    load_refiner_weights(refiner, joint_head, path)
    return refiner.eval(), joint_head.eval(), document
