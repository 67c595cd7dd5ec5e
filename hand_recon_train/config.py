"""Typed training configs: one schema for the ACR trainer (``train``) and the IHMR-MLP trainer (``train_ihmr``).

A YAML file in ``hand_recon_train/configs`` (or any path) is read into dataclasses and checked at load: an unknown
key, a value of the wrong type or out of range is a ``ValueError`` naming its key path (``optim.lrr``).
``overrides`` are ``SECTION.KEY=VALUE`` strings (``--set``; deeper paths reach into free-form sections, e.g.
``data.synth.supersample=2``): the value is read as YAML and converted to the field's type.

Free-form sections (``data.synth``, ``data.augment``, ``data.real``, ``loss`` and ``decode`` of ACR,
``model.overrides``) stay plain mappings, as the run records store them; the classes that consume them
(``SynthConfig``, ``AugmentConfig``, ``LossConfig``, ``DecodeConfig``, ``parse_real_sources``) check them at load.
Sections also answer ``config['optim']['lr']`` (older callers and the run records' layout).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

__all__ = [
    'CONFIG_DIR',
    'Section',
    'RunSection',
    'SplitSection',
    'RunConfig',
    'TrainConfig',
    'IhmrConfig',
    'ModelSection',
    'AcrDataSection',
    'OptimSection',
    'AcrRunSection',
    'PairDataSection',
    'FrozenAcrSection',
    'InitSection',
    'TargetsSection',
    'HeadWeights',
    'JointHeadSection',
    'RefinerSection',
    'StageLossWeights',
    'load_config',
    'build_config',
    'config_path',
    'apply_overrides',
]

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
S = TypeVar('S', bound='Section')


class Section:
    """Base of every config section: mapping-style access and ``to_dict`` (the layout the run records store)."""

    def __getitem__(self, key: str) -> Any:
        if key not in _field_names(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _field_names(type(self)):
            raise KeyError(f'unknown config key {key!r}; known: {sorted(_field_names(type(self)))}')
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in _field_names(type(self))

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# ---------------------------------------------------------------------------------------------- shared sections
@dataclass
class SplitSection(Section):
    """The synthetic training split and the held-out one (a different seed)."""

    train_seed: int = 0
    train_size: int = 1000
    val_seed: int = 100000
    val_size: int = 64
    cache_dir: str | None = None
    synth: dict = field(default_factory=dict)  # SynthConfig fields

    def check(self, where: str) -> None:
        from .synth import SynthConfig

        _positive(self, where, 'train_size', 'val_size')
        if self.train_seed == self.val_seed:
            raise ValueError(f'{where}.val_seed must differ from {where}.train_seed (the evaluation split is held out)')
        # the trainer sets image_size from the network; everything else is checked now
        _owned(
            f'{where}.synth', lambda: SynthConfig.from_dict({k: v for k, v in self.synth.items() if k != 'image_size'})
        )


@dataclass
class RunSection(Section):
    seed: int = 0
    device: str = 'auto'
    out_dir: str = 'out/train/run'
    threads: int = 0


@dataclass
class RunConfig(Section):
    """What both trainers' configs hold: a data split, a run section and where the config came from."""

    data: SplitSection = field(default_factory=SplitSection)
    train: RunSection = field(default_factory=RunSection)
    config_source: str | None = None

    def check(self) -> None:
        self.data.check('data')


# ---------------------------------------------------------------------------------------------- ACR trainer
@dataclass
class ModelSection(Section):
    preset: str = 'acr_light'
    input_size: int = 256
    overrides: dict = field(default_factory=dict)  # build_acr keyword arguments over the preset
    pretrained: bool = False


@dataclass
class AcrDataSection(SplitSection):
    num_workers: int = 0
    augment: dict = field(default_factory=dict)  # AugmentConfig fields
    real: list = field(default_factory=list)  # parse_real_sources entries
    synth_weight: float = 1.0


