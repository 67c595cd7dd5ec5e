"""Training on a mixture of synthetic and real datasets.

Each source keeps its own loader (``SynthDataset``, ``InterHandDataset``, ``FreiHandDataset``); this module gives
their samples one set of keys (so a batch can mix them) and draws each epoch's samples from the sources in
fixed proportions, independent of how large each source is.

Config (``data.real`` of the trainer), one entry per real source::

    - {type: interhand, root: /data/InterHand2.6M, split: train, weight: 0.3, options: {subset: IH}}
    - {type: freihand, root: /data/FreiHAND, split: training, weight: 0.2}

``weight`` is the source's share of the samples (the synthetic source has ``data.synth_weight``); ``options``
go to the source's annotation reader (e.g. InterHand2.6M ``subset``, FreiHAND ``versions``).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset, Sampler

from .freihand import FreiHandDataset
from .interhand import InterHandDataset
from .pasted import PastedPairsDataset
from .teacher import TeacherDataset

__all__ = [
    'REAL_DATASETS',
    'TRAIN_KEYS',
    'HarmonizedDataset',
    'MixtureSampler',
    'build_real_dataset',
    'harmonize',
    'parse_real_sources',
]

REAL_DATASETS = {
    'interhand': InterHandDataset,
    'freihand': FreiHandDataset,
    'teacher': TeacherDataset,
    'teacher_pairs': PastedPairsDataset,
}
_DEFAULT_SPLIT = {'interhand': 'train', 'freihand': 'training', 'teacher': 'train', 'teacher_pairs': 'train'}
# what the loss reads; masks say which labels a source has (real data: no meshes, MANO and joints where annotated)
TRAIN_KEYS = (
    'image',
    'seg',
    'center_maps',
    'valid',
    'global_orient',
    'hand_pose',
    'betas',
    'has_mano',
    'cam',
    'joints_3d',
    'joints_valid',
    'joints_2d',
    'joints_vis',
    'vertices',
    'has_vertices',
    'K',
    'index',
    'source',
)


def parse_real_sources(entries) -> list[dict]:
    """Check ``data.real`` entries; returns them with defaults filled (split, weight 1, options {})."""
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f'data.real must be a list of sources, got {type(entries).__name__}')
    sources = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f'data.real[{i}] must be a mapping, got {entry!r}')
        unknown = sorted(set(entry) - {'type', 'root', 'split', 'weight', 'options'})
        if unknown:
            raise ValueError(f'data.real[{i}]: unknown keys {unknown}; known: type, root, split, weight, options')
        kind = entry.get('type')
        if kind not in REAL_DATASETS:
            raise ValueError(f'data.real[{i}].type must be one of {sorted(REAL_DATASETS)}, got {kind!r}')
        if not entry.get('root'):
            raise ValueError(f'data.real[{i}] ({kind}) needs a root folder')
        weight = entry.get('weight', 1.0)
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f'data.real[{i}].weight must be a number > 0, got {weight!r}')
        options = entry.get('options') or {}
        if not isinstance(options, dict):
            raise ValueError(f'data.real[{i}].options must be a mapping, got {options!r}')
        sources.append(
            {
                'type': kind,
                'root': str(entry['root']),
                'split': entry.get('split', _DEFAULT_SPLIT[kind]),
                'weight': float(weight),
                'options': dict(options),
            }
        )
    return sources


def build_real_dataset(source: dict, input_size: int, normalization: str) -> Dataset:
    """One parsed ``data.real`` entry -> its dataset (annotation errors name the files)."""
    cls = REAL_DATASETS[source['type']]
    return cls(source['root'], source['split'], input_size=input_size, normalization=normalization, **source['options'])


def harmonize(item: dict, source: int, num_vertices: int) -> dict:
    """A synthetic or real sample -> the ``TRAIN_KEYS`` dict (synthetic hands: MANO, all joints and the mesh
    labelled; real ones get zero vertices with ``has_vertices`` False)."""
    out = {k: item[k] for k in TRAIN_KEYS if k in item}
    if 'vertices' not in out:
        out['vertices'] = torch.zeros(2, int(num_vertices), 3)
        out['has_vertices'] = torch.zeros(2, dtype=torch.bool)
    elif 'has_vertices' not in out:
        out['has_vertices'] = item['valid'].clone()
    if 'has_mano' not in out:
        out['has_mano'] = item['valid'].clone()
    if 'joints_valid' not in out:
        out['joints_valid'] = item['valid'][:, None].expand(-1, item['joints_3d'].shape[1]).clone()
    out['source'] = torch.tensor(int(source))
    missing = [k for k in TRAIN_KEYS if k not in out]
    if missing:
        raise KeyError(f'sample of source {source} lacks {missing}')
    return out


class HarmonizedDataset(Dataset):
    def __init__(self, dataset, source: int, num_vertices: int):
        self.dataset, self.source, self.num_vertices = dataset, int(source), int(num_vertices)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return harmonize(self.dataset[index], self.source, self.num_vertices)


class MixtureSampler(Sampler):
    """Indices into the concatenation of datasets of ``sizes``: each draw picks a source with probability
    proportional to ``weights``, then a sample of it uniformly. ``num_samples`` per epoch (per process);
    deterministic from (seed, epoch, rank)."""

    def __init__(self, sizes, weights, num_samples: int, seed: int = 0, rank: int = 0):
        if len(sizes) != len(weights) or not sizes:
            raise ValueError('sizes and weights must be non-empty and of the same length')
        if any(int(s) < 1 for s in sizes):
            raise ValueError(f'every source needs at least one sample, got sizes {list(sizes)}')
        w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
        if not torch.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f'weights must be > 0, got {list(weights)}')
        self.sizes = [int(s) for s in sizes]
        self.probs = w / w.sum()
        self.offsets = [0]
        for s in self.sizes[:-1]:
            self.offsets.append(self.offsets[-1] + s)
        self.num_samples, self.seed, self.rank, self.epoch = int(num_samples), int(seed), int(rank), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 101 + self.rank)
        sources = torch.multinomial(self.probs, self.num_samples, replacement=True, generator=g)
        for src in sources.tolist():
            yield self.offsets[src] + int(torch.randint(self.sizes[src], (1,), generator=g))
