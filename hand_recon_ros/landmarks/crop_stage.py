"""A second look at each found hand: an upright square crop around ACR's keypoints through the landmark network.

The crop follows the hand, as MediaPipe's tracking does with its own landmarks: turned so that the wrist ->
middle-finger base points up, centred on the keypoints' box in that turned frame (moved a little towards the
fingers), its side a multiple of the box's longer side. ACR's keypoints only need to put the hand inside the crop;
the landmark network then reads the fingers at 224 px, where ACR's 24x24 maps cannot.

ACR's low-resolution keypoints often get the hand's roll wrong, and the landmark network reads a hand turned
upside down or sideways poorly. So when the first crop's presence is low (under ``turn_below``), the same crop
is also tried turned by quarter turns (``turns``), and when none of those sees a hand, zoomed out (``zoom_out``:
ACR's keypoints on a close-up often cover only part of the hand); the most hand-like crop is kept. ``iterations=2`` crops
again around the first answer, the way MediaPipe's tracking does (``crop_from_landmarks``: the palm and the
fingers' first joints only, so a misread fingertip does not move the crop).

On video (``tracking``), a hand that overlaps a hand read in the previous frame (``remember``) gets its first crop
from that answer's landmarks, as MediaPipe's tracking does; where that crop reads a hand surely (presence at least
``turn_below``) it is the hand's only crop, and when every hand of the frame is followed this way the palm detector
does not run (with one hand, which leaves a side for a new hand ACR may miss, it runs every ``palm_every``-th
frame). A followed crop that loses the hand sends that hand through the still-image path. A hand of the previous
frame that no found hand overlaps (ACR missed it, or placed it far off) is still followed when the caller wants new
hands (``carried``), as MediaPipe's tracking keeps a hand its detector no longer finds, until its crop loses it.

Plain numpy / OpenCV / torch; no ROS import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from hand_recon_ros.detection_metrics import box_iou, keypoint_box
from hand_recon_ros.landmarks.mediapipe_port import INPUT_SIZE, MediaPipeLandmarkNet
from hand_recon_ros.landmarks.palm_detection import PalmDetection, PalmDetector, palm_crop

__all__ = [
    'NO_HAND',
    'CropStage',
    'LandmarkAnswer',
    'crop_affine',
    'crop_axes',
    'crop_from_keypoints',
    'crop_from_landmarks',
    'match_palms',
    'match_tracks',
    'nearest_palm',
]

NO_HAND = 0.1  # presence under which a crop answer is read as 'no hand here': not followed by another crop
WRIST, INDEX_BASE, MIDDLE_BASE, RING_BASE = 0, 5, 9, 13  # project joint order = MediaPipe's landmark order
# wrist, thumb up to its middle joint, each finger's base and first joint: the points a tracking crop follows
PALM_AND_FIRST_JOINTS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)


@dataclass(frozen=True)
class LandmarkAnswer:
    keypoints_2d: np.ndarray  # (21, 2) image pixels
    presence: float  # the network's probability that a hand is in the crop
    right_probability: float  # P(the person's right hand), for an unmirrored camera image
    world_landmarks: np.ndarray  # (21, 3) metres, the network's own 3D, x and y turned back to the image's axes
    crop_side_px: float  # side of the crop in image pixels
    turn: float = 0.0  # radians the first crop was turned from the input keypoints' 'up' (0 unless tried turned)
    from_palm: bool = False  # the first crop was a palm detection's, not one around the input keypoints
    # the crop followed the answer ``remember`` got at this index in the previous frame (``CropStage.tracking``)
    follows: int = -1

    @property
    def tracked(self) -> bool:
        return self.follows >= 0


def _checked(keypoints: np.ndarray, scale: float) -> np.ndarray:
    points = np.asarray(keypoints, np.float64)
    if points.shape != (21, 2) or not np.isfinite(points).all():
        raise ValueError(f'keypoints must be finite (21, 2) pixels, got {points.shape}')
    if scale <= 0:
        raise ValueError(f'scale must be > 0, got {scale}')
    return points


def _square_around(
    points: np.ndarray, up: np.ndarray, scale: float, shift_up: float, turn: float = 0.0
) -> tuple[np.ndarray, float, float]:
    """The square crop whose 'up' is ``up`` (turned by ``turn`` radians) around ``points``."""
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, -1.0])
    angle = float(np.arctan2(up[1], up[0])) + float(turn)
    right, down = crop_axes(angle)
    local = np.stack([points @ right, points @ down], axis=1)
    lo, hi = local.min(axis=0), local.max(axis=0)
    side = max(float(np.max(hi - lo)) * scale, 8.0)
    centre_local = (lo + hi) / 2 - np.array([0.0, shift_up * side])
    centre = centre_local[0] * right + centre_local[1] * down
    return centre, side, angle


def crop_from_keypoints(
    keypoints: np.ndarray, scale: float = 2.0, shift_up: float = 0.1, turn: float = 0.0
) -> tuple[np.ndarray, float, float]:
    """(21, 2) pixels -> (centre (2,), side in pixels, angle in radians of the crop's 'up' in the image): up from
    the wrist to the middle finger's base (turned by ``turn``), around all 21 points."""
    points = _checked(keypoints, scale)
    return _square_around(points, points[MIDDLE_BASE] - points[WRIST], scale, shift_up, turn)


def crop_from_landmarks(
    landmarks: np.ndarray, scale: float = 2.0, shift_up: float = 0.1
) -> tuple[np.ndarray, float, float]:
    """The next crop around the landmark network's own answer, as MediaPipe's tracking places it: up from the wrist
    towards the finger bases (middle blended with index and ring), around the palm and the fingers' first joints."""
    points = _checked(landmarks, scale)
    towards = ((points[INDEX_BASE] + points[RING_BASE]) / 2 + points[MIDDLE_BASE]) / 2
    return _square_around(points[list(PALM_AND_FIRST_JOINTS)], towards - points[WRIST], scale, shift_up)


def crop_axes(angle: float) -> np.ndarray:
    """(2, 2): rows = the image directions of the crop's +x and +y axes (the crop's up = ``angle``)."""
    down = -np.array([np.cos(angle), np.sin(angle)])
    right = np.array([down[1], -down[0]])  # the crop's +x: down turned a quarter back
    return np.stack([right, down])


def crop_affine(centre: np.ndarray, side: float, angle: float, size: int = INPUT_SIZE) -> np.ndarray:
    """2x3 affine taking image pixels to crop pixels (the crop's up = the direction ``angle`` in the image)."""
    right, down = crop_axes(angle)
    half = side / 2
    corners_image = np.asarray(
        [centre - half * right - half * down, centre + half * right - half * down, centre - half * right + half * down],
        np.float32,
    )
    corners_crop = np.asarray([[0, 0], [size, 0], [0, size]], np.float32)
    return np.asarray(cv2.getAffineTransform(corners_image, corners_crop), np.float64)


def match_palms(keypoints: list[np.ndarray], palms: list[PalmDetection], reach: float = 0.25) -> list[tuple[int, int]]:
    """(hand index, palm index) pairs, one palm per hand: a palm whose box centre lies inside the hand's keypoint box
    (grown by ``reach`` of its size on every side), nearest to the keypoints' centroid first (in pixels: a
    relative distance would favour the bigger box). On two overlapping hands both boxes can hold both palms: the
    nearer pairing wins."""
    candidates = []
    for i, points in enumerate(keypoints):
        lo, hi = points.min(axis=0), points.max(axis=0)
        size = max(float(np.max(hi - lo)), 1.0)
        centroid = points.mean(axis=0)
        for j, palm in enumerate(palms):
            centre = (palm.box[:2] + palm.box[2:]) / 2
            if np.all(centre >= lo - reach * size) and np.all(centre <= hi + reach * size):
                candidates.append((float(np.linalg.norm(centre - centroid)), i, j))
    return _one_to_one(candidates)


def _one_to_one(candidates: list[tuple[float, int, int]]) -> list[tuple[int, int]]:
    """(cost, i, j) candidates -> (i, j) pairs, each i and each j at most once, the cheapest first."""
    pairs, used_i, used_j = [], set(), set()
    for _, i, j in sorted(candidates):
        if i not in used_i and j not in used_j:
            pairs.append((i, j))
            used_i.add(i)
            used_j.add(j)
    return sorted(pairs)


def match_tracks(
    keypoints: list[np.ndarray], previous: list[np.ndarray], min_iou: float = 0.2
) -> list[tuple[int, int]]:
    """(hand index, previous answer index) pairs, one each: keypoint boxes overlapping by at least ``min_iou``,
    the most overlapping pairs first (on two overlapping hands each follows the answer it overlaps most)."""
    candidates = []
    for i, points in enumerate(keypoints):
        for j, before in enumerate(previous):
            iou = box_iou(keypoint_box(points), keypoint_box(before))
            if iou >= min_iou:
                candidates.append((-iou, i, j))
    return _one_to_one(candidates)


def nearest_palm(
    index: int, keypoints: list[np.ndarray], palms: list[PalmDetection], taken: set[int], reach: float
) -> int | None:
    """The palm no hand took that is nearest hand ``index``'s keypoint centroid, within ``reach`` keypoint-box sizes
    of it and nearer to it than to any other hand's centroid (on an overlapping pair, the other hand's palm is not
    offered); else None."""
    points = keypoints[index]
    size = max(float(np.max(points.max(axis=0) - points.min(axis=0))), 1.0)
    centroids = [k.mean(axis=0) for k in keypoints]
    best, best_distance = None, reach * size
    for j, palm in enumerate(palms):
        centre = (palm.box[:2] + palm.box[2:]) / 2
        distances = [float(np.linalg.norm(centre - c)) for c in centroids]
        if j not in taken and distances[index] <= best_distance and distances[index] <= min(distances):
            best, best_distance = j, distances[index]
    return best


class CropStage:
    """Landmarks for hands already found: ``run(image_bgr, [keypoints (21, 2), ...]) -> [LandmarkAnswer, ...]``.

    ``iterations``: crops per hand, each later one around the previous answer. ``turns``: orientations the first
    crop is tried in when its presence is under ``turn_below`` (1 = only the keypoints' own; 4 = quarter turns);
    ``zoom_out``: the first crop's size factor for a last try in those orientations (1 = no such try);
    ``retry_crops``: at most this many such tries per frame, hands in their given order (a false hand, e.g. a face,
    sees no hand in any crop: without a bound it would cost every try on every frame). ``palms``: a palm detector
    run once per frame; a hand with a palm inside its keypoint box (``match_palms``) gets the palm's crop as its first
    one (MediaPipe's own placement: the right roll and extent where ACR's keypoints get them wrong); a hand whose
    first crop sees no hand also tries the nearest palm no hand took within ``palm_reach`` keypoint-box sizes.
    ``tracking``: follow the hands ``remember`` was given last (module docstring); ``forget`` drops them (a new
    stream, a reconfiguration). One stage follows one camera. ``palm_every``: while tracking, a frame whose only hand
    is followed runs the palm detector (which finds hands ACR misses) every this many frames, not every frame.
    ``device``: where the landmark network runs (the model is moved there; crops are cut on the CPU and sent as
    uint8). ``runner``: runs the network in its place, e.g. an ``OnnxRunner`` (onnx_runner.py) on the CPU."""

    def __init__(
        self,
        model: MediaPipeLandmarkNet,
        scale: float = 2.0,
        shift_up: float = 0.1,
        iterations: int = 1,
        autocast_dtype: torch.dtype | None = None,
        turns: int = 4,
        turn_below: float = 0.5,
        zoom_out: float = 2.0,
        retry_crops: int = 8,
        palms: PalmDetector | None = None,
        palm_reach: float = 1.5,
        tracking: bool = False,
        device: torch.device | str = 'cpu',
        palm_every: int = 3,
        runner: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        if iterations < 1:
            raise ValueError(f'iterations must be >= 1, got {iterations}')
        if not 1 <= int(turns) <= 8:
            raise ValueError(f'turns must be 1..8, got {turns}')
        if not 0.0 <= float(turn_below) <= 1.0:
            raise ValueError(f'turn_below must be in [0, 1], got {turn_below}')
        if not float(zoom_out) >= 1.0:
            raise ValueError(f'zoom_out must be >= 1, got {zoom_out}')
        if int(retry_crops) < 0:
            raise ValueError(f'retry_crops must be >= 0, got {retry_crops}')
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.scale, self.shift_up, self.iterations = float(scale), float(shift_up), int(iterations)
        self.turns, self.turn_below, self.zoom_out = int(turns), float(turn_below), float(zoom_out)
        self.retry_crops = int(retry_crops)
        self.autocast_dtype = autocast_dtype
        self.runner = runner
        if not float(palm_reach) >= 0.0:
            raise ValueError(f'palm_reach must be >= 0, got {palm_reach}')
        self.palms, self.palm_reach = palms, float(palm_reach)
        self.crops_run = 0  # crops through the network since construction (cost figure for benchmarks)
        self.palm_crops = 0  # first crops placed by a palm detection
        self.unused_palms: list[PalmDetection] = []  # the last run's palm detections no hand took
        self.carried: list[LandmarkAnswer] = []  # the last run's followed hands no input hand overlapped
        self.tracking = bool(tracking)
        if int(palm_every) < 1:
            raise ValueError(f'palm_every must be >= 1, got {palm_every}')
        self.palm_every = int(palm_every)
        self._frames_without_palms = 0
        self.tracked_crops = 0  # crops that followed a previous frame's answer and read its hand
        self.palm_runs = 0  # frames the palm detector ran on
        self._previous: list[np.ndarray] = []  # keypoints (21, 2) of the hands to follow into the next frame
        self._notes: list[object] = []  # the caller's note per such hand
        self._previous_size: tuple[int, int] | None = None  # (height, width) of the image they were read in

    def remember(self, answers: list[LandmarkAnswer], image_size: tuple[int, int], notes: list | None = None) -> None:
        """The answers of the hands this frame published, followed into the next frame when ``tracking``; ``notes``:
        one object per answer the caller gets back for the hand that follows it (``note``), e.g. its fit."""
        if notes is not None and len(notes) != len(answers):
            raise ValueError(f'one note per answer: {len(notes)} notes, {len(answers)} answers')
        self._previous = [np.asarray(a.keypoints_2d, np.float64).copy() for a in answers]
        self._notes = list(notes) if notes is not None else [None] * len(answers)
        self._previous_size = (int(image_size[0]), int(image_size[1]))

    def note(self, answer: LandmarkAnswer) -> object:
        """What ``remember`` noted for the hand ``answer`` followed (None for an answer that followed none)."""
        return self._notes[answer.follows] if 0 <= answer.follows < len(self._notes) else None

    def forget(self) -> None:
        self._previous, self._notes, self._previous_size = [], [], None
        self._frames_without_palms = 0

    def _unmatched_palms(self, image_bgr: np.ndarray) -> list[PalmDetection]:
        """A frame without input hands: the palm detections no carried hand holds."""
        if self.palms is None:
            return []
        palms = self._detect_palms(image_bgr)
        taken = {j for _, j in match_palms([a.keypoints_2d for a in self.carried], palms)}
        return [palm for j, palm in enumerate(palms) if j not in taken]

    def _detect_palms(self, image_bgr: np.ndarray) -> list[PalmDetection]:
        assert self.palms is not None
        self.palm_runs += 1
        self._frames_without_palms = 0
        return self.palms.detect(image_bgr)

    @torch.inference_mode()
    def _forward(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        if self.runner is not None:
            out = self.runner(torch.from_numpy(crops).float().div_(255.0))
            self.crops_run += len(crops)
            return {k: v.float().numpy() for k, v in out.items()}
        # uint8 to the device, float there: a quarter of the bytes over the bus on a GPU
        batch = torch.from_numpy(crops).to(self.device).float().div_(255.0)  # (B, 224, 224, 3) RGB
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                out = self.model(batch)
        else:
            out = self.model(batch)
        self.crops_run += len(crops)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def _read(
        self,
        rgb: np.ndarray,
        rects: list[tuple[np.ndarray, float, float]],
        turns: list[float],
        from_palm: list[bool] | None = None,
    ) -> list[LandmarkAnswer]:
        """The landmark network on one crop per rect, answers in image pixels and image axes."""
        affines = [crop_affine(centre, side, angle) for centre, side, angle in rects]
        crops = [cv2.warpAffine(rgb, a, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR) for a in affines]
        out = self._forward(np.stack(crops))
        answers = []
        for i, (affine, (_, side, angle)) in enumerate(zip(affines, rects)):
            back = cv2.invertAffineTransform(affine)
            crop_xy = out['landmarks'][i, :, :2].astype(np.float64)
            world = out['world_landmarks'][i].astype(np.float64)
            world[:, :2] = world[:, :2] @ crop_axes(angle)  # crop axes -> image axes (z along the optical axis)
            answers.append(
                LandmarkAnswer(
                    keypoints_2d=crop_xy @ back[:, :2].T + back[:, 2],
                    presence=float(out['presence'][i]),
                    # the network's 'Right' assumes a mirrored image: the person's left in a camera image
                    right_probability=float(1.0 - out['handedness'][i]),
                    world_landmarks=world,
                    crop_side_px=side,
                    turn=turns[i],
                    from_palm=bool(from_palm[i]) if from_palm is not None else False,
                )
            )
        return answers

    def read_palms(self, image_bgr: np.ndarray, palms: list[PalmDetection]) -> list[LandmarkAnswer]:
        """The landmark network on each palm's crop (one crop each, as MediaPipe reads a newly detected palm)."""
        if not palms:
            return []
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        return self._read(rgb, [palm_crop(p) for p in palms], [0.0] * len(palms), [True] * len(palms))

    def _follow(
        self, rgb: np.ndarray, points: list[np.ndarray], carry: bool
    ) -> tuple[dict[int, LandmarkAnswer], list[LandmarkAnswer]]:
        """(hand index -> its answer from a crop placed on the previous frame's answer it overlaps, where that crop
        reads a hand surely; with ``carry``, the answers of crops placed on the previous frame's hands no hand
        overlapped, where they read a hand surely)."""
        if not (self.tracking and self._previous) or self._previous_size != rgb.shape[:2]:
            return {}, []
        pairs = match_tracks(points, self._previous)
        matched = {j for _, j in pairs}
        left = [j for j in range(len(self._previous)) if j not in matched] if carry else []
        tries = [(i, j) for i, j in pairs] + [(-1, j) for j in left]
        if not tries:
            return {}, []
        rects = [crop_from_landmarks(self._previous[j], self.scale, self.shift_up) for _, j in tries]
        followed, carried = {}, []
        for (i, j), answer in zip(tries, self._read(rgb, rects, [0.0] * len(tries))):
            if answer.presence < self.turn_below:
                continue
            if i >= 0:
                followed[i] = dataclasses.replace(answer, follows=j)
            else:
                carried.append(dataclasses.replace(answer, follows=j))
        self.tracked_crops += len(followed) + len(carried)
        return followed, carried

    def run(self, image_bgr: np.ndarray, keypoints: list[np.ndarray], free_palms: bool = True) -> list[LandmarkAnswer]:
        """One answer per hand, in order. ``free_palms``: the caller wants new hands: ``unused_palms`` and, when
        tracking, ``carried`` (hands of the previous frame no input hand overlaps, still read surely where they
        were: a hand ACR missed in this frame, or one it placed far off). Without it, a frame whose hands are all
        followed runs no palm detector."""
        self.unused_palms, self.carried = [], []
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        points = [np.asarray(k, np.float64) for k in keypoints]
        followed, self.carried = self._follow(rgb, points, carry=free_palms)
        hands = len(points) + len(self.carried)
        if len(followed) == len(points):
            # with two hands there is no side left for a new hand; with fewer, the palm detector (which finds hands
            # ACR misses) runs every palm_every-th frame while hands are followed (ACR still looks every frame)
            wants_palms = free_palms and self.palms is not None and hands < 2
            tracked = bool(followed or self.carried)
            if not wants_palms or (tracked and self._frames_without_palms + 1 < self.palm_every):
                self._frames_without_palms += 1
                return [followed[i] for i in range(len(points))]
        if not points:
            self.unused_palms = self._unmatched_palms(image_bgr)
            return []
        rects = [crop_from_keypoints(k, self.scale, self.shift_up) for k in points]
        from_palm = [False] * len(points)
        palms: list[PalmDetection] = []
        used: set[int] = set()
        if self.palms is not None:
            palms = self._detect_palms(image_bgr)
            for i, j in match_palms(points, palms):  # a followed hand's palm is taken too (no new hand from it)
                used.add(j)
                if i not in followed:
                    rects[i], from_palm[i] = palm_crop(palms[j]), True
            self.palm_crops += sum(from_palm)
        todo = [i for i in range(len(points)) if i not in followed]
        read = dict(followed)
        if todo:
            first = self._read(rgb, [rects[i] for i in todo], [0.0] * len(todo), [from_palm[i] for i in todo])
            read.update(zip(todo, first))
        answers = [read[i] for i in range(len(points))]
        budget = self.retry_crops
        # a crop that sees no hand first tries a palm no hand took, when one lies near (ACR's keypoints on a hand
        # held upright before a face can sit on the fingers, the palm beyond the keypoint box)
        offers: list[tuple[int, int]] = []
        for i, a in enumerate(answers):
            needs_palm = a.presence < self.turn_below and not from_palm[i]
            offer = nearest_palm(i, points, palms, used, self.palm_reach) if needs_palm else None
            if offer is not None and len(offers) < budget:
                offers.append((i, offer))
                used.add(offer)  # one palm per hand
        if offers:
            budget -= len(offers)
            tried_rects = [palm_crop(palms[j]) for _, j in offers]
            for (i, _), answer in zip(offers, self._read(rgb, tried_rects, [0.0] * len(offers), [True] * len(offers))):
                if answer.presence > answers[i].presence:
                    answers[i] = answer
        # a palm on a carried hand is no new hand either (it stayed on offer above: a found hand ACR drew beside
        # the carried one reads that hand through it, not nothing after every retry)
        free = [j for j in range(len(palms)) if j not in used]
        held = {free[k] for _, k in match_palms([a.keypoints_2d for a in self.carried], [palms[j] for j in free])}
        self.unused_palms = [palms[j] for j in free if j not in held]
        # retries for crops that see no hand: the other orientations, then all of them zoomed out
        retries = [(self.scale, [2 * np.pi * t / self.turns for t in range(1, self.turns)])]
        if self.zoom_out > 1.0:
            retries.append((self.scale * self.zoom_out, [2 * np.pi * t / self.turns for t in range(self.turns)]))
        for scale, turns in retries:
            unsure = [i for i, a in enumerate(answers) if a.presence < self.turn_below]
            tried = [(i, t) for i in unsure for t in turns][:budget]
            if not tried:
                continue
            budget -= len(tried)
            rects = [crop_from_keypoints(points[i], scale, self.shift_up, turn=t) for i, t in tried]
            for (i, _), answer in zip(tried, self._read(rgb, rects, [t for _, t in tried])):
                if answer.presence > answers[i].presence:
                    answers[i] = answer
        for _ in range(self.iterations - 1):
            # a palm's crop is already the one MediaPipe reads a hand in: following its answer again loses (annotated
            # photos: PCK 0.49 with one crop, 0.47 with two)
            follow = [i for i, a in enumerate(answers) if a.presence >= NO_HAND and not (a.from_palm or a.tracked)]
            if not follow:
                break
            rects = [crop_from_landmarks(answers[i].keypoints_2d, self.scale, self.shift_up) for i in follow]
            for i, new in zip(follow, self._read(rgb, rects, [0.0] * len(rects))):
                answers[i] = dataclasses.replace(new, turn=answers[i].turn, from_palm=answers[i].from_palm)
        return answers