@dataclass
class OptimSection(Section):
    batch_size: int = 8
    epochs: int = 1
    lr: float = 3.0e-4
    weight_decay: float = 1.0e-6
    lr_steps: list[int] = field(default_factory=lambda: [10, 20])
    lr_factor: float = 0.1
    grad_clip: float = 10.0

    def lr_at(self, epoch: int) -> float:
        """The step schedule: ``lr`` times ``lr_factor`` per milestone reached."""
        return self.lr * self.lr_factor ** sum(1 for step in self.lr_steps if epoch >= step)


@dataclass
class AcrRunSection(RunSection):
    log_every: int = 10
    max_steps: int | None = None
    init_weights: str | None = None
    amp: str | None = None
    channels_last: bool = False  # NHWC activations: +13 % compute on this CPU with bf16 (bench_train.py)
    eval_every: int = 1
    eval_batches: int | None = None
    progress: bool = True


@dataclass
class TrainConfig(RunConfig):
    """``python -m hand_recon_train.train`` (configs tiny_cpu, default_cpu, light_synthetic, real_cpu, ...)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: AcrDataSection = field(default_factory=AcrDataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: dict = field(default_factory=dict)  # LossConfig fields
    decode: dict = field(default_factory=dict)  # DecodeConfig fields
    train: AcrRunSection = field(default_factory=AcrRunSection)

    def check(self) -> None:
        from hand_recon_ros.acr.network import PRESETS

        from .augment import AugmentConfig
        from .datasets.mixed import parse_real_sources
        from .losses import LossConfig

        super().check()
        if self.model.preset not in PRESETS:
            raise ValueError(f'model.preset must be one of {sorted(PRESETS)}, got {self.model.preset!r}')
        if self.model.pretrained:
            from hand_recon_ros.acr.pretrained import PRETRAINED_BACKBONES

            backbone = {**PRESETS[self.model.preset], **self.model.overrides}.get('backbone')
            if backbone not in PRETRAINED_BACKBONES:
                raise ValueError(
                    f'model.pretrained: no ImageNet weights for backbone {backbone!r} (preset '
                    f'{self.model.preset!r}); available for: {", ".join(PRETRAINED_BACKBONES)}'
                )
        if self.train.amp not in (None, 'bf16'):
            raise ValueError(f"train.amp must be null or 'bf16', got {self.train.amp!r}")
        _positive(self.optim, 'optim', 'batch_size', 'epochs')
        _positive(self.train, 'train', 'log_every', 'eval_every')
        weight = self.data.synth_weight
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f'data.synth_weight must be a number >= 0, got {weight!r}')
        if weight == 0 and not self.data.real:
            raise ValueError('data.synth_weight is 0 but data.real lists no source: nothing to train on')
        # the free-form sections, checked by the classes that read them, before any work
        _owned('data.augment', lambda: AugmentConfig.from_dict(self.data.augment))
        _owned('data.real', lambda: parse_real_sources(self.data.real))
        _owned('loss', lambda: LossConfig.from_dict(self.loss))
        _owned('decode', self.decode_config)

    def decode_config(self) -> Any:
        from hand_recon_ros.acr.decoding import DecodeConfig
        from hand_recon_ros.config_utils import dataclass_from_dict

        return dataclass_from_dict(DecodeConfig, self.decode, 'decode config')


# ---------------------------------------------------------------------------------------------- IHMR trainer
@dataclass
class PairDataSection(SplitSection):
    train_seed: int = 1
    train_size: int = 256
    val_seed: int = 100001
    drop_penetrating_gt: bool = True


@dataclass
class FrozenAcrSection(Section):
    """The frozen ACR network that gives image features (and, with ``init.source: acr``, the initial state)."""

    weights: str | None = None
    preset: str = 'acr_light'
    input_size: int = 128
    seed: int = 0
    batch_size: int = 16


@dataclass
class InitSection(Section):
    source: str = 'perturbed'
    seed: int = 7
    approach: list[float] = field(default_factory=lambda: [0.1, 0.4])
    translation_m: float = 0.01
    orient_rad: float = 0.1
    finger_rad: float = 0.1
    betas_std: float = 0.3


@dataclass
class TargetsSection(Section):
    source: str = 'gt'
    opt_steps: int = 40


@dataclass
class HeadWeights(Section):
    j3d: float = 100.0
    j2d: float = 1.0
    relative: float = 100.0


@dataclass
class JointHeadSection(Section):
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    epochs: int = 4
    lr: float = 1.0e-3
    batch_size: int = 32
    use_side_params: bool = False
    weights: HeadWeights = field(default_factory=HeadWeights)


@dataclass
class RefinerSection(Section):
    hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    epochs_per_stage: int = 2
    lr: float = 1.0e-4
    batch_size: int = 16
    max_steps_per_stage: int | None = None
    gate_m: float = 0.3
    grad_clip: float | None = 10.0


@dataclass
class StageLossWeights(Section):
    """IHMR's stage loss: translation stage x1000 on the 3D-joint and translation terms, the others x10."""

    param: float = 10.0
    j3d: float = 10.0
    trans: float = 10.0
    j3d_translation_stage: float = 1000.0
    trans_translation_stage: float = 1000.0
    collision: float = 1.0


