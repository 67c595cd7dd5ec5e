"""Found hands redrawn from the crop stage: the hand model fitted to the landmark network's 2D keypoints and 3D.

ACR decides where the hands are, how many and which side (the palm detector may add one it missed); this
replaces each hand's pose, shape and placement by a fit of the hand model (``hand_model/fit.py``) to the crop's 21
keypoints (pixels, with the camera's K) and its world landmarks (root-relative metres, scale free), so the published
3D, mesh and 2D stay one hand (the 2D is the projection of the fitted joints). The side is the crop's where it
reads a hand clearly (the landmark network sees each hand at 224 px, ACR's side maps at 24 x 24), unless that would
give both hands of a pair one side.
A crop whose presence is under ``min_presence`` drops the hand unless a palm detection lies on it; a fit that
fails, or a crop that read the other hand of an overlapping pair, keeps ACR's hand. With ``new_hands``, a palm
detection no found hand took becomes a hand of its own where its crop reads one clearly, of a side still free. The
hands redrawn are given to the stage to follow into the next frame (``CropStage.tracking``); with ``new_hands``, one
the next frame's found hands do not overlap but its crop still reads is carried on as a hand of its own. The pipeline runs it
when ``landmarks`` is on (node parameter ``landmarks.enabled``; README "Real images").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from hand_recon_ros import conventions
from hand_recon_ros.detection_metrics import box_iou, keypoint_box
from hand_recon_ros.geometry import rotations
from hand_recon_ros.geometry.camera import project_points
from hand_recon_ros.geometry.depth_placement import depth_joints
from hand_recon_ros.hand_model.fit import FitConfig, FitStart, fit_keypoints
from hand_recon_ros.hand_model.model import HandModel
from hand_recon_ros.landmarks.crop_stage import NO_HAND, CropStage, LandmarkAnswer
from hand_recon_ros.results import HandResult

__all__ = ['LANDMARK_FACTOR', 'MIN_PRESENCE', 'crop_sides', 'landmark_hands', 'same_hand_answers']

LANDMARK_FACTOR = 'landmarks'  # in HandResult.refined_factors: the hand was redrawn from the crop stage
PER_HAND = ('joints', 'vertices', 'global_orient', 'hand_pose', 'betas')  # the fit's outputs a hand needs
# the crop's 2D is its best output; its 3D mostly settles the pose's depth order. Weighting the 3D a quarter keeps
# the published (projected) keypoints nearer the crop's: PCK of the projection vs the teacher on rolled photos
# 0.963 -> 0.975 (the crop's own 2D: 0.982)
# one LM stage (3D and 2D together from the palm alignment): 14.2 -> 9.5 iterations per hand on 61 MediaPipe hands
# of the benchmark photos, projections as close to the keypoints (PCK@0.05 0.886 with two stages, 0.884 with one)
LANDMARK_FIT = FitConfig(num_threads=1, weight_3d=0.25, prefit_3d=False)
# a found hand whose crop the network does not call a hand this surely, with no palm detection on it, is dropped: ACR
# false hands on faces and forearms (annotated photos: precision 0.59 -> 0.86 at the same recall; upright validation
# 0.94 -> 0.95 at recall 0.996 -> 0.992). The stand-in's synthetic renders read as no hand at all (presence < 0.05):
# the filter removes most of them, which is why it is a setting (node parameter landmarks.min_presence)
MIN_PRESENCE = 0.5
# a fit started from the previous frame's that ends this far from the crop's keypoints (mean, share of the crop's
# side) is done again from scratch: from-scratch fits of the benchmark's real hands end at ~0.018
WARM_MISS = 0.04
SIDE_PRESENCE = 0.5  # a crop's side counts only where the crop holds a hand this surely
SIDE_MARGIN = 0.25  # ... and its right-hand probability is this far from 0.5


def _redrawn(hand: HandResult, fit: dict[str, np.ndarray], K: np.ndarray, side: str, side_score: float) -> HandResult:
    joints = np.asarray(fit['joints'], np.float64)
    orient = np.asarray(fit['global_orient'], np.float64).reshape(3)
    keypoints = project_points(joints, K).astype(np.float32)
    import torch

    quat = rotations.axis_angle_to_quaternion(torch.as_tensor(orient, dtype=torch.float32)[None])[0].numpy()
    return dataclasses.replace(
        hand,
        handedness=side,
        handedness_score=float(side_score),
        joints_3d=joints.astype(np.float32),
        keypoints_2d=keypoints,
        wrist_position=joints[0].astype(np.float32),
        wrist_orientation=quat.astype(np.float32),
        vertices=None if fit['vertices'] is None else np.asarray(fit['vertices'], np.float32),
        mano_pose=np.concatenate([orient, np.asarray(fit['hand_pose'], np.float64).reshape(45)]).astype(np.float32),
        mano_shape=np.asarray(fit['betas'], np.float32).reshape(10),
        center_2d=keypoints[conventions.ROOT_MIDDLE_MCP].copy(),
        refined_factors=(*hand.refined_factors, LANDMARK_FACTOR),
    )


def same_hand_answers(
    hands: Sequence[HandResult], answers: Sequence[LandmarkAnswer], max_overlap: float = 0.5
) -> set[int]:
    """Indices of hands whose crop answer landed on another hand's answer (keypoint boxes overlapping more than
    ``max_overlap``): two crops of an overlapping pair that both read the front hand. Of such a pair, a crop not
    placed on a palm detection lost to one that was; otherwise the hand whose answer moved farther from its own
    keypoints (relative to their size) is the one that was misread."""
    boxes = [keypoint_box(a.keypoints_2d) for a in answers]
    misread: set[int] = set()
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            if box_iou(boxes[i], boxes[j]) <= max_overlap:
                continue

            def moved(k: int) -> float:
                before = keypoint_box(hands[k].keypoints_2d)
                size = max(float(np.max(before[2:] - before[:2])), 1.0)
                shift = (boxes[k][:2] + boxes[k][2:] - before[:2] - before[2:]) / 2
                return float(np.linalg.norm(shift)) / size

            # a crop placed on a detected palm read that palm; one that followed last frame's hand read that hand
            anchored_i, anchored_j = (
                answers[i].from_palm or answers[i].tracked,
                answers[j].from_palm or answers[j].tracked,
            )
            if anchored_i != anchored_j:
                misread.add(j if anchored_i else i)
            else:
                misread.add(i if moved(i) > moved(j) else j)
    return misread


def _clear_side(answer: LandmarkAnswer) -> tuple[str, float] | None:
    """(side, P(side)) where the crop holds a hand surely and tells its side clearly, else None."""
    if answer.presence < SIDE_PRESENCE or abs(answer.right_probability - 0.5) < SIDE_MARGIN:
        return None
    if answer.right_probability >= 0.5:
        return 'right', answer.right_probability
    return 'left', 1.0 - answer.right_probability


def _carried_side_and_score(stage: CropStage, answer: LandmarkAnswer) -> tuple[tuple[str, float] | None, float]:
    """((side, P(side)), score) a carried hand keeps from the frame it was published in (its crop's own clear side
    and score 1 when the stage kept no note)."""
    note = stage.note(answer)
    if isinstance(note, tuple) and len(note) == 4:
        side, _, score, side_score = note
        return (str(side), float(side_score)), float(score)
    return _clear_side(answer), 1.0


def _palm_hand(answer: LandmarkAnswer, side: str, palm_score: float) -> HandResult:
    """A placeholder for a hand only the palm detector (or the previous frame, when tracking) found: its fit
    replaces every geometric field."""
    confidence = float(palm_score) * float(answer.presence)
    return HandResult(
        handedness=side,
        score=confidence,
        joints_3d=np.zeros((21, 3), np.float32),
        keypoints_2d=np.asarray(answer.keypoints_2d, np.float32),
        joint_confidence=np.full(21, confidence, np.float32),
        wrist_position=np.zeros(3, np.float32),
        wrist_orientation=np.array([0.0, 0.0, 0.0, 1.0], np.float32),
    )


def crop_sides(
    hands: Sequence[HandResult], answers: Sequence[LandmarkAnswer], usable: Sequence[int]
) -> list[tuple[str, float]]:
    """(side, P(that side)) per hand: the crop's where crop ``usable[i]`` reads a hand clearly, else ACR's.

    Where ACR found a left and a right hand, the pair stays a left and a right: crops that call both the same side
    most likely read one hand of an overlapping pair (ACR's sides stay); where only one crop reads its hand
    clearly, the other hand takes the other side (on a close-up ACR can see one hand twice, and the crop that
    reads it well decides)."""
    acr = [(h.handedness, float(h.handedness_score)) for h in hands]
    clear: dict[int, tuple[str, float]] = {}
    for i in usable:
        read = _clear_side(answers[i])
        if read is not None:
            clear[i] = read
    if len(hands) == 2 and acr[0][0] != acr[1][0] and clear:
        if len(clear) == 2:
            return [clear[0], clear[1]] if clear[0][0] != clear[1][0] else acr
        k, (side, p) = next(iter(clear.items()))
        sides = [acr[0], acr[1]]
        sides[k] = (side, p)
        sides[1 - k] = ('left' if side == 'right' else 'right', p)
        return sides
    return [clear.get(i, acr[i]) for i in range(len(hands))]


def landmark_hands(
    image_bgr: np.ndarray,
    hands: Sequence[HandResult],
    K: np.ndarray,
    stage: CropStage,
    hand_model: HandModel,
    min_presence: float = MIN_PRESENCE,
    fit_config: FitConfig | None = None,
    sides_from_crops: bool = True,
    new_hands: bool = False,
    depth_m: np.ndarray | None = None,
) -> tuple[list[HandResult], list[LandmarkAnswer]]:
    """-> (the hands, redrawn where the fit worked, in their input order less the dropped ones, then any new ones;
    the crop answers, one per input hand). ``K``: the intrinsics of ``image_bgr`` (the image the hands' pixels refer
    to). ``sides_from_crops``: a redrawn hand takes the crop's side (``crop_sides``); False keeps ACR's.
    ``new_hands``: a palm detection no hand took (``CropStage.unused_palms``) whose crop reads a hand clearly, of a
    side no kept hand has, becomes a hand of its own (ACR at 24 x 24 misses small hands the palm detector finds); a
    found hand whose crops saw no hand at all (presence < ``NO_HAND``) gives its side up to such a hand and is
    dropped. ``depth_m``: a depth image (metres) registered to ``image_bgr``: each fit takes the hand's 3D from it
    where it reads the hand (``depth_placement.depth_joints``) instead of the crop network's."""
    if not 0.0 <= min_presence <= 1.0:
        raise ValueError(f'min_presence must be in [0, 1], got {min_presence}')
    hands = list(hands)
    answers = stage.run(image_bgr, [np.asarray(h.keypoints_2d, np.float64) for h in hands], free_palms=new_hands)
    given = len(hands)
    crop_answers = answers
    # a palm detection on the hand is evidence enough to keep it (a partly hidden hand its crop reads unsurely)
    kept = [i for i, a in enumerate(answers) if a.presence >= min_presence or a.from_palm]
    misread = same_hand_answers(hands, answers)  # these keep ACR's hand
    config = fit_config or LANDMARK_FIT
    # a crop that found no hand (a false hand, or one no crop could read) leaves ACR's hand and costs no fit
    usable = [i for i in kept if i not in misread and answers[i].presence >= NO_HAND]
    if sides_from_crops:
        sides = crop_sides(hands, answers, usable)
    else:
        sides = [(h.handedness, float(h.handedness_score)) for h in hands]
    redrawn: dict[int, HandResult] = {}
    carried = list(stage.carried)
    if new_hands and (carried or stage.unused_palms) and hand_model.pose_dim == 45:
        # a found hand in whose crops the network saw no hand at all (a face, a bright patch) yields its side
        unseen = {i for i in kept if answers[i].presence < NO_HAND}
        taken = {sides[i][0] for i in kept if i not in unseen}
        # hands the previous frame published that no found hand overlaps, still read where they were (tracking),
        # keep their side and score; then palms no hand took whose crops read a hand clearly
        offers = [(answer, *_carried_side_and_score(stage, answer)) for answer in carried]
        offered_sides = {side_p[0] for _, side_p, _ in offers if side_p is not None}
        if stage.unused_palms and len(taken | offered_sides) < 2:
            read = stage.read_palms(image_bgr, stage.unused_palms)
            offers += [(answer, _clear_side(answer), palm.score) for palm, answer in zip(stage.unused_palms, read)]
        for answer, side_p, score in offers:
            box = keypoint_box(answer.keypoints_2d)
            if side_p is None or side_p[0] in taken or answer.presence < min_presence:
                continue
            read_by = [i for i in kept if i not in unseen] + list(range(given, len(hands)))
            if any(box_iou(box, keypoint_box(answers[i].keypoints_2d)) > 0.5 for i in read_by):
                continue  # a hand already read under another crop
            taken.add(side_p[0])
            kept = [i for i in kept if not (i in unseen and sides[i][0] == side_p[0])]
            hands.append(_palm_hand(answer, side_p[0], score))
            answers = [*answers, answer]
            sides.append(side_p)
            usable.append(len(hands) - 1)
    starts: dict[int, FitStart] = {}
    if hand_model.pose_dim == 45:  # a PCA-pose model has no 45-angle hand pose to publish
        for side in conventions.SIDES:
            rows = [i for i in usable if sides[i][0] == side]
            fitted = _fit_side(
                hand_model, side, rows, answers, K, config, stage, _measured(answers, rows, K, image_bgr, depth_m)
            )
            for i, (one, start) in fitted.items():
                candidate = _redrawn(hands[i], one, K, side, sides[i][1])
                try:
                    candidate.validate()
                except ValueError:
                    continue
                redrawn[i], starts[i] = candidate, start
    new = [redrawn[i] for i in range(given, len(hands)) if i in redrawn]  # a new hand exists only as a fit
    # the hands drawn from their crops are the ones to follow into the next frame (CropStage.tracking), each with
    # its fit to start the next one from
    followed = [i for i in [*kept, *range(given, len(hands))] if i in redrawn]
    notes = [(sides[i][0], starts[i], float(redrawn[i].score), sides[i][1]) for i in followed]
    stage.remember([answers[i] for i in followed], image_bgr.shape[:2], notes)
    return [redrawn.get(i, hands[i]) for i in kept] + new, crop_answers


def _measured(
    answers: Sequence[LandmarkAnswer], rows: list[int], K: np.ndarray, image_bgr: np.ndarray, depth_m: np.ndarray | None
) -> dict[int, np.ndarray]:
    """Row -> the hand's 3D joints as the depth image measures them (depth_placement.depth_joints), where it does."""
    if depth_m is None:
        return {}
    out = {}
    for i in rows:
        joints = depth_joints(answers[i].world_landmarks, answers[i].keypoints_2d, K, depth_m, image_bgr.shape[:2])
        if joints is not None:
            out[i] = joints
    return out


def _fit_side(
    hand_model: HandModel,
    side: str,
    rows: list[int],
    answers: Sequence[LandmarkAnswer],
    K: np.ndarray,
    config: FitConfig,
    stage: CropStage,
    measured: dict[int, np.ndarray] | None = None,
) -> dict[int, tuple[dict, FitStart]]:
    """Row -> (the fit's per-hand outputs, the start that continues it) for the answers ``rows`` of one side. A hand
    whose crop followed a hand of the previous frame of this side starts from that hand's fit; where that ends
    farther from the keypoints than ``WARM_MISS`` of the crop, it is fitted again from scratch."""

    def fit(picked: list[int], start: FitStart | None) -> dict[int, tuple[dict, FitStart]]:
        if not picked:
            return {}
        keypoints = np.stack([answers[i].keypoints_2d for i in picked])
        world = np.stack([(measured or {}).get(i, answers[i].world_landmarks) for i in picked])
        try:
            result = fit_keypoints(hand_model, side, keypoints, K, world_joints=world, config=config, start=start)
        except ValueError:  # a degenerate crop answer (all points on one spot): keep ACR's hands
            return {}
        out = {}
        for j, i in enumerate(picked):
            one = {
                k: result[k] if result[k] is None or np.ndim(result[k]) == 0 else np.asarray(result[k])[j]
                for k in PER_HAND
            }
            one['miss'] = float(np.nanmean(result.residual_2d[j])) / max(answers[i].crop_side_px, 1.0)
            out[i] = (one, FitStart.of(result, [j]))
        return out

    warm_starts = {}
    for i in rows:
        note = stage.note(answers[i])
        if isinstance(note, tuple) and note[0] == side and isinstance(note[1], FitStart):
            warm_starts[i] = note[1]
    warm = [i for i in rows if i in warm_starts]
    start = None
    if warm:
        parts = [warm_starts[i] for i in warm]
        start = FitStart(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ('global_orient', 'coeffs', 'betas'))
        )
    fitted = fit(warm, start)
    missed = [i for i in warm if i in fitted and fitted[i][0]['miss'] > WARM_MISS]
    for i, (one, next_start) in fit([i for i in rows if i not in fitted or i in missed], None).items():
        if i not in fitted or one['miss'] < fitted[i][0]['miss']:  # from scratch, or the closer of the two
            fitted[i] = (one, next_start)
    return fitted
