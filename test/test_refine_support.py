"""Shared scenes for the refine tests (no tests here): stand-in hands placed palm over palm, and a joint
head output built from a known 'true' state so that verification has a real target.

Stand-in geometry (mean pose): the right hand's fingers point to -x from its wrist, the left hand's to
+x; a left wrist at (-0.176, dy, 0) relative to the right wrist lays the left hand over the right one.
dy = 0.055 m: the hands are apart (zero penetration); dy = 0.03 m: ~0.8 m of summed depths.
"""

import functools

import numpy as np
import pytest
import torch

from hand_recon_ros.refine.factors import HandParams, TwoHandState, forward_hands

APART_DY = 0.055
PUSHED_DY = 0.03


@pytest.fixture(autouse=True, scope='module')
def single_torch_thread():
    """The refinement is many tiny ops: on a shared 2-core machine torch's worker threads only contend
    (measured 6x slower with 2 threads). Import this fixture into a test module to use it there."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@functools.lru_cache(maxsize=1)
def hand_model():
    from hand_recon_ros.hand_model.model import load_hand_model

    return load_hand_model()


def pair(dy, dx=-0.176, dz=0.0, right_orient=(0.0, 0.0, 0.0), left_pose=None, depth=0.5):
    right = HandParams(
        torch.tensor(right_orient, dtype=torch.float32),
        torch.zeros(45),
        torch.zeros(10),
        torch.tensor([0.0, 0.0, depth]),
    )
    left_pose = torch.zeros(45) if left_pose is None else torch.as_tensor(left_pose, dtype=torch.float32)
    left = HandParams(torch.zeros(3), left_pose, torch.zeros(10), torch.tensor([dx, dy, depth + dz]))
    return TwoHandState(left=left, right=right)


@torch.no_grad()
def head_from_state(state):
    """Joint-head output whose joints are exactly those of ``state`` (wrist-relative + wrist vector)."""
    m = forward_hands(hand_model(), state.to_vector())
    jl, jr = m['left'][1], m['right'][1]
    return {
        'joints_3d': torch.stack([jl - jl[:, :1], jr - jr[:, :1]], dim=1),
        'relative_translation': jl[:, 0] - jr[:, 0],
    }


@torch.no_grad()
def errors_of(state, head):
    """(joint error m, collision m) of a one-frame state, computed independently of the refiner."""
    from hand_recon_ros.hand_model.penetration import penetration_depths
    from hand_recon_ros.refine.verify import joint_errors

    hm = hand_model()
    m = forward_hands(hm, state.to_vector())
    joint = float(joint_errors(m['left'][1], m['right'][1], head)[0])
    wl = hm.watertight_vertices('left', m['left'][0][0])
    wr = hm.watertight_vertices('right', m['right'][0][0])
    da, db = penetration_depths(wl, hm.watertight_faces('left'), wr, hm.watertight_faces('right'))
    return joint, float(np.sum(da) + np.sum(db))