@dataclass
class IhmrRunSection(RunSection):
    device: str = 'cpu'
    out_dir: str = 'out/train_ihmr/run'


@dataclass
class IhmrConfig(RunConfig):
    """``python -m hand_recon_train.train_ihmr`` (configs ihmr_tiny, ihmr_cpu, ihmr_synthetic)."""

    data: PairDataSection = field(default_factory=PairDataSection)
    acr: FrozenAcrSection = field(default_factory=FrozenAcrSection)
    init: InitSection = field(default_factory=InitSection)
    targets: TargetsSection = field(default_factory=TargetsSection)
    joint_head: JointHeadSection = field(default_factory=JointHeadSection)
    refiner: RefinerSection = field(default_factory=RefinerSection)
    loss: StageLossWeights = field(default_factory=StageLossWeights)
    train: IhmrRunSection = field(default_factory=IhmrRunSection)

    def check(self) -> None:
        super().check()
        if self.init.source not in ('perturbed', 'acr'):
            raise ValueError(f"init.source must be 'perturbed' or 'acr', got {self.init.source!r}")
        if self.targets.source not in ('gt', 'opt'):
            raise ValueError(f"targets.source must be 'gt' or 'opt', got {self.targets.source!r}")
        if len(self.init.approach) != 2:
            raise ValueError(f'init.approach must be [low, high], got {self.init.approach!r}')
        _positive(self.refiner, 'refiner', 'batch_size')
        _positive(self.joint_head, 'joint_head', 'batch_size')
        _positive(self.acr, 'acr', 'batch_size')


# ---------------------------------------------------------------------------------------------- checks
def _positive(section: Section, where: str, *keys: str) -> None:
    for key in keys:
        if getattr(section, key) < 1:
            raise ValueError(f'{where}.{key} must be a positive int, got {getattr(section, key)!r}')


def _owned(where: str, check: typing.Callable[[], Any]) -> None:
    """Run the consuming class's own check; its message gets the key path in front."""
    try:
        check()
    except (TypeError, ValueError) as error:
        raise ValueError(f'{where}: {error}') from None


