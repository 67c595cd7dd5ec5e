"""IHMR-OPT on constructed colliding stand-in pairs, its selection rule, finger regulariser, projection."""

import numpy as np
import pytest
import torch

from hand_recon_ros.geometry.camera import LetterboxTransform, project_points
from hand_recon_ros.hand_model.penetration import penetration_metrics
from hand_recon_ros.refine.factors import TwoHandState, forward_hands
from hand_recon_ros.refine.optimize import CameraProjection, OptConfig, finger_twist_loss, optimize_state

from test_refine_support import (
    APART_DY,
    PUSHED_DY,
    errors_of,
    hand_model,
    head_from_state,
    pair,
    single_torch_thread,  # noqa: F401  (autouse fixture)
)

FAST = OptConfig(steps=12, snapshot_every=2)
K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])


def _ave_max_p(state):
    hm = hand_model()
    with torch.no_grad():
        m = forward_hands(hm, state.to_vector())
    wl = hm.watertight_vertices('left', m['left'][0][0])
    wr = hm.watertight_vertices('right', m['right'][0][0])
    return penetration_metrics(
        wl, hm.watertight_faces('left'), wr, hm.watertight_faces('right'), n_query_a=778, n_query_b=778
    )


def _camera_and_2d(truth):
    letterbox = LetterboxTransform(480, 640, 256)
    camera = CameraProjection(K, letterbox)
    with torch.no_grad():
        m = forward_hands(hand_model(), truth.to_vector())
    joints_2d = torch.stack([camera(m['left'][1]), camera(m['right'][1])], dim=1)
    return camera, joints_2d


@pytest.mark.parametrize('case', ['pushed', 'pushed_and_turned', 'pushed_sideways_with_camera'])
def test_opt_reduces_penetration_without_raising_joint_error(case):
    truth = pair(APART_DY)
    camera = None
    if case == 'pushed':
        current = pair(PUSHED_DY)
    elif case == 'pushed_and_turned':
        current = pair(PUSHED_DY + 0.005, right_orient=(0.0, 0.0, 0.15))
    else:
        current = pair(PUSHED_DY, dx=-0.19, dz=0.01)
    head = head_from_state(truth)
    if case.endswith('with_camera'):
        camera, head['joints_2d'] = _camera_and_2d(truth)
    before = _ave_max_p(current)
    j0, c0 = errors_of(current, head)
    assert before['ave_p_mm'] > 0.1 and c0 > 0.3
    new, accepted, info = optimize_state(current, head, hand_model(), FAST, camera=camera)
    after = _ave_max_p(new)
    j1, c1 = errors_of(new, head)
    assert j1 <= j0 and 'translation' in accepted
    assert c1 < 0.2 * c0 and after['ave_p_mm'] < 0.2 * before['ave_p_mm']
    assert after['max_p_mm'] < before['max_p_mm']
    assert info['joint_error_end'][0] == pytest.approx(j1, abs=1e-6)
    assert info['collision_end'][0] == pytest.approx(c1, abs=1e-9)
    assert set(info['timings_ms']) == {'translation', 'orient', 'fingers', 'shape'}


def test_opt_never_trades_joint_accuracy_for_less_collision():
    # The joint head agrees with the colliding state: any move raises the joint error, so nothing is kept.
    current = pair(PUSHED_DY)
    head = head_from_state(current)
    new, accepted, info = optimize_state(current, head, hand_model(), OptConfig(steps=4, snapshot_every=1))
    assert accepted == ()
    torch.testing.assert_close(new.to_vector(), current.to_vector())
    assert all((choice == 0).all() for choice in info['selected_snapshot'].values())


def test_opt_leaves_single_and_distant_hands_alone():
    current = pair(PUSHED_DY)
    head = head_from_state(pair(APART_DY))
    single = TwoHandState(left=current.left)
    assert optimize_state(single, head, hand_model(), FAST) == (single, (), {})
    far = pair(PUSHED_DY, dx=-0.5)
    assert optimize_state(far, head, hand_model(), FAST, gate_m=0.3) == (far, (), {})


def test_finger_twist_loss_values():
    planar = np.array([[0, 0, 0], [0.03, 0, 0], [0.05, 0.01, 0], [0.06, 0.02, 0]])
    zigzag = planar.copy()
    zigzag[3] = zigzag[2] + [0.01, -0.01, 0]
    twisted = planar.copy()
    twisted[3] = twisted[2] + [0.01, 0.01, 0.005]

    def hand(finger):
        joints = np.zeros((21, 3))
        for f in range(5):
            joints[1 + 4 * f : 5 + 4 * f] = finger + [0, 0, 0.02 * f]
        return joints

    joints = torch.tensor(np.stack([hand(planar), hand(zigzag), hand(twisted)]))
    # planar + same bending: 0; zigzag: -(n12 . n23) = 9e-8 per finger; twisted: |b3 . n12| = 1.5e-6.
    torch.testing.assert_close(
        finger_twist_loss(joints), torch.tensor([0.0, 5 * 9e-8, 5 * 1.5e-6], dtype=torch.float64), atol=1e-12, rtol=1e-6
    )


def test_camera_projection_matches_the_pipeline_camera():
    letterbox = LetterboxTransform(480, 640, 256)
    points = torch.tensor([[[0.05, -0.02, 0.5], [-0.1, 0.08, 0.7], [0.0, 0.0, 1.2]]], dtype=torch.float64)
    expected = letterbox.original_to_normalized(project_points(points.numpy(), K))
    np.testing.assert_allclose(CameraProjection(K, letterbox)(points).numpy(), expected, atol=1e-12)


def test_opt_config_is_checked():
    with pytest.raises(ValueError, match='steps'):
        OptConfig(steps=0)
    with pytest.raises(TypeError, match='TwoHandState'):
        optimize_state('state', {}, hand_model())
