"""The real-image benchmark: methods side by side on real photos, position-checked (``detection_metrics``).

Label sets:
- ``realval``: the fixed validation split of ``../shared/realimgs-train`` (``teacher.corpus``; never trained on).
  Detection (recall, precision, two-hand frames) is scored against the datasets' own boxes: that is accuracy.
  Handedness and keypoints exist only from the teacher (MediaPipe): those figures are *agreement with the teacher*.
- ``rotated``: ``realval`` frames turned by 90, 180 and 270 degrees with their labels (hands pointing sideways and
  down, as a robot's camera sees them reach); every two-hand frame and every third other frame.
- ``annotated``: the manually annotated photos of ``../shared/realimgs`` (InterHand2.6M with 3D and cameras,
  FreiHAND, OneHand10K, Panoptic; evaluation only): detection, handedness where known, 2D error and PCK@0.1, and on
  InterHand2.6M the wrist-aligned MPJPE and root depth error with the true intrinsics.

Methods: ``acr`` (any ACR weights through the ROS-free pipeline; the shipped model by default), ``mediapipe``
(the teacher itself, run in ``.venv-teacher``) and ``mediapipe+fit`` (its keypoints with the hand model fitted to
them, for 3D; needs ``hand_recon_ros.hand_model.fit``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hand_recon_ros.conventions import BONES, SIDES
from hand_recon_ros.detection_metrics import DetectionTally, LabelledHand, PredictedHand, keypoint_box
from hand_recon_ros.geometry.camera import fallback_intrinsics

from ..teacher.labels import DEFAULT_SETTINGS, hand_from_raw, load_labels
from ..teacher.runner import TeacherUnavailable, find_teacher_python, read_raw, run_worker

__all__ = [
    'Frame',
    'load_annotated',
    'load_realval',
    'load_synthetic',
    'load_rotated',
    'rotate_frame',
    'SYNTH_SCENES',
    'AcrMethod',
    'MediaPipeMethod',
    'run_benchmark',
    'markdown_table',
    'contact_sheet',
    'draw_hands',
    'ANNOTATED_SETS',
]

ANNOTATED_SETS = ('interhand', 'freihand', 'onehand10k', 'panoptic')
# MediaPipe on evaluation images: no flip pass, same detector settings as the labels
MP_EVAL_SETTINGS = {**DEFAULT_SETTINGS, 'flip_check': False}


@dataclass
class Frame:
    path: Path
    set_name: str
    hands: list  # LabelledHand
    K: np.ndarray | None = None  # true intrinsics when known
    teacher_labels: bool = False  # keypoints / sides are the teacher's, not a person's
    two_hand: bool = False
    extra: dict = field(default_factory=dict)


def _kp_box(kps, vis):
    return keypoint_box(np.where(np.asarray(vis, bool)[:, None], kps, np.nan))


def _coco_frames(folder: Path, json_name: str, set_name: str, side_of=None) -> list[Frame]:
    doc = json.loads((folder / json_name).read_text())
    images = {im['id']: im for im in doc['images']}
    frames: dict[str, Frame] = {}
    for ann in doc['annotations']:
        im = images[ann['image_id']]
        k = np.asarray(ann['keypoints'], np.float64).reshape(21, 3)
        vis = k[:, 2] > 0
        if vis.sum() < 3:
            continue
        side = side_of(im['file_name']) if side_of else None
        hand = LabelledHand(box=_kp_box(k[:, :2], vis), side=side, keypoints=k[:, :2], visible=vis)
        # Panoptic stores one picture twice (one file per hand): one frame with both hands
        key = im['file_name'][:-6] if set_name == 'panoptic' else im['file_name']
        fr = frames.setdefault(key, Frame(folder / im['file_name'], set_name, []))
        fr.hands.append(hand)
    for fr in frames.values():
        fr.two_hand = len(fr.hands) >= 2
    return sorted(frames.values(), key=lambda f: str(f.path))


def load_annotated(root: Path) -> list[Frame]:
    """The manually annotated photos of ``../shared/realimgs`` as frames (missing folders are skipped)."""
    root = Path(root)
    frames: list[Frame] = []
    ih = root / 'derived' / 'interhand26m_gt_camera.json'
    if ih.is_file():
        doc = json.loads(ih.read_text())
        order = doc['interhand_to_openpose_order_per_hand']
        for im in doc['images']:
            c = im['intrinsics']
            K = np.array([[c['fx'], 0, c['cx']], [0, c['fy'], c['cy']], [0, 0, 1.0]])
            j3 = np.asarray(im['joints_cam_mm'], np.float64) / 1000.0
            j2 = np.asarray(im['joints_2d_px'], np.float64)
            valid = np.asarray(im['joint_valid'], bool)
            hands = []
            for side, off in (('right', 0), ('left', 21)):
                idx = [off + i for i in order]
                v = valid[idx]
                if v.sum() < 3:
                    continue
                hands.append(
                    LabelledHand(
                        box=_kp_box(j2[idx], v),
                        side=side,
                        keypoints=j2[idx],
                        visible=v,
                        joints_cam=j3[idx],
                        joints_valid=v,
                    )
                )
            frames.append(
                Frame(root / 'interhand26m_mmpose' / im['file'], 'interhand', hands, K=K, two_hand=len(hands) == 2)
            )
    for set_name, sub, name, side_of in (
        ('freihand', 'freihand_mmpose', 'test_freihand.json', lambda f: 'right'),
        ('onehand10k', 'onehand10k_mmpose', 'test_onehand10k.json', None),
        (
            'panoptic',
            'panoptic_mmpose',
            'test_panoptic.json',
            lambda f: {'l': 'left', 'r': 'right'}[f.rsplit('_', 1)[1][0]],
        ),
    ):
        if (root / sub / name).is_file():
            frames += _coco_frames(root / sub, name, set_name, side_of)
    return frames


SYNTH_SCENES = ('interacting', 'close', 'separate')


def load_synthetic(
    out_dir: Path, scenes=SYNTH_SCENES, per_scene: int = 40, size: int = 256, seed: int = 200_000
) -> list[Frame]:
    """Held-out synthetic frames (a seed no config trains on) written as PNGs so every method reads the same file;
    true 2D keypoints, sides, camera-frame joints and K. ``separate`` is the control: hands apart."""
    from ..synth import SynthConfig, SynthDataset

    frames = []
    for n, scene in enumerate(scenes):
        ds = SynthDataset(
            SynthConfig.from_dict({'image_size': size, 'scene_weights': {scene: 1.0}}), seed=seed + n, length=per_scene
        )
        folder = Path(out_dir) / f'synth_{scene}'
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_scene):
            s = ds.raw(i)
            path = folder / f'{i:04d}.png'
            if not path.is_file():
                cv2.imwrite(str(path), s['image'])
            hands = []
            for side_i, side in enumerate(SIDES):
                vis = np.asarray(s['joints_vis'][side_i], bool)
                if not s['valid'][side_i] or vis.sum() < 3:
                    continue
                kps = np.asarray(s['keypoints_2d'][side_i], np.float64)
                hands.append(
                    LabelledHand(
                        box=_kp_box(kps, vis),
                        side=side,
                        keypoints=kps,
                        visible=vis,
                        joints_cam=np.asarray(s['joints_3d'][side_i], np.float64),
                    )
                )
            frames.append(
                Frame(path, f'synth/{scene}', hands, K=np.asarray(s['K'], np.float64), two_hand=len(hands) == 2)
            )
    return frames


def load_pasted(labels_path: Path, root: Path, out_dir: Path, count: int = 60, seed: int = 300_000) -> list[Frame]:
    """Held-out overlapping pairs: validation-split hands pasted over validation-split hands (the training pairs
    use the train split only), written as PNGs. Sides and keypoints are the teacher's from before pasting; boxes
    span all 21 keypoints (hidden ones included: the hand is there)."""
    from ..datasets.pasted import PastedPairsDataset

    ds = PastedPairsDataset(root, 'val', labels=str(labels_path), seed=seed, length=count)
    folder = Path(out_dir) / 'pasted_val'
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(count):
        image, hands = ds.compose(i)
        path = folder / f'{i:04d}.png'
        if not path.is_file():
            cv2.imwrite(str(path), image)
        labelled = [
            LabelledHand(box=keypoint_box(h.keypoints), side=h.side, keypoints=h.keypoints, visible=h.visible)
            for h in hands
        ]
        frames.append(Frame(path, 'pasted/val', labelled, teacher_labels=True, two_hand=len(labelled) == 2))
    return frames


def load_realval(labels_path: Path, root: Path, verify_hashes: bool = True, split: str = 'val') -> list[Frame]:
    """Validation frames of the training photos: dataset boxes, teacher sides and keypoints where the teacher
    found the boxed hand (signdigits has no boxes: its frames hold the teacher's hands as labels). ``split='train'``
    gives the training split's frames the same way (for calibration; never for the reported figures)."""
    doc = load_labels(labels_path, root=root, verify_hashes=verify_hashes)
    frames = []
    for im in doc['images']:
        if im['split'] != split:
            continue
        hands = []
        if im['boxes'] is not None:
            by_box = {hd['flags']['box']: hd for hd in im['hands'] if hd['flags']['box'] is not None}
            for b, box in enumerate(im['boxes']):
                hd = by_box.get(b)
                hands.append(
                    LabelledHand(
                        box=np.asarray(box),
                        side=hd['side'] if hd else None,
                        keypoints=hd['keypoints'] if hd else None,
                        visible=np.ones(21, bool) if hd else None,
                    )
                )
        else:
            # one hand per crop by construction: the label is the crop's whole extent
            h, w = im['height'], im['width']
            hd = im['hands'][0] if len(im['hands']) == 1 else None
            hands.append(
                LabelledHand(
                    box=np.array([0, 0, w, h], float),
                    side=hd['side'] if hd else None,
                    keypoints=hd['keypoints'] if hd else None,
                    visible=np.ones(21, bool) if hd else None,
                )
            )
        frames.append(
            Frame(
                Path(root) / im['path'],
                f'real{split}/{im["source"]}',
                hands,
                teacher_labels=True,
                two_hand=len(hands) >= 2,
            )
        )
    return frames


ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _rotate_points(points: np.ndarray, angle: int, width: int, height: int) -> np.ndarray:
    """Continuous pixel coordinates (corner origin) of a ``width`` x ``height`` image -> the same points in the
    image turned clockwise by ``angle`` degrees (cv2.rotate)."""
    x, y = points[..., 0], points[..., 1]
    if angle == 90:
        out = (height - y, x)
    elif angle == 180:
        out = (width - x, height - y)
    elif angle == 270:
        out = (y, width - x)
    else:
        raise ValueError(f'rotation must be one of {sorted(ROTATIONS)} degrees, got {angle!r}')
    return np.stack(out, axis=-1)


def rotate_frame(frame: Frame, angle: int, path: Path) -> Frame:
    """``frame`` turned clockwise by ``angle`` (90, 180, 270) degrees, written to ``path``: boxes and keypoints
    turn with the image; sides stay (a turn is not a mirror)."""
    if angle not in ROTATIONS:
        raise ValueError(f'rotation must be one of {sorted(ROTATIONS)} degrees, got {angle!r}')
    image = _read(frame.path)
    if image is None:
        raise OSError(f'unreadable image: {frame.path}')
    h, w = image.shape[:2]
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.rotate(image, ROTATIONS[angle]))
    hands = []
    for hand in frame.hands:
        corners = _rotate_points(np.asarray(hand.box, np.float64).reshape(2, 2), angle, w, h)
        kps = None if hand.keypoints is None else _rotate_points(np.asarray(hand.keypoints, np.float64), angle, w, h)
        hands.append(
            LabelledHand(
                box=np.concatenate([corners.min(axis=0), corners.max(axis=0)]),
                side=hand.side,
                keypoints=kps,
                visible=hand.visible,
            )
        )
    return Frame(
        path,
        frame.set_name,
        hands,
        K=None,  # a true K would turn too; the real photos have none
        teacher_labels=frame.teacher_labels,
        two_hand=frame.two_hand,
        extra={**frame.extra, 'rotated_from': str(frame.path), 'angle': angle},
    )