# ---------------------------------------------------------------------------------------------- building
def build_config(cls: type[S], data: Any, where: str = '') -> S:
    """``cls`` from a mapping, every value converted to its field's type; unknown keys and wrong types raise
    ``ValueError`` with the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f'{where or "the config"} must be a mapping, got {data!r}')
    hints = typing.get_type_hints(cls)
    known = _field_names(cls)
    unknown = [key for key in data if key not in known]
    if unknown:
        raise ValueError(
            f'unknown config key {where + str(unknown[0])!r}; known{" in " + where[:-1] if where else ""}: '
            f'{sorted(known - {"config_source"})}'
        )
    values = {key: _convert(hints[key], value, f'{where}{key}') for key, value in data.items()}
    return cls(**values)


def _convert(kind: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (kind,) = [a for a in args if a is not type(None)]
        return _convert(kind, value, where)
    if isinstance(kind, type) and issubclass(kind, Section):
        return build_config(kind, value, where + '.')
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f'{where} must be true or false, got {value!r}')
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{where} must be an int, got {value!r}')
        return value
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f'{where} must be a number, got {value!r}')
        try:
            number = float(value)  # YAML 1.1 reads '3e-4' (no dot) as a string
        except (TypeError, ValueError):
            raise ValueError(f'{where} must be a number, got {value!r}') from None
        if not isinstance(value, (int, float, str)) or math.isnan(number):
            raise ValueError(f'{where} must be a number, got {value!r}')
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f'{where} must be a string, got {value!r}')
        return value
    if kind is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f'{where} must be a mapping, got {value!r}')
        return value
    if kind is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f'{where} must be a list, got {value!r}')
        if not args:
            return list(value)
        return [_convert(args[0], v, f'{where}[{i}]') for i, v in enumerate(value)]
    raise TypeError(f'{where}: no conversion for {kind!r}')


# ---------------------------------------------------------------------------------------------- loading
def config_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML file by path, or by name in ``hand_recon_train/configs``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = CONFIG_DIR / f'{name_or_path}.yaml'
    if not named.is_file():
        available = sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))
        raise FileNotFoundError(f'no config {str(name_or_path)!r} (not a file; named configs: {available})')
    return named


def _field_kind(cls: type, path: list[str]) -> Any:
    """The declared type at ``path`` (None inside a free-form mapping or past an unknown key)."""
    kind: Any = cls
    for key in path:
        while typing.get_origin(kind) in (Union, types.UnionType):
            kind = [a for a in typing.get_args(kind) if a is not type(None)][0]
        if not (isinstance(kind, type) and issubclass(kind, Section)) or key not in _field_names(kind):
            return None
        kind = typing.get_type_hints(kind)[key]
    return kind


def apply_overrides(data: dict, overrides: list[str] | None, schema: type[RunConfig]) -> dict:
    """Write ``SECTION.KEY=VALUE`` strings into a raw config mapping. The value is YAML; for a string field the
    text itself (``train.out_dir=2024``), for a number field '1e-3' too (YAML 1.1 would make it a string)."""
    for item in overrides or []:
        key, sep, text = item.partition('=')
        path = key.strip().split('.')
        if not sep or len(path) < 2 or not all(path):
            raise ValueError(f'override must look like section.key=value, got {item!r}')
        value = yaml.safe_load(text)
        kind = _field_kind(schema, path)
        if value is not None and not isinstance(value, str) and kind in (str, str | None):
            value = text
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f'override {item!r}: {".".join(path[:-1])} is not a section')
            node = child
        node[path[-1]] = value
    return data


def _schema_for(data: dict) -> type[RunConfig]:
    ihmr_only = set(_field_names(IhmrConfig)) - set(_field_names(TrainConfig))
    return IhmrConfig if ihmr_only & set(data) else TrainConfig


def load_config(
    name_or_path: str | os.PathLike, overrides: list[str] | None = None, schema: type[RunConfig] | None = None
) -> TrainConfig | IhmrConfig:
    """Read, override, convert and check a training config. ``schema``: ``TrainConfig`` or ``IhmrConfig``;
    by default an IHMR config is recognised by its sections (``acr``, ``refiner``, ...)."""
    path = config_path(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: the config must be a YAML mapping')
    data.pop('config_source', None)
    schema = schema or _schema_for(data)
    config = build_config(schema, apply_overrides(data, overrides, schema))
    config.config_source = str(path)
    config.check()
    return typing.cast(Union[TrainConfig, IhmrConfig], config)
