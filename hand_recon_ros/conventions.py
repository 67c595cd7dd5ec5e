"""Hand conventions in one place: joint orders, parents, mappings, units.

Units inside the code are metres. The published 21-joint order is the common OpenPose/MANO-21 order:
wrist, then thumb, index, middle, ring, pinky, each from base to tip.
"""

import numpy as np
from numpy.typing import ArrayLike

NUM_JOINTS = 21
NUM_MANO_JOINTS = 16
NUM_VERTICES = 778
NUM_FACES = 1538

JOINT_NAMES = (
    'wrist',
    'thumb_mcp',
    'thumb_pip',
    'thumb_dip',
    'thumb_tip',
    'index_mcp',
    'index_pip',
    'index_dip',
    'index_tip',
    'middle_mcp',
    'middle_pip',
    'middle_dip',
    'middle_tip',
    'ring_mcp',
    'ring_pip',
    'ring_dip',
    'ring_tip',
    'pinky_mcp',
    'pinky_pip',
    'pinky_dip',
    'pinky_tip',
)
# Parent of each of the 21 joints in the 21-joint order (-1 for the wrist); bones = (parent, child).
JOINT_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
BONES = tuple((p, c) for c, p in enumerate(JOINT_PARENTS) if p >= 0)

# MANO's 16 kinematic joints: 0 wrist; 1-3 index; 4-6 middle; 7-9 pinky; 10-12 ring; 13-15 thumb.
MANO_JOINT_NAMES = (
    'wrist',
    'index1',
    'index2',
    'index3',
    'middle1',
    'middle2',
    'middle3',
    'pinky1',
    'pinky2',
    'pinky3',
    'ring1',
    'ring2',
    'ring3',
    'thumb1',
    'thumb2',
    'thumb3',
)
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingertip vertices (thumb, index, middle, ring, pinky), appended as joints 16..20 before re-ordering.
MANO_TIP_VERTICES_RIGHT = (745, 317, 444, 556, 673)
MANO_TIP_VERTICES_LEFT = (745, 317, 445, 556, 673)
# 21-joint order = rows of [16 MANO joints; 5 tips] taken in this order.
MANO16_TIPS_TO_21 = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

# InterHand2.6M per-hand order: thumb tip..base, index, middle, ring, pinky (tip..base), wrist last.
# INTERHAND_TO_21[i] = index in the InterHand2.6M per-hand order of our joint i.
INTERHAND_TO_21 = (20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16)

# Root choices: the wrist for published poses and IHMR metrics; middle MCP (ACR/IntagHand protocol).
ROOT_WRIST = 0
ROOT_MIDDLE_MCP = 9

SIDES = ('left', 'right')


def interhand_to_21(joints_ih: ArrayLike) -> np.ndarray:
    """Re-order (..., 21, D) joints from InterHand2.6M per-hand order to the 21-joint order."""
    return np.asarray(joints_ih)[..., INTERHAND_TO_21, :]


def mano16_tips_to_21(joints16: ArrayLike, tips5: ArrayLike) -> np.ndarray:
    """(..., 16, 3) MANO joints + (..., 5, 3) tip vertices -> (..., 21, 3) in the 21-joint order."""
    j = np.concatenate([np.asarray(joints16), np.asarray(tips5)], axis=-2)
    return j[..., MANO16_TIPS_TO_21, :]