def load_rotated(
    labels_path: Path, root: Path, out_dir: Path, angles=(90, 180, 270), every: int = 3, verify_hashes: bool = True
) -> list[Frame]:
    """The validation frames of ``load_realval`` turned by each of ``angles``: every two-hand frame and every
    ``every``-th other frame, written as PNGs under ``out_dir/rotated<angle>``; set names ``rotated/<angle>``."""
    base = load_realval(labels_path, root, verify_hashes=verify_hashes)
    pick = [f for i, f in enumerate(base) if f.two_hand or i % every == 0]
    frames = []
    for angle in angles:
        folder = Path(out_dir) / f'rotated{angle}'
        for i, f in enumerate(pick):
            turned = rotate_frame(f, angle, folder / f'{i:04d}.png')
            turned.set_name = f'rotated/{angle}'
            frames.append(turned)
    return frames


class AcrMethod:
    """An ACR model through the ROS-free pipeline (true K when the frame has one, else the node's fallback)."""

    def __init__(
        self,
        weights: str = '',
        name: str = 'acr',
        precision: str = 'fp32',
        threshold: float | None = None,
        refine: bool = False,
        min_side_share: float | None = None,
        side_separation: float | None = None,
        center_anchor: float | None = None,
        max_pair_overlap: float | None = None,
        landmarks: float = 0,
        landmark_presence: float | None = None,
        landmark_sides: float = 1,
        landmark_palms: float = 1,
        landmark_new_hands: float = 1,
    ):
        from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor

        cfg = PipelineConfig(weights=weights, device='cpu', precision=precision, refine=refine)
        if threshold is not None:
            cfg.detection_threshold = threshold
        if min_side_share is not None:
            cfg.min_side_share = min_side_share
        if side_separation is not None:
            cfg.side_separation = side_separation
        if center_anchor is not None:
            cfg.center_anchor = center_anchor
        if max_pair_overlap is not None:
            cfg.max_pair_overlap = max_pair_overlap
        self.reconstructor = create_reconstructor(cfg)
        self.name = name
        info = self.reconstructor.info()
        self.description = f"{info['network']} {Path(info['weights_file']).name or 'untrained'}"
        self.crop_stage = None
        self.new_hands = False
        self.landmark_sides = bool(landmark_sides)
        # the node's default unless given (landmarks.min_presence)
        self.landmark_presence = (
            self.reconstructor.landmark_min_presence if landmark_presence is None else float(landmark_presence)
        )
        if landmarks:
            self.crop_stage = self.reconstructor.landmark_stage()  # the node's own (its precision too)
            self.crop_stage.iterations = int(landmarks)
            self.crop_stage.palms = self.reconstructor.palm_detector() if landmark_palms else None
            self.description += f' + landmark network on crops ({int(landmarks)} pass(es))'
            self.description += ', first crops on palm detections' if landmark_palms else ''
            self.new_hands = bool(landmark_palms and landmark_new_hands)
            self.description += ', new hands from free palms' if self.new_hands else ''

    def predict(self, image_bgr: np.ndarray, frame: Frame) -> list[PredictedHand]:
        K = frame.K if frame.K is not None else fallback_intrinsics(image_bgr.shape[1], image_bgr.shape[0])
        result = self.reconstructor.reconstruct(image_bgr, K)
        found = list(result.hands)
        if self.crop_stage is not None and (found or self.new_hands):
            from hand_recon_ros.landmarks.hand_update import landmark_hands

            # the node's path: crop answers -> hand model fitted to them (3D and 2D stay one hand)
            found, _ = landmark_hands(
                image_bgr,
                found,
                K,
                self.crop_stage,
                self.reconstructor.hand_model,
                self.landmark_presence,
                sides_from_crops=self.landmark_sides,
                new_hands=self.new_hands,
            )
        sides = [h.handedness for h in found]
        return [
            PredictedHand(
                np.asarray(h.keypoints_2d, np.float64),
                side,
                float(h.score),
                np.asarray(h.joints_3d, np.float64),
                float(h.handedness_score),
            )
            for h, side in zip(found, sides)
        ]


