"""Synthetic two-hand training data: generator, rasteriser, torch dataset."""

from .dataset import TENSOR_KEYS, SynthDataset
from .generator import GENERATOR_VERSION, SCENE_TYPES, SynthConfig, SynthGenerator, fit_weak_camera

__all__ = [
    'GENERATOR_VERSION',
    'SCENE_TYPES',
    'TENSOR_KEYS',
    'SynthConfig',
    'SynthDataset',
    'SynthGenerator',
    'fit_weak_camera',
]
