"""Placing model-frame hands in the camera frame: weak camera (s, tx, ty) + real intrinsics -> metric translation.

One function for the runtime pipeline and the evaluation, so both place a hand the same way: the hand is made
root-relative at the middle MCP (ACR's alignment), its weak-perspective 2D joints are mapped back to the original
image, and the translation is the least-squares fit of the 3D joints to those pixels (``solve_translations``), or
the weak camera's own depth (``weak_to_translation``) when asked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hand_recon_ros.conventions import ROOT_MIDDLE_MCP

from .camera import (
    LetterboxTransform,
    project_points,
    solve_translations,
    weak_perspective_project,
    weak_to_translation,
)

__all__ = ['MIN_WEAK_SCALE', 'PlacedHand', 'place_hands']

LOG = logging.getLogger('hand_recon_ros.geometry.placement')
MIN_WEAK_SCALE = 1e-3  # a weak camera scale at or below this is degenerate (the hand is dropped)


@dataclass
class PlacedHand:
    joints: np.ndarray  # (21, 3) camera frame, metres
    vertices: np.ndarray  # (V, 3) camera frame, metres
    keypoints_2d: np.ndarray  # (21, 2) projection of ``joints`` with K, original image pixels
    translation: np.ndarray  # (3,) camera-frame position of the middle MCP


def place_hands(
    joints: Sequence[np.ndarray],
    vertices: Sequence[np.ndarray],
    cams: Sequence[Sequence[float]],
    K: np.ndarray,
    transform: LetterboxTransform,
    weak_perspective: bool = False,
) -> list[PlacedHand | None]:
    """Per hand (model-frame ``joints`` (21, 3), ``vertices`` (V, 3), weak camera ``cams`` (s, tx, ty) in the
    network's normalised input frame) the camera-frame hand, or None where it cannot be placed: a non-finite or
    degenerate camera (s <= ``MIN_WEAK_SCALE``), no translation that puts every joint in front of the camera, or
    a projection that is not finite. All hands are solved in one vectorised call."""
    result: list[PlacedHand | None] = [None] * len(cams)
    rooted = []  # (index, cam, joints_rel, verts_rel, weak 2D keypoints) of hands with a usable camera
    for i, cam in enumerate(cams):
        s, tx, ty = (float(v) for v in cam)
        if not (math.isfinite(s) and math.isfinite(tx) and math.isfinite(ty) and s > MIN_WEAK_SCALE):
            LOG.debug('not placing hand %d: degenerate weak camera %s', i, (s, tx, ty))
            continue
        root = joints[i][ROOT_MIDDLE_MCP].copy()
        joints_rel = joints[i] - root
        rooted.append(
            (
                i,
                (s, tx, ty),
                joints_rel,
                vertices[i] - root,
                transform.normalized_to_original(weak_perspective_project(joints_rel, s, tx, ty)),
            )
        )
    if not rooted:
        return result
    translations: list[np.ndarray | None]
    if weak_perspective:
        translations = [weak_to_translation(s, tx, ty, K, transform) for _, (s, tx, ty), *_ in rooted]
    else:  # s is finite and > 0 here, checked above
        t_all, ok = solve_translations(np.stack([r[2] for r in rooted]), np.stack([r[4] for r in rooted]), K)
        translations = [t if good else None for t, good in zip(t_all, ok)]
    for (i, _, joints_rel, verts_rel, _), t_cam in zip(rooted, translations):
        if t_cam is None:
            LOG.debug('not placing hand %d: no translation puts it in front of the camera', i)
            continue
        joints_cam = joints_rel + t_cam
        keypoints = project_points(joints_cam, K)
        if not np.isfinite(keypoints).all():
            continue
        result[i] = PlacedHand(
            joints=joints_cam, vertices=verts_rel + t_cam, keypoints_2d=keypoints, translation=np.asarray(t_cam)
        )
    return result