class MediaPipeMethod:
    """MediaPipe Hands 0.10.21 (the teacher) on the benchmark images, cached per image in ``cache``; with
    ``fit`` the hand model is fitted to its keypoints and world landmarks for metric 3D."""

    def __init__(self, frames: list[Frame], cache: Path, fit: bool = False, hand_model=None):
        self.name = 'mediapipe+fit' if fit else 'mediapipe'
        self.description = 'MediaPipe Hands 0.10.21' + (' + hand-model fit' if fit else '')
        jobs = [{'path': str(f.path), 'pad': 0} for f in frames]
        t0 = time.perf_counter()
        self.raw = run_worker(jobs, MP_EVAL_SETTINGS, cache, log=lambda *_: None)
        self.fit = fit
        self.hand_model = hand_model
        self.ms_per_image = None
        if len(self.raw) and time.perf_counter() - t0 > 1.0:
            self.ms_per_image = 1000 * (time.perf_counter() - t0) / max(len(jobs), 1)

    def predict(self, image_bgr: np.ndarray, frame: Frame) -> list[PredictedHand]:
        rec = self.raw.get(str(frame.path))
        if rec is None or 'error' in rec:
            return []
        hands = [hand_from_raw(r, rec['width'], rec['height']) for r in rec.get('hands', [])]
        preds = [PredictedHand(h['keypoints'].astype(np.float64), h['side'], h['side_score']) for h in hands]
        if self.fit and hands:
            from hand_recon_ros.hand_model.fit import FitConfig, fit_keypoints

            K = frame.K if frame.K is not None else fallback_intrinsics(rec['width'], rec['height'])
            for side in SIDES:
                idx = [i for i, h in enumerate(hands) if h['side'] == side]
                if not idx:
                    continue
                out = fit_keypoints(
                    self.hand_model,
                    side,
                    np.stack([hands[i]['keypoints'] for i in idx]),
                    K,
                    world_joints=np.stack([hands[i]['world'] for i in idx]),
                    config=FitConfig(num_threads=1),
                )  # small ops: threads only wait on each other
                for n, i in enumerate(idx):
                    preds[i].joints_cam = np.asarray(out['joints'][n], np.float64)
        return preds


