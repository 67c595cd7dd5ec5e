"""Penetration between two stand-in hands with known answers (IHMR's AVE-P / MAX-P in mm)."""

import numpy as np
import pytest
import torch

from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_ros.hand_model.penetration import inside_mask, penetration_depths, penetration_metrics


@pytest.fixture(scope='module')
def flat_right():
    model = load_hand_model(flat_hand_mean=True)
    with torch.no_grad():
        out = model('right', torch.zeros(1, 3), torch.zeros(1, 45), torch.zeros(1, 10))
    verts = model.watertight_vertices('right', out['vertices'][0].numpy().astype(np.float64))
    return verts, model.watertight_faces('right')


def _touching_offset(verts, faces, direction):
    """Smallest shift along `direction` at which a copy of the hand no longer enters the original."""
    lo, hi = 0.0, 0.2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if (
            inside_mask(verts + mid * direction, verts, faces).any()
            or inside_mask(verts, verts + mid * direction, faces).any()
        ):
            lo = mid
        else:
            hi = mid
    return hi


def test_separate_hands_have_zero_penetration(flat_right):
    verts, faces = flat_right
    other = verts + np.array([0.0, 0.0, 0.3])
    m = penetration_metrics(verts, faces, other, faces, n_query_a=778, n_query_b=778)
    assert m['ave_p_mm'] == 0.0 and m['max_p_mm'] == 0.0 and m['n_inside'] == 0


@pytest.mark.parametrize('depth_mm', [2.0, 5.0])
def test_hand_stacked_onto_the_other_by_a_known_depth(flat_right, depth_mm):
    # Stack a copy on the back of the hand (+y is the back in the stand-in's frame), then push it in by d:
    # the broad flat contact makes the deepest vertex's depth equal to d.
    verts, faces = flat_right
    up = np.array([0.0, 1.0, 0.0])
    touch = _touching_offset(verts, faces, up)
    pushed = verts + (touch - depth_mm / 1000) * up
    d_a, d_b = penetration_depths(verts, faces, pushed, faces)
    max_mm = 1000 * max(d_a.max(), d_b.max())
    assert max_mm == pytest.approx(depth_mm, abs=0.25 * depth_mm), max_mm
    m = penetration_metrics(verts, faces, pushed, faces, n_query_a=778, n_query_b=778)
    assert m['max_p_mm'] == pytest.approx(max_mm, rel=1e-6)
    assert 0 < m['ave_p_mm'] < m['max_p_mm']
