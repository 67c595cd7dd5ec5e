"""Two-hand state layout, per-factor extract/apply, mesh placement at the wrist, and the gate."""

import numpy as np
import pytest
import torch

from hand_recon_ros.refine import factors as F
from hand_recon_ros.results import REFINE_FACTORS, HandResult

from test_refine_support import (
    hand_model,
    pair,
    single_torch_thread,  # noqa: F401  (autouse fixture)
)


def _random_state(seed, batch=None):
    g = torch.Generator().manual_seed(seed)
    shape = () if batch is None else (batch,)

    def hand():
        return F.HandParams(
            torch.randn(*shape, 3, generator=g),
            torch.randn(*shape, 45, generator=g),
            torch.randn(*shape, 10, generator=g),
            torch.randn(*shape, 3, generator=g),
        )

    return F.TwoHandState(left=hand(), right=hand())


def test_vector_round_trip_and_layout():
    state = _random_state(0, batch=4)
    vec = state.to_vector()
    assert vec.shape == (4, F.PARAM_DIM)
    torch.testing.assert_close(vec[:, 0:3], state.left.translation - state.right.translation)
    torch.testing.assert_close(vec[:, 54:99], state.right.hand_pose)
    torch.testing.assert_close(vec[:, 99:109], state.left.betas)
    back = F.TwoHandState.from_vector(vec)
    for side in ('left', 'right'):
        for name in ('global_orient', 'hand_pose', 'betas', 'translation'):
            torch.testing.assert_close(getattr(getattr(back, side), name), getattr(getattr(state, side), name))
    single = F.TwoHandState.from_vector(_random_state(1).to_vector(), batched=False)
    assert single.left.hand_pose.shape == (45,)


def test_factor_sizes_cover_every_parameter_but_the_midpoint_once():
    assert tuple(F.FACTOR_SIZES) == REFINE_FACTORS
    assert F.FACTOR_SIZES == {'translation': 3, 'left_orient': 3, 'right_orient': 3, 'fingers': 90, 'shape': 20}
    covered = np.zeros(F.PARAM_DIM, int)
    for slices in F.FACTOR_SLICES.values():
        for s in slices:
            covered[s] += 1
    assert covered[:119].tolist() == [1] * 119 and not covered[119:].any()


@pytest.mark.parametrize('factor', REFINE_FACTORS)
def test_apply_changes_only_its_factor(factor):
    vec = _random_state(2, batch=3).to_vector()
    values = torch.full((3, F.FACTOR_SIZES[factor]), 7.0)
    out = F.apply_factor(vec, factor, values)
    torch.testing.assert_close(F.extract_factor(out, factor), values)
    changed = (out != vec).any(0)
    expected = torch.zeros(F.PARAM_DIM, dtype=torch.bool)
    for s in F.FACTOR_SLICES[factor]:
        expected[s] = True
    assert torch.equal(changed, expected)


def test_new_relative_translation_keeps_the_midpoint():
    state = pair(0.03)
    vec = state.to_vector()
    out = F.apply_factor(vec, 'translation', torch.tensor([[-0.2, 0.1, 0.0]]))
    wl, wr = F.wrists_from_vector(out)
    torch.testing.assert_close(wl - wr, torch.tensor([[-0.2, 0.1, 0.0]]))
    torch.testing.assert_close((wl + wr) / 2, (state.left.translation + state.right.translation)[None] / 2)


def test_forward_hands_puts_the_wrist_joint_on_the_translation():
    state = _random_state(3, batch=2)
    state.left.betas.mul_(0.5)
    state.right.betas.mul_(0.5)
    meshes = F.forward_hands(hand_model(), state.to_vector())
    for side in ('left', 'right'):
        verts, joints = meshes[side]
        assert verts.shape == (2, 778, 3) and joints.shape == (2, 21, 3)
        torch.testing.assert_close(joints[:, 0], getattr(state, side).translation, atol=1e-6, rtol=0)


def test_gate_single_distant_and_close_hands():
    close = pair(0.03)
    assert F.should_refine(close, 0.3)
    assert not F.should_refine(F.TwoHandState(left=close.left), 0.3)
    assert not F.should_refine(F.TwoHandState(right=close.right), 0.3)
    assert not F.should_refine(F.TwoHandState(), 0.3)
    far = pair(0.03, dx=-0.5)  # wrists 0.5 m apart
    assert not F.should_refine(far, 0.3) and F.should_refine(far, 0.6)
    with pytest.raises(ValueError, match='gate_m'):
        F.should_refine(close, -1.0)
    with pytest.raises(TypeError, match='TwoHandState'):
        F.should_refine({'left': None}, 0.3)


def test_state_from_hand_results():
    pose = np.arange(48, dtype=np.float32) / 100

    def hand(side, x):
        return HandResult(
            handedness=side,
            score=0.9,
            joints_3d=np.zeros((21, 3), np.float32),
            keypoints_2d=np.zeros((21, 2), np.float32),
            joint_confidence=np.ones(21, np.float32),
            wrist_position=np.array([x, 0, 0.5], np.float32),
            wrist_orientation=np.array([0, 0, 0, 1], np.float32),
            mano_pose=pose,
            mano_shape=np.full(10, 0.1, np.float32),
        )

    state = F.TwoHandState.from_hand_results([hand('right', 0.1), hand('right', 9.0), hand('left', -0.1)])
    assert state.is_pair
    torch.testing.assert_close(state.right.translation, torch.tensor([0.1, 0.0, 0.5]))  # first right hand wins
    torch.testing.assert_close(state.left.global_orient, torch.from_numpy(pose[:3]))
    torch.testing.assert_close(state.left.hand_pose, torch.from_numpy(pose[3:]))
    assert not F.TwoHandState.from_hand_results([hand('left', 0.0)]).is_pair


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r'hand_pose must have shape'):
        F.HandParams(torch.zeros(3), torch.zeros(44), torch.zeros(10), torch.zeros(3))
    with pytest.raises(ValueError, match='must all be unbatched'):
        F.HandParams(torch.zeros(3), torch.zeros(2, 45), torch.zeros(10), torch.zeros(3))
    with pytest.raises(TypeError, match='floating point'):
        F.HandParams(torch.zeros(3, dtype=torch.long), torch.zeros(45), torch.zeros(10), torch.zeros(3))
    with pytest.raises(ValueError, match='needs both hands'):
        F.TwoHandState(left=pair(0.03).left).to_vector()
    with pytest.raises(ValueError, match='unknown factor'):
        F.extract_factor(pair(0.03).to_vector(), 'camera')
    with pytest.raises(ValueError, match='values must have shape'):
        F.apply_factor(pair(0.03).to_vector(), 'shape', torch.zeros(1, 10))
    with pytest.raises(ValueError, match=r'\(B, 122\)'):
        F.forward_hands(hand_model(), torch.zeros(1, 121))