def _read(path: Path):
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def _group_of(set_name: str) -> str | None:
    if set_name in ANNOTATED_SETS:
        return 'annotated (all)'
    if set_name.startswith('realval/'):
        return 'realval (all)'
    if set_name.startswith('rotated/'):
        return 'rotated (all)'
    return None


def run_benchmark(frames: list[Frame], methods: list, log=print) -> dict:
    """Per method and label set: the tally summary, ms per image, and per-frame predictions (for the sheet)."""
    results = {}
    for method in methods:
        tallies: dict[str, DetectionTally] = {}
        preds, times = {}, []
        for frame in frames:
            image = _read(frame.path)
            if image is None:
                log(f'[bench_real] unreadable image skipped: {frame.path}')
                continue
            t0 = time.perf_counter()
            p = method.predict(image, frame)
            times.append(time.perf_counter() - t0)
            preds[str(frame.path)] = p
            tallies.setdefault(frame.set_name, DetectionTally()).add_frame(frame.hands, p)
            group = _group_of(frame.set_name)
            if group:
                tallies.setdefault(group, DetectionTally()).add_frame(frame.hands, p)
        ms = 1000 * float(np.median(times)) if times else math.nan
        if getattr(method, 'ms_per_image', None):
            ms = method.ms_per_image
        results[method.name] = {
            'description': method.description,
            'ms': ms,
            'sets': {k: t.summary() for k, t in sorted(tallies.items())},
            'preds': preds,
        }
    return results


