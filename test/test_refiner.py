"""IHMR-MLP staged refinement with verification, the joint head, and the gate."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hand_recon_ros.refine.factors import PARAM_DIM, REFINE_FACTORS, TwoHandState, forward_hands
from hand_recon_ros.refine.joint_head import JointHead, joint_template
from hand_recon_ros.refine.refiner import Refiner, build_refiner

from test_refine_support import (
    APART_DY,
    PUSHED_DY,
    errors_of,
    hand_model,
    head_from_state,
    pair,
    single_torch_thread,  # noqa: F401  (autouse fixture)
)

FEATURE_DIM = 64


def _feature(seed, dim=FEATURE_DIM):
    return torch.randn(1, dim, generator=torch.Generator().manual_seed(seed))


def _zero_refiner(**corrections):
    """A refiner whose stages propose fixed residuals (zero unless given): weights 0, biases set."""
    torch.manual_seed(0)
    refiner = build_refiner(FEATURE_DIM, hand_model())
    with torch.no_grad():
        for factor, mlp in refiner.mlps.items():
            last = mlp.net[-1]
            last.weight.zero_()
            last.bias.copy_(torch.as_tensor(corrections.get(factor, torch.zeros(last.out_features))))
    return refiner


@pytest.fixture(scope='module')
def random_refiner():
    torch.manual_seed(1)
    return Refiner(FEATURE_DIM, hand_model(), init_gain=1.0).eval()


def test_gate_skips_single_and_distant_hands_without_any_work(monkeypatch):
    refiner = _zero_refiner(translation=torch.tensor([0.0, 0.1, 0.0]))
    hm = hand_model()

    def forbidden(*args, **kwargs):
        raise AssertionError('the hand model must not run for a skipped frame')

    monkeypatch.setattr(hm, 'forward', forbidden)
    monkeypatch.setattr(refiner.collision, 'errors', forbidden)
    pushed = pair(PUSHED_DY)
    head = {'joints_3d': torch.zeros(1, 2, 21, 3)}
    for state in (
        TwoHandState(left=pushed.left),
        TwoHandState(right=pushed.right),
        pair(PUSHED_DY, dx=-0.45),
    ):  # wrists 0.45 m apart > gate 0.3 m
        new, accepted, timings = refiner.refine(state, _feature(0), head)
        assert new is state and accepted == ()
        assert set(timings) == {'refine_total'}


def test_correct_translation_is_accepted_and_wrong_one_rejected():
    truth, current = pair(APART_DY), pair(PUSHED_DY)
    head = head_from_state(truth)
    correction = (truth.to_vector() - current.to_vector())[0, :3]
    j0, c0 = errors_of(current, head)
    assert j0 > 0.01 and c0 > 0.5

    trace = []
    vec, accepted, _ = _zero_refiner(translation=correction).refine_batch(
        current.to_vector(), _feature(0), head, trace=trace
    )
    assert accepted[0].tolist() == [True, False, False, False, False]
    j1, c1 = errors_of(TwoHandState.from_vector(vec), head)
    assert j1 < 1e-6 and c1 == 0.0
    assert [t['factor'] for t in trace] == ['translation']  # collision 0: later stages cannot help

    trace = []
    new, names, timings = _zero_refiner(translation=-correction).refine(current, _feature(0), head)
    assert names == () and new is current
    assert {'refine_mlp', 'refine_hand_model', 'refine_collision', 'refine_total'} <= set(timings)


def test_each_stage_sees_the_previous_stages_result():
    # Truth: apart, left hand turned 0.2 rad about y. Stage 1 fixes half the translation (collision
    # stays > 0); stage 2 (left_orient) then turns the left hand to the truth from THAT state.
    truth, current = pair(APART_DY), pair(PUSHED_DY)
    truth.left.global_orient = torch.tensor([0.0, 0.2, 0.0])
    head = head_from_state(truth)
    delta = (truth.to_vector() - current.to_vector())[0]
    refiner = _zero_refiner(translation=0.5 * delta[:3], left_orient=delta[3:6])
    trace = []
    vec, accepted, _ = refiner.refine_batch(current.to_vector(), _feature(1), head, trace=trace)
    assert [t['factor'] for t in trace] == list(REFINE_FACTORS)
    assert accepted[0].tolist() == [True, True, False, False, False]
    assert trace[1]['collision_before'][0] == trace[0]['collision_candidate'][0] > 0
    torch.testing.assert_close(vec[0, :3], current.to_vector()[0, :3] + 0.5 * delta[:3])
    torch.testing.assert_close(vec[0, 3:6], truth.left.global_orient)
    j_end, c_end = errors_of(TwoHandState.from_vector(vec), head)
    # The orientation stage rotates the current mesh instead of re-running MANO: same errors up to the
    # float32 rounding of the MANO output (~1e-7 m per vertex).
    assert j_end == pytest.approx(trace[1]['joint_candidate'][0], rel=1e-5, abs=1e-7)
    assert c_end == pytest.approx(trace[1]['collision_candidate'][0], rel=0, abs=1e-6)


def test_batched_refinement_verifies_each_sample_on_its_own():
    truth = pair(APART_DY)
    states = [pair(PUSHED_DY), pair(APART_DY), pair(PUSHED_DY, dx=-0.5)]  # colliding, free, beyond the gate
    vec = torch.cat([s.to_vector() for s in states])
    head = head_from_state(truth)
    head = {k: v.expand(3, *v.shape[1:]) for k, v in head.items()}
    correction = (truth.to_vector() - states[0].to_vector())[0, :3]
    out, accepted, _ = _zero_refiner(translation=correction).refine_batch(vec, _feature(2).expand(3, -1), head)
    assert accepted[:, 0].tolist() == [True, False, False] and not accepted[:, 1:].any()
    torch.testing.assert_close(out[1:], vec[1:])


def test_untrained_refinement_is_harmless():
    hm = hand_model()
    torch.manual_seed(3)
    refiner = build_refiner(FEATURE_DIM, hm)
    joint_head = JointHead(FEATURE_DIM, template=joint_template(hm)).eval()
    feature = _feature(3)
    with torch.no_grad():
        head = joint_head(feature)
    current = pair(PUSHED_DY)
    new, accepted, _ = refiner.refine(current, feature, head)
    j0, c0 = errors_of(current, head)
    j1, c1 = errors_of(new, head)
    assert j1 <= j0 and c1 <= c0
    assert (j1 < j0 and c1 < c0) == bool(accepted)
    # Gain-0.01 init: any accepted change is microscopic.
    assert torch.allclose(new.to_vector(), current.to_vector(), atol=1e-4)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    log_scale=st.floats(-4.0, 0.0),
    dy=st.floats(0.015, 0.05),
    dx=st.floats(-0.2, -0.15),
    twist=st.floats(-0.3, 0.3),
)
def test_refinement_never_raises_either_error(random_refiner, seed, log_scale, dy, dx, twist):
    # Random (gain-1) MLPs scaled by 10^log_scale propose arbitrary candidates; verification must keep
    # every accepted stage below the previous errors, and the result below the start.
    torch.manual_seed(seed)
    with torch.no_grad():
        for mlp in random_refiner.mlps.values():
            torch.nn.init.xavier_uniform_(mlp.net[-1].weight, gain=10.0**log_scale)
    current = pair(dy, dx=dx, right_orient=(0.0, 0.0, twist))
    head = head_from_state(pair(APART_DY, right_orient=(0.0, 0.0, -twist)))
    trace = []
    vec, accepted, _ = random_refiner.refine_batch(current.to_vector(), _feature(seed), head, trace=trace)
    for step in trace:
        ok = step['accepted']
        assert np.all(step['joint_candidate'][ok] < step['joint_before'][ok])
        assert np.all(step['collision_candidate'][ok] < step['collision_before'][ok])
    j0, c0 = errors_of(current, head)
    j1, c1 = errors_of(TwoHandState.from_vector(vec), head)
    assert j1 <= j0 + 1e-9 and c1 <= c0 + 1e-9
    if accepted.any():
        assert j1 < j0 and c1 < c0
    else:
        torch.testing.assert_close(vec, current.to_vector())


def test_refiner_state_dict_holds_only_the_mlps():
    refiner = build_refiner(FEATURE_DIM, hand_model())
    keys = refiner.state_dict().keys()
    assert keys and all(k.startswith('mlps.') for k in keys)
    assert {k.split('.')[1] for k in keys} == set(REFINE_FACTORS)
    widths = [refiner.mlps['fingers'].net[i].out_features for i in (0, 2, 4, 6)]
    assert widths == [512, 256, 128, 90] and refiner.mlps['fingers'].net[0].in_features == FEATURE_DIM + PARAM_DIM


def test_refine_rejects_bad_inputs():
    refiner = _zero_refiner()
    head = {'joints_3d': torch.zeros(1, 2, 21, 3)}
    with pytest.raises(TypeError, match='TwoHandState'):
        refiner.refine({'left': None}, _feature(0), head)
    with pytest.raises(ValueError, match=r'image_feature must be \(1, 64\)'):
        refiner.refine(pair(PUSHED_DY), _feature(0, dim=32), head)
    with pytest.raises(ValueError, match='joints_3d must have shape'):
        refiner.refine(pair(PUSHED_DY), _feature(0), {'joints_3d': torch.zeros(1, 2, 16, 3)})
    with pytest.raises(ValueError, match='needs a hand model'):
        Refiner(FEATURE_DIM, None)


def test_joint_head_outputs_and_trainability():
    hm = hand_model()
    template = joint_template(hm)
    torch.manual_seed(4)
    head = JointHead(FEATURE_DIM, template=template)
    feature = torch.randn(3, FEATURE_DIM)
    out = head(feature)
    assert out['joints_3d'].shape == (3, 2, 21, 3) and out['joints_2d'].shape == (3, 2, 21, 2)
    assert out['relative_translation'].shape == (3, 3)
    assert not out['joints_3d'][:, :, 0].any()  # wrist-relative by construction
    # Untrained: the template hand (within 1 cm), i.e. the model's mean-pose joints.
    assert (out['joints_3d'] - template).abs().max() < 0.01
    with torch.no_grad():
        m = forward_hands(hm, pair(APART_DY).to_vector())
    torch.testing.assert_close(template[1], (m['right'][1] - m['right'][1][:, :1])[0], atol=1e-6, rtol=0)
    # Per-side parameters change the answer; every parameter gets a gradient.
    side_params = torch.randn(3, 2, 109)
    out2 = head(feature, side_params)
    assert not torch.allclose(out2['joints_3d'], out['joints_3d'])
    loss = sum(v.square().sum() for v in out2.values())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert 'template' not in head.state_dict()
    with pytest.raises(ValueError, match=r'image_feature must be \(B, 64\)'):
        head(torch.zeros(3, 10))
    with pytest.raises(ValueError, match='side_params'):
        head(feature, torch.zeros(3, 2, 100))


def test_stages_left_out_are_never_run_nor_accepted(monkeypatch):
    # The same fix as test_each_stage_sees_the_previous_stages_result, with left_orient switched off:
    # the half translation is still accepted, the left_orient stage neither runs nor counts.
    truth, current = pair(APART_DY), pair(PUSHED_DY)
    truth.left.global_orient = torch.tensor([0.0, 0.2, 0.0])
    head = head_from_state(truth)
    delta = (truth.to_vector() - current.to_vector())[0]
    refiner = _zero_refiner(translation=0.5 * delta[:3], left_orient=delta[3:6])
    refiner.set_stages(['shape', 'translation', 'fingers'])  # any order in, factor order out
    assert refiner.stages == ('translation', 'fingers', 'shape')
    called = []
    monkeypatch.setattr(refiner.mlps['left_orient'], 'forward', lambda x: called.append(x))
    trace = []
    vec, accepted, _ = refiner.refine_batch(current.to_vector(), _feature(1), head, trace=trace)
    assert [t['factor'] for t in trace] == ['translation', 'fingers', 'shape'] and not called
    assert accepted[0].tolist() == [True, False, False, False, False]
    torch.testing.assert_close(vec[0, 3:6], current.to_vector()[0, 3:6])
    with pytest.raises(ValueError, match='unknown refinement stages'):
        refiner.set_stages(['translation', 'camera'])
    assert refiner.stages == ('translation', 'fingers', 'shape')  # a refused change changes nothing


@pytest.mark.parametrize(
    ('spec', 'rates', 'expected'),
    [
        ('all', {'shape': 0.0}, REFINE_FACTORS),
        ('auto', None, REFINE_FACTORS),  # no record (untrained weights): every stage
        ('auto', {}, REFINE_FACTORS),
        (
            'auto',
            {'translation': 0.3, 'left_orient': 0.3, 'right_orient': 0.1, 'fingers': 0.07, 'shape': 0.0},
            REFINE_FACTORS[:4],
        ),
        ('auto', {'fingers': 0.0}, ('translation', 'left_orient', 'right_orient', 'shape')),  # unrecorded: kept
        (' shape, translation ', None, ('translation', 'shape')),
    ],
)
def test_resolve_stages(spec, rates, expected):
    from hand_recon_ros.refine import resolve_stages

    assert resolve_stages(spec, rates) == expected


@pytest.mark.parametrize('spec', ['', 'none', 'translation,camera', ',', 'Auto'])
def test_resolve_stages_refuses_unknown_names(spec):
    from hand_recon_ros.refine import resolve_stages

    with pytest.raises(ValueError, match="'auto', 'all' or comma-separated"):
        resolve_stages(spec)
