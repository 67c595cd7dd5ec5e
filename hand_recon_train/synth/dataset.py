"""Torch dataset over (seed, index): samples rendered on the fly, optionally cached as .npz files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hand_recon_ros.acr.preprocess import normalize_rgb

from .generator import SynthConfig, SynthGenerator

__all__ = ['SynthDataset', 'TENSOR_KEYS']

# keys handed to the trainer (the rest of a generator sample is for inspection only)
TENSOR_KEYS = (
    'seg',
    'center_maps',
    'valid',
    'global_orient',
    'hand_pose',
    'betas',
    'cam',
    'joints_3d',
    'vertices',
    'joints_2d',
    'joints_vis',
    'K',
)
_CACHE_KEYS = (
    'image',
    'seg',
    'center_maps',
    'valid',
    'global_orient',
    'hand_pose',
    'betas',
    'cam',
    'joints_3d',
    'vertices',
    'keypoints_2d',
    'joints_vis',
    'K',
)


class SynthDataset(Dataset):
    """``length`` samples of ``SynthGenerator(config, seed)``; item i is always sample i.

    Items: ``image`` (3, S, S) float32 normalised for the backbone (``'imagenet'`` or ``'pm1'``, RGB),
    ``seg`` (S/2, S/2) int64, ``center_maps`` (2, S/8, S/8), ``valid`` (2,) bool and per side [left, right]:
    ``global_orient`` (3), ``hand_pose`` (45), ``betas`` (10), ``cam`` (3), ``joints_3d`` (21, 3) and
    ``vertices`` (V, 3) in the camera frame (m), ``joints_2d`` (21, 2) in [-1, 1] network coordinates,
    ``joints_vis`` (21,) bool; ``K`` (3, 3) in network pixels.

    ``cache_dir``: rendered samples are stored as ``<cache_dir>/<config hash>-s<seed>/<index>.npz`` and
    read back next time (the hash covers the generator version and the config).
    """

    def __init__(
        self,
        config: SynthConfig | None = None,
        seed: int = 0,
        length: int = 1000,
        normalization: str = 'imagenet',
        cache_dir: str | os.PathLike | None = None,
    ):
        if not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f'length must be a positive int, got {length!r}')
        if normalization not in ('imagenet', 'pm1'):
            raise ValueError(f"normalization must be 'imagenet' or 'pm1', got {normalization!r}")
        self.config = config or SynthConfig()
        self.seed, self.length, self.normalization = int(seed), int(length), normalization
        self.cache_dir = None
        if cache_dir is not None:
            self.cache_dir = Path(cache_dir) / f'{self.config.config_hash()}-s{self.seed}'
        self._generator = None  # built lazily: one per DataLoader worker process

    @property
    def generator(self) -> SynthGenerator:
        if self._generator is None:
            self._generator = SynthGenerator(self.config, self.seed)
        return self._generator

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> dict:
        """The generator's numpy sample (from the cache when present)."""
        if self.cache_dir is not None:
            path = self.cache_dir / f'{index:08d}.npz'
            if path.is_file():
                with np.load(path, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
            sample = self.generator.sample(index)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f'{path.stem}.{os.getpid()}.tmp.npz')
            np.savez_compressed(tmp, **{k: sample[k] for k in _CACHE_KEYS})
            os.replace(tmp, path)  # atomic: parallel workers never read half a file
            return sample
        return self.generator.sample(index)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f'index {index} out of range for {self.length} samples')
        s = self.raw(int(index))
        size = s['image'].shape[0]
        rgb = cv2.cvtColor(s['image'], cv2.COLOR_BGR2RGB)
        item = {'image': torch.from_numpy(normalize_rgb(rgb, self.normalization)).permute(2, 0, 1).contiguous()}
        joints_2d = s['keypoints_2d'].astype(np.float32) / (size / 2.0) - 1.0
        for key in TENSOR_KEYS:
            value = joints_2d if key == 'joints_2d' else s[key]
            value = np.asarray(value)
            if key == 'seg':
                item[key] = torch.from_numpy(value.astype(np.int64))
            elif value.dtype == bool:
                item[key] = torch.from_numpy(value.copy())
            else:
                item[key] = torch.from_numpy(value.astype(np.float32))
        item['index'] = torch.tensor(int(index))
        return item