def _f(v, d=2, pct=False):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return '-'
    return f'{100 * v:.0f} %' if pct else f'{v:.{d}f}'


def markdown_table(results: dict, frames: list[Frame]) -> str:
    teacher_sets = {f.set_name for f in frames if f.teacher_labels} | {'realval (all)', 'rotated (all)'}
    lines = [
        '| set | method | images | hands | recall | precision | handedness | 2D err px | err / box | '
        'PCK@0.1 | both hands found | both, sides right | MPJPE mm (wrist-aligned) | PA-MPJPE mm | '
        'root depth err mm | ms / image |',
        '|---' * 16 + '|',
    ]
    sets = sorted({s for r in results.values() for s in r['sets']})
    n_images = {s: sum(1 for f in frames if f.set_name == s or _group_of(f.set_name) == s) for s in sets}
    for s in sets:
        for name, r in results.items():
            t = r['sets'].get(s)
            if t is None:
                continue
            agree = '*' if s in teacher_sets else ''
            both = f"{_f(t['both_found'], pct=True)} of {t['two_hand_frames']}" if t['two_hand_frames'] else '-'
            both_sides = _f(t.get('both_found_sides'), pct=True) if t['two_hand_frames'] else '-'
            lines.append(
                f"| {s} | {name} | {n_images[s]} | {t['labelled']} | {_f(t['recall'])} | "
                f"{_f(t['precision'])} | {_f(t['handedness'])}{agree} | {_f(t['err_px'], 1)}{agree} | "
                f"{_f(t['err_rel'], 3)}{agree} | {_f(t['pck'])}{agree} | {both} | {both_sides}{agree} | "
                f"{_f(t['mpjpe_mm'], 1)} | {_f(t.get('pa_mpjpe_mm'), 1)} | {_f(t['root_depth_mm'], 0)} | "
                f"{_f(r['ms'], 1)} |"
            )
    if teacher_sets:
        lines += [
            '',
            '\\* agreement with the teacher (MediaPipe), not accuracy: on these photos only the boxes are '
            "a person's labels; MediaPipe's own agreement with itself is 1 by construction.",
        ]
    return '\n'.join(lines)


