"""Verification rules: the MLP acceptance (property-based) and the OPT snapshot selection, joint errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hand_recon_ros.refine.verify import accept_candidates, check_joint_head_output, joint_errors, select_snapshots

errors = st.one_of(st.floats(min_value=0.0, max_value=10.0), st.just(0.0), st.just(float('nan')))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(errors, errors, errors, errors), min_size=1, max_size=8))
def test_accepted_candidates_never_raise_either_error(rows):
    prev_j, prev_c, cand_j, cand_c = (np.array(col) for col in zip(*rows))
    ok = accept_candidates(prev_j, prev_c, cand_j, cand_c)
    assert ok.dtype == bool and ok.shape == (len(rows),)
    # Accepted => both strictly lower (NaN never passes); both strictly lower => accepted.
    assert np.all(cand_j[ok] < prev_j[ok]) and np.all(cand_c[ok] < prev_c[ok])
    both_lower = np.array([cj < pj and cc < pc for pj, pc, cj, cc in rows])
    assert np.array_equal(ok, both_lower)


def test_accept_examples():
    assert accept_candidates(1.0, 1.0, 0.9, 0.9).tolist() == [True]
    assert accept_candidates(1.0, 1.0, 1.0, 0.5).tolist() == [False]  # equal joint error: not a drop
    assert accept_candidates(1.0, 0.0, 0.5, 0.0).tolist() == [False]  # no collision: nothing to fix
    assert accept_candidates([1.0, 1.0], 1.0, [0.5, 2.0], [0.5, 0.5]).tolist() == [True, False]
    with pytest.raises(ValueError, match='incompatible sizes'):
        accept_candidates([1.0, 1.0], [1.0, 1.0, 1.0], 0.5, 0.5)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 6), st.integers(1, 4), st.data())
def test_selected_snapshot_never_raises_joint_error_and_cuts_collision(n_snap, batch, data):
    floats = st.floats(min_value=0.0, max_value=5.0)
    j = np.array(
        data.draw(st.lists(st.lists(floats, min_size=batch, max_size=batch), min_size=n_snap, max_size=n_snap))
    )
    c = np.array(
        data.draw(st.lists(st.lists(floats, min_size=batch, max_size=batch), min_size=n_snap, max_size=n_snap))
    )
    idx = select_snapshots(j, c, joint_tolerance=0.0, collision_drop=0.1)
    cols = np.arange(batch)
    assert np.all(j[idx, cols] <= j[0])
    moved = idx > 0
    assert np.all(c[idx, cols][moved] <= 0.9 * c[0][moved])
    # Lowest joint error among the admissible snapshots.
    admissible = (j <= j[:1]) & (c <= 0.9 * c[:1])
    admissible[0] = True
    assert np.allclose(j[idx, cols], np.where(admissible, j, np.inf).min(0))


def test_select_snapshots_examples():
    j = np.array([[1.0], [0.5], [0.2], [1.5]])
    c = np.array([[1.0], [0.95], [0.8], [0.0]])
    assert select_snapshots(j, c).tolist() == [2]  # 1: collision drop too small; 3: joint rises
    assert select_snapshots(j, c, collision_drop=0.0).tolist() == [2]
    assert select_snapshots(j, c, joint_tolerance=0.6).tolist() == [2]
    assert select_snapshots(np.array([[1.0], [np.nan]]), np.array([[1.0], [0.0]])).tolist() == [0]
    with pytest.raises(ValueError, match='collision_drop'):
        select_snapshots(j, c, collision_drop=1.0)


def test_joint_errors_measure_relative_placement():
    g = torch.Generator().manual_seed(0)
    jl, jr = torch.randn(2, 21, 3, generator=g) * 0.05, torch.randn(2, 21, 3, generator=g) * 0.05
    jl[:, 0], jr[:, 0] = 0.0, 0.0
    rel = torch.tensor([[-0.1, 0.02, 0.0], [0.05, 0.0, 0.01]])
    head = check_joint_head_output({'joints_3d': torch.stack([jl, jr], 1), 'relative_translation': rel})
    cam = torch.tensor([0.3, -0.1, 0.6])
    exact = joint_errors(jl + rel[:, None] + cam, jr + cam, head)
    torch.testing.assert_close(exact, torch.zeros(2), atol=1e-6, rtol=0)
    # Left hand 1 cm off along z: 21 of 42 joints are 1 cm off -> mean 5 mm; squared: 5e-5 m^2.
    off = torch.tensor([0.0, 0.0, 0.01])
    torch.testing.assert_close(
        joint_errors(jl + rel[:, None] + cam + off, jr + cam, head), torch.full((2,), 0.005), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        joint_errors(jl + rel[:, None] + cam + off, jr + cam, head, squared=True),
        torch.full((2,), 5e-5),
        atol=1e-9,
        rtol=0,
    )
    # Without the wrist vector only each hand's own shape counts: the offset is invisible.
    no_rel = check_joint_head_output({'joints_3d': torch.stack([jl, jr], 1)})
    torch.testing.assert_close(joint_errors(jl + off + cam, jr + cam, no_rel), torch.zeros(2), atol=1e-6, rtol=0)


def test_joint_head_output_is_checked():
    with pytest.raises(TypeError, match='joints_3d'):
        check_joint_head_output({'joints_2d': torch.zeros(1, 2, 21, 2)})
    with pytest.raises(ValueError, match=r'joints_3d must have shape'):
        check_joint_head_output({'joints_3d': torch.zeros(1, 2, 20, 3)})
    with pytest.raises(ValueError, match='batch 1, the state has 2'):
        check_joint_head_output({'joints_3d': torch.zeros(1, 2, 21, 3)}, batch=2)
    assert check_joint_head_output({'joints_3d': torch.zeros(2, 21, 3)})['joints_3d'].shape == (1, 2, 21, 3)
