"""Real hand datasets in their official formats (InterHand2.6M, FreiHAND) as trainer samples."""

from .common import (
    INTERACTION_REDUCTIONS,
    SEG_IGNORE,
    interaction_distance,
    is_close_interaction,
    make_sample,
    project,
    world_to_camera,
)
from .freihand import FREIHAND_TRAIN_FRAMES, FreiHandAnnotations, FreiHandDataset, FreiHandFrame
from .interhand import (
    HAND_TYPES,
    SUBSETS,
    InterHandAnnotations,
    InterHandDataset,
    InterHandFrame,
    find_interhand_files,
    mano_world_to_camera,
)

__all__ = [
    'FREIHAND_TRAIN_FRAMES',
    'HAND_TYPES',
    'INTERACTION_REDUCTIONS',
    'SEG_IGNORE',
    'SUBSETS',
    'FreiHandAnnotations',
    'FreiHandDataset',
    'FreiHandFrame',
    'InterHandAnnotations',
    'InterHandDataset',
    'InterHandFrame',
    'find_interhand_files',
    'interaction_distance',
    'is_close_interaction',
    'make_sample',
    'mano_world_to_camera',
    'project',
    'world_to_camera',
]