_COLORS = {'left': (255, 160, 0), 'right': (0, 140, 255)}  # BGR: left blue, right orange


def draw_hands(image, hands_kps, thickness=2):
    """Each (keypoints (21, 2), side) as a skeleton on ``image`` in place (left blue, right orange)."""
    for kps, side in hands_kps:
        c = _COLORS.get(side, (0, 255, 0))
        k = np.asarray(kps)
        for a, b in BONES:
            if np.isfinite(k[[a, b]]).all():
                cv2.line(image, tuple(int(v) for v in k[a]), tuple(int(v) for v in k[b]), c, thickness, cv2.LINE_AA)
        if np.isfinite(k[0]).all():
            cv2.circle(image, tuple(int(v) for v in k[0]), thickness + 2, c, -1, cv2.LINE_AA)


def contact_sheet(frames: list[Frame], results: dict, path: Path, cell: int = 220, max_rows: int = 24) -> Path:
    """PNG grid: one row per image, the labels first, then each method's hands (left blue, right orange)."""
    names = list(results)
    rows = []
    for frame in frames[:max_rows]:
        image = _read(frame.path)
        if image is None:
            continue
        cells = []
        lab = image.copy()
        for h in frame.hands:
            x0, y0, x1, y1 = (int(v) for v in h.box)
            cv2.rectangle(lab, (x0, y0), (x1, y1), (200, 200, 200), 1)
        draw_hands(
            lab,
            [
                (np.where(h.visible[:, None], h.keypoints, np.nan) if h.visible is not None else h.keypoints, h.side)
                for h in frame.hands
                if h.keypoints is not None
            ],
        )
        cells.append(lab)
        for name in names:
            im = image.copy()
            draw_hands(im, [(p.keypoints, p.side) for p in results[name]['preds'].get(str(frame.path), [])])
            cells.append(im)
        tiles = []
        for c in cells:
            s = cell / max(c.shape[:2])
            c = cv2.resize(c, (max(1, int(c.shape[1] * s)), max(1, int(c.shape[0] * s))), interpolation=cv2.INTER_AREA)
            tile = np.full((cell, cell, 3), 40, np.uint8)
            tile[: c.shape[0], : c.shape[1]] = c
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    header = np.full((28, cell * (len(names) + 1), 3), 255, np.uint8)
    title = ['labels' + (' (teacher)' if any(f.teacher_labels for f in frames) else '')] + names
    for i, t in enumerate(title):
        cv2.putText(header, t, (i * cell + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.concatenate([header] + rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)
    return path


def teacher_available() -> bool:
    try:
        find_teacher_python()
        return True
    except TeacherUnavailable:
        return False


__all__ += ['teacher_available', 'read_raw', 'MP_EVAL_SETTINGS']
