"""Hand model layer: MANO (user files, loaded without chumpy) or the procedural stand-in, via smplx.

Import-light: torch/smplx are imported only when the model API is first used.
    from hand_recon_ros.hand_model import load_hand_model
    model = load_hand_model()             # MANO from $HAND_RECON_MANO_DIR, else the stand-in (warns)
"""

from typing import Any

_LAZY = {
    'load_hand_model': ('model', 'load_hand_model'),
    'HandModel': ('model', 'HandModel'),
    'STANDIN_WARNING': ('model', 'STANDIN_WARNING'),
    'render_mesh_overlay': ('render', 'render_mesh_overlay'),
    'ModelFileError': ('mano_loader', 'ModelFileError'),
    'load_model_file': ('mano_loader', 'load_model_file'),
    'fit_keypoints': ('fit', 'fit_keypoints'),
    'fit_hands': ('fit', 'fit_hands'),
    'FitConfig': ('fit', 'FitConfig'),
    'FitResult': ('fit', 'FitResult'),
    'FitStart': ('fit', 'FitStart'),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f'{__name__}.{module}'), attr)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
