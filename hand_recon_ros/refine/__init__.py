"""IHMR collision-aware factorised refinement of two interacting hands (ROS-free).

    from hand_recon_ros.refine import build_refiner, JointHead, TwoHandState, should_refine
    refiner = build_refiner(feature_dim=1024, hand_model=hand_model)
    new_state, accepted, timings_ms = refiner.refine(state, image_feature, joint_head(image_feature))

Submodules: factors (state + factor layout), joint_head, verify, refiner (IHMR-MLP: `Refiner`,
`build_refiner`), optimize (IHMR-OPT), collision (two-hand wrapper over hand_model.penetration).
Imports are lazy so that importing the package costs nothing until an attribute is used. See
docs/design-ihmr.md.
"""

from typing import Any

_LAZY = {
    'HandParams': 'factors',
    'TwoHandState': 'factors',
    'should_refine': 'factors',
    'gate_mask': 'factors',
    'DEFAULT_GATE_M': 'factors',
    'PARAM_DIM': 'factors',
    'FACTOR_SIZES': 'factors',
    'forward_hands': 'factors',
    'JointHead': 'joint_head',
    'joint_template': 'joint_head',
    'Refiner': 'refiner',
    'build_refiner': 'refiner',
    'resolve_stages': 'refiner',
    'accept_candidates': 'verify',
    'select_snapshots': 'verify',
    'joint_errors': 'verify',
    'OptConfig': 'optimize',
    'OptStage': 'optimize',
    'CameraProjection': 'optimize',
    'optimize_batch': 'optimize',
    'optimize_state': 'optimize',
    'TwoHandCollision': 'collision',
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
