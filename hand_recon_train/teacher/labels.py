"""Teacher labels: MediaPipe's raw answers turned into per-hand labels with quality flags, in a versioned file.

What a hand label holds (pixels of the stored image, the 21-joint order, which is MediaPipe's order too):
``keypoints`` (21 x 2), ``depth_rel`` (21, MediaPipe's relative z, scaled like x), ``world`` (21 x 3 metres,
re-rooted at the wrist: MediaPipe's world landmarks have no absolute depth), ``side`` ('left' / 'right' for an
ordinary, non-mirrored photo: MediaPipe names hands as in a mirrored selfie, so its label is swapped here),
``side_score`` and ``flags``:

- ``flip_err``: mean keypoint distance to the same hand found in the horizontally flipped image (mapped back),
  as a fraction of the hand's size; None when the flipped pass did not find it;
- ``flip_side_ok``: the flipped pass names the same hand;
- ``duplicate``: another detection lies on the same hand (keypoint boxes overlap with IoU > 0.5);
- ``overlap``: the largest IoU with any other hand's keypoint box;
- ``box``: index of the dataset box the hand matched (position check of ``detection_metrics``), -1 none, None
  when the source has no boxes;
- ``trusted``: flip agrees (err <= 0.1, same side), not a duplicate, and matched a box where boxes exist.

The file records the teacher (name, version), its settings, the label format version and each image's sha256.
``load_labels`` refuses a file of another format or teacher version, other settings, or images that changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from hand_recon_ros.detection_metrics import box_iou, keypoint_box, keypoint_centroid, match_hands

__all__ = [
    'LABEL_FORMAT',
    'LABEL_FORMAT_VERSION',
    'TEACHER',
    'DEFAULT_SETTINGS',
    'StaleLabelsError',
    'hand_from_raw',
    'image_labels',
    'build_labels',
    'write_labels',
    'load_labels',
    'label_report',
    'FLIP_AGREE_MAX',
    'DUPLICATE_IOU',
]

LABEL_FORMAT = 'hand_recon_teacher_labels'
LABEL_FORMAT_VERSION = 1
TEACHER = {'name': 'mediapipe_hands', 'version': '0.10.21', 'static_image_mode': True}
DEFAULT_SETTINGS = {'max_num_hands': 4, 'model_complexity': 1, 'min_detection_confidence': 0.5, 'flip_check': True}
FLIP_AGREE_MAX = 0.1
DUPLICATE_IOU = 0.5
_MP_TO_SIDE = {'Left': 'right', 'Right': 'left'}  # MediaPipe's label is for a mirrored image


class StaleLabelsError(ValueError):
    """A label file that does not belong to these images, this teacher or these settings."""


def hand_from_raw(raw: dict, width: int, height: int, pad: int = 0, flipped: bool = False) -> dict:
    """One raw MediaPipe hand -> label (pixels of the stored, unpadded image). ``flipped``: the hand came from the
    horizontally flipped image (coordinates mapped back; its label needs no swap, the flip is the mirror)."""
    lm = np.asarray(raw['landmarks'], dtype=np.float64)
    if lm.shape != (21, 3) or not np.isfinite(lm).all():
        raise ValueError(f'landmarks must be 21 finite (x, y, z), got shape {lm.shape}')
    pw, ph = width + 2 * pad, height + 2 * pad
    x = lm[:, 0] * pw
    if flipped:
        x = pw - x
    kps = np.stack([x - pad, lm[:, 1] * ph - pad], axis=1)
    label = raw.get('label')
    if label not in _MP_TO_SIDE:
        raise ValueError(f"handedness label must be 'Left' or 'Right', got {label!r}")
    side = label.lower() if flipped else _MP_TO_SIDE[label]
    world = raw.get('world')
    if world is not None:
        world = np.asarray(world, dtype=np.float64)
        if world.shape != (21, 3) or not np.isfinite(world).all():
            raise ValueError(f'world landmarks must be 21 finite points, got shape {world.shape}')
        if flipped:
            world = world * np.array([-1.0, 1.0, 1.0])
        world = world - world[0]
    return {
        'keypoints': kps,
        'depth_rel': lm[:, 2] * pw,
        'world': world,
        'side': side,
        'side_score': float(raw.get('score', 0.0)),
    }


def _hand_size(kps) -> float:
    b = keypoint_box(kps)
    return max(float(b[2] - b[0]), float(b[3] - b[1]), 1.0)


def image_labels(record: dict, boxes: list | None) -> dict:
    """Labels + flags of one image from its raw record; ``boxes`` None = the source has no boxes."""
    w, h, pad = int(record['width']), int(record['height']), int(record.get('pad', 0))
    hands = [hand_from_raw(r, w, h, pad) for r in record.get('hands', [])]
    flipped = [hand_from_raw(r, w, h, pad, flipped=True) for r in record.get('flipped_hands', [])]
    kboxes = [keypoint_box(hd['keypoints']) for hd in hands]
    # flip agreement: pair each hand with the nearest flipped-pass hand inside its own box
    pairs = dict(match_hands([keypoint_centroid(f['keypoints']) for f in flipped], kboxes)) if flipped else {}
    flip_of = {g: p for p, g in pairs.items()}
    box_pairs = {}
    if boxes:
        box_pairs = {p: g for p, g in match_hands([keypoint_centroid(hd['keypoints']) for hd in hands], boxes)}
    for i, hd in enumerate(hands):
        size = _hand_size(hd['keypoints'])
        ious = [box_iou(kboxes[i], kboxes[j]) for j in range(len(hands)) if j != i]
        j = flip_of.get(i)
        flip_err = (
            None
            if j is None
            else float(np.linalg.norm(hd['keypoints'] - flipped[j]['keypoints'], axis=1).mean() / size)
        )
        flags = {
            'flip_err': None if flip_err is None else round(flip_err, 4),
            'flip_side_ok': None if j is None else bool(flipped[j]['side'] == hd['side']),
            'duplicate': bool(any(v > DUPLICATE_IOU for v in ious)),
            'overlap': round(max(ious), 4) if ious else 0.0,
            'box': None if boxes is None else int(box_pairs.get(i, -1)),
        }
        flags['trusted'] = bool(
            flip_err is not None
            and flip_err <= FLIP_AGREE_MAX
            and flags['flip_side_ok']
            and not flags['duplicate']
            and (boxes is None or flags['box'] >= 0)
        )
        hd['flags'] = flags
    matched = set(box_pairs.values())
    return {
        'width': w,
        'height': h,
        'hands': hands,
        'missed_boxes': [] if not boxes else [g for g in range(len(boxes)) if g not in matched],
    }


def _jsonable(hand: dict) -> dict:
    out = dict(hand)
    for k in ('keypoints', 'world'):
        if out.get(k) is not None:
            out[k] = np.round(np.asarray(out[k]), 2 if k == 'keypoints' else 5).tolist()
    out['depth_rel'] = np.round(np.asarray(out['depth_rel']), 2).tolist()
    return out


def build_labels(corpus, raw: dict[str, dict], settings: dict, root: str | Path) -> dict:
    """The label document for corpus images (``CorpusImage`` list) from raw worker records by path."""
    root = Path(root)
    images, skipped = [], []
    for im in corpus:
        rec = raw.get(str(im.path))
        rel = str(Path(im.path).relative_to(root))
        if rec is None:
            skipped.append({'path': rel, 'reason': 'not labelled'})
            continue
        if 'error' in rec:
            skipped.append({'path': rel, 'reason': rec['error']})
            continue
        lab = image_labels(rec, im.boxes if im.has_boxes else None)
        images.append(
            {
                'path': rel,
                'sha256': rec['sha256'],
                'source': im.source,
                'recording': im.recording,
                'split': im.split,
                'boxes': [list(map(float, b)) for b in im.boxes] if im.has_boxes else None,
                'width': lab['width'],
                'height': lab['height'],
                'missed_boxes': lab['missed_boxes'],
                'hands': [_jsonable(hd) for hd in lab['hands']],
            }
        )
    return {
        'format': LABEL_FORMAT,
        'format_version': LABEL_FORMAT_VERSION,
        'teacher': dict(TEACHER),
        'settings': dict(settings),
        'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'images': images,
        'skipped': skipped,
    }


def write_labels(doc: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(doc, separators=(',', ':')))
    tmp.replace(path)


def load_labels(
    path: str | Path, root: str | Path | None = None, settings: dict | None = None, verify_hashes: bool = True
) -> dict:
    """Read and validate a label file. ``settings``: the teacher settings the caller expects (default: the
    project's). ``root`` + ``verify_hashes``: every image must still have the recorded sha256."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StaleLabelsError(f'{path}: not a readable label file ({exc})') from exc
    if not isinstance(doc, dict) or doc.get('format') != LABEL_FORMAT:
        raise StaleLabelsError(f'{path}: not a {LABEL_FORMAT} file')
    if doc.get('format_version') != LABEL_FORMAT_VERSION:
        raise StaleLabelsError(
            f'{path}: label format version {doc.get("format_version")!r}, this code reads '
            f'{LABEL_FORMAT_VERSION}: label the images again (python -m hand_recon_train.teacher)'
        )
    teacher = doc.get('teacher') or {}
    if teacher.get('name') != TEACHER['name'] or teacher.get('version') != TEACHER['version']:
        raise StaleLabelsError(
            f'{path}: made by teacher {teacher.get("name")} {teacher.get("version")}, expected '
            f'{TEACHER["name"]} {TEACHER["version"]}'
        )
    want = DEFAULT_SETTINGS if settings is None else settings
    if doc.get('settings') != want:
        raise StaleLabelsError(f'{path}: teacher settings {doc.get("settings")} differ from the expected {want}')
    if root is not None and verify_hashes:
        root = Path(root)
        changed = []
        for im in doc['images']:
            p = root / im['path']
            if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != im['sha256']:
                changed.append(im['path'])
        if changed:
            raise StaleLabelsError(
                f'{path}: {len(changed)} image(s) missing or changed since labelling, e.g. '
                f'{changed[:3]}: label them again'
            )
    for im in doc['images']:
        for hd in im['hands']:
            hd['keypoints'] = np.asarray(hd['keypoints'], dtype=np.float32)
            hd['depth_rel'] = np.asarray(hd['depth_rel'], dtype=np.float32)
            if hd.get('world') is not None:
                hd['world'] = np.asarray(hd['world'], dtype=np.float32)
    return doc


def label_report(doc: dict) -> dict:
    """Counts of images, hands, flags and disagreements, per source and split."""
    rows = {}
    for im in doc['images']:
        key = f'{im["source"]}/{im["split"]}'
        r = rows.setdefault(key, Counter())
        r['images'] += 1
        r['hands'] += len(im['hands'])
        r['images_without_hand'] += int(not im['hands'])
        r['trusted'] += sum(hd['flags']['trusted'] for hd in im['hands'])
        r['flip_missing'] += sum(hd['flags']['flip_err'] is None for hd in im['hands'])
        r['flip_disagree'] += sum(
            hd['flags']['flip_err'] is not None and hd['flags']['flip_err'] > FLIP_AGREE_MAX for hd in im['hands']
        )
        r['flip_side_differs'] += sum(hd['flags']['flip_side_ok'] is False for hd in im['hands'])
        r['duplicates'] += sum(hd['flags']['duplicate'] for hd in im['hands'])
        r['overlapping'] += sum(hd['flags']['overlap'] > 0 for hd in im['hands'])
        if im['boxes'] is not None:
            r['boxes'] += len(im['boxes'])
            r['boxes_missed'] += len(im['missed_boxes'])
            r['hands_off_box'] += sum(hd['flags']['box'] == -1 for hd in im['hands'])
        sides = [hd['side'] for hd in im['hands']]
        r['two_same_side'] += int(len(sides) == 2 and sides[0] == sides[1])
    return {
        'rows': {k: dict(v) for k, v in sorted(rows.items())},
        'skipped': Counter(s['reason'].split(':')[0] for s in doc.get('skipped', [])),
    }
