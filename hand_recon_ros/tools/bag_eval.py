"""Offline evaluation of a rosbag2 (MCAP) bag recorded from the hand_recon node.

Reads the recorded hand outputs (and the input images when they were recorded) and answers what users
ask of a running node: output rates, latency, dropped frames, temporal jitter of the joints (raw vs
smoothed), accuracy against ground truth, and with ``--replay`` the parity between the node's outputs
and the ROS-free pipeline run offline on the same images. Writes report.md and report.json.

    python -m hand_recon_ros.tools.bag_eval out/demo/bag --gt out/demo/frames/ground_truth.json --replay

Reading needs only ``rosbags`` (no rclpy); ``--replay`` also needs torch and the sensor_msgs package.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hand_recon_ros.detection_defaults import DETECTION_THRESHOLD, MIN_SIDE_SHARE

if TYPE_CHECKING:
    from rosbags.highlevel import AnyReader

    from hand_recon_ros.pipeline import HandReconstructor, PipelineConfig

HAND_ARRAY_TYPE = 'hand_recon_ros/msg/HandArray'
MODEL_INFO_TYPE = 'hand_recon_ros/msg/HandModelInfo'
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
# Hand.depth_source codes -> results.DEPTH_SOURCE_* names (msg/Hand.msg).
DEPTH_SOURCES = {0: 'camera_info', 1: 'fallback_fov', 2: 'weak_perspective', 3: 'depth_image'}
LEFT = 0  # Hand.LEFT


# ---------------------------------------------------------------------------------------------- records
@dataclass
class HandRecord:
    side: str
    score: float
    track_id: int
    joints: np.ndarray  # (21, 3) metres
    depth_source: str


@dataclass
class ArrayRecord:
    """One recorded HandArray: header stamp, bag receive time and the decoded hands."""

    stamp_ns: int
    recv_ns: int
    frame_id: str
    hands: list
    processing_ms: float
    camera_k: np.ndarray  # (3, 3)
    image_size: tuple  # (height, width)
    smoothed: bool


@dataclass
class ImageRecord:
    stamp_ns: int
    recv_ns: int


@dataclass
class BagContents:
    path: Path
    topics: dict  # name -> {'type', 'count', 'first_ns', 'last_ns'}
    image_topic: str | None = None
    hands_topic: str | None = None
    smoothed_topic: str | None = None
    images: list = field(default_factory=list)  # ImageRecord, bag order
    outputs: dict = field(default_factory=dict)  # topic -> [ArrayRecord], bag order
    model_info: dict | None = None

    def input_stamps(self) -> list:
        """Sorted unique input stamps: the recorded images', else the union of the output stamps."""
        if self.images:
            return sorted({r.stamp_ns for r in self.images})
        return sorted({r.stamp_ns for recs in self.outputs.values() for r in recs})


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def decode_hands(msg: Any) -> list[HandRecord]:
    """HandArray (rosbags, rclpy or mcap_ros2 object) -> [HandRecord]; only duck-typed field access."""
    hands: list[HandRecord] = []
    for h in msg.hands:
        joints = np.array([[p.x, p.y, p.z] for p in h.joints], np.float64)
        if joints.shape != (21, 3):
            raise ValueError(f'a recorded Hand has {len(h.joints)} joints, expected 21')
        hands.append(
            HandRecord(
                side='left' if int(h.handedness) == LEFT else 'right',
                score=float(h.score),
                track_id=int(h.track_id),
                joints=joints,
                depth_source=DEPTH_SOURCES.get(int(h.depth_source), 'camera_info'),
            )
        )
    return hands


def _array_record(msg: Any, recv_ns: int) -> ArrayRecord:
    return ArrayRecord(
        stamp_ns=_stamp_ns(msg.header),
        recv_ns=int(recv_ns),
        frame_id=str(msg.header.frame_id),
        hands=decode_hands(msg),
        processing_ms=float(msg.processing_time_ms),
        camera_k=np.asarray(msg.camera_k, np.float64).reshape(3, 3),
        image_size=(int(msg.image_height), int(msg.image_width)),
        smoothed=bool(msg.smoothed),
    )


# ---------------------------------------------------------------------------------------------- reading
def _bag_folder(bag_path: str | Path) -> Path:
    path = Path(bag_path)
    if path.is_file() and path.suffix == '.mcap' and (path.parent / 'metadata.yaml').is_file():
        path = path.parent  # a bag's .mcap file given: open its rosbag2 folder
    if not path.exists():
        raise FileNotFoundError(f'bag not found: {path}')
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        raise ValueError(f'{path} is not a rosbag2 folder (no metadata.yaml)')
    return path


def _default_typestore() -> Any:
    """Jazzy types plus ours: only used for bags that carry no message definitions."""
    from rosbags.typesys import Stores, get_typestore

    try:
        from hand_recon_ros.ros.bag_recorder import typestore_with

        return typestore_with()
    except (ImportError, FileNotFoundError):
        return get_typestore(Stores.ROS2_JAZZY)


def open_reader(bag_path: str | Path) -> AnyReader:
    from rosbags.highlevel import AnyReader

    return AnyReader([_bag_folder(bag_path)], default_typestore=_default_typestore())


def _pick_one(candidates: Sequence[str], what: str, flag: str) -> str | None:
    if len(candidates) > 1:
        raise ValueError(f'the bag has several {what} topics ({", ".join(sorted(candidates))}): choose one with {flag}')
    return candidates[0] if candidates else None


def read_bag(
    bag_path: str | Path,
    image_topic: str | None = None,
    hands_topic: str | None = None,
    smoothed_topic: str | None = None,
) -> BagContents:
    """Read everything the evaluation needs except the image pixels (kept out of memory)."""
    with open_reader(bag_path) as reader:
        types: dict[str, str] = {}
        topics: dict[str, dict[str, Any]] = {}
        for conn in reader.connections:
            types[conn.topic] = conn.msgtype
            entry = topics.setdefault(conn.topic, {'type': conn.msgtype, 'count': 0, 'first_ns': None, 'last_ns': None})
            entry['count'] += conn.msgcount
        for name, flag in (
            (image_topic, '--image-topic'),
            (hands_topic, '--hands-topic'),
            (smoothed_topic, '--smoothed-topic'),
        ):
            if name is not None and name not in types:
                raise ValueError(f'{flag} {name!r} is not in the bag; topics: {", ".join(sorted(types))}')
        hand_topics = [t for t, ty in types.items() if ty == HAND_ARRAY_TYPE]
        if hands_topic is None:
            hands_topic = _pick_one(
                [t for t in hand_topics if not t.endswith('_smoothed') and t != smoothed_topic],
                'raw HandArray',
                '--hands-topic',
            )
        if smoothed_topic is None:
            smoothed_topic = _pick_one(
                [t for t in hand_topics if t.endswith('_smoothed') and t != hands_topic],
                'smoothed HandArray',
                '--smoothed-topic',
            )
        if image_topic is not None:
            image_candidates = [image_topic]
        else:  # the node's own debug image is an output, never an input
            image_candidates = [t for t, ty in types.items() if ty in IMAGE_TYPES and 'debug_image' not in t]
        contents = BagContents(
            path=Path(bag_path), topics=topics, hands_topic=hands_topic, smoothed_topic=smoothed_topic
        )
        images_by_topic: dict[str, list[ImageRecord]] = {t: [] for t in image_candidates}
        wanted = (
            set(image_candidates)
            | {t for t in (hands_topic, smoothed_topic) if t}
            | {t for t, ty in types.items() if ty == MODEL_INFO_TYPE}
        )
        connections = [c for c in reader.connections if c.topic in wanted]
        for conn, recv_ns, raw in reader.messages(connections=connections):
            entry = topics[conn.topic]
            entry['first_ns'] = recv_ns if entry['first_ns'] is None else min(entry['first_ns'], recv_ns)
            entry['last_ns'] = recv_ns if entry['last_ns'] is None else max(entry['last_ns'], recv_ns)
            msg: Any = reader.deserialize(raw, conn.msgtype)  # duck-typed message (rosbags types it as object)
            if conn.topic in images_by_topic:
                images_by_topic[conn.topic].append(ImageRecord(_stamp_ns(msg.header), int(recv_ns)))
            elif conn.msgtype == MODEL_INFO_TYPE:
                contents.model_info = {
                    k: str(getattr(msg, k, ''))  # network_runner: not in bags recorded before 2026-12-07
                    for k in (
                        'network',
                        'weights_file',
                        'weights_sha256',
                        'weights_description',
                        'hand_model',
                        'device',
                        'precision',
                        'network_runner',
                    )
                }
            else:
                contents.outputs.setdefault(conn.topic, []).append(_array_record(msg, recv_ns))
    for t in (hands_topic, smoothed_topic):
        if t:
            contents.outputs.setdefault(t, [])
    if images_by_topic:
        # Several camera topics: the input is the one whose stamps the raw results carry.
        out_stamps = {r.stamp_ns for r in contents.outputs.get(hands_topic, [])}
        best = max(
            images_by_topic,
            key=lambda t: (len({r.stamp_ns for r in images_by_topic[t]} & out_stamps), len(images_by_topic[t])),
        )
        contents.image_topic, contents.images = best, images_by_topic[best]
    return contents


# ---------------------------------------------------------------------------------------------- statistics
def _finite(x: object) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def distribution(values: Iterable[float]) -> dict[str, Any]:
    values = np.asarray([v for v in values if _finite(float(v))], np.float64)
    if values.size == 0:
        return {'n': 0}
    return {
        'n': int(values.size),
        'mean': float(values.mean()),
        'p50': float(np.percentile(values, 50)),
        'p95': float(np.percentile(values, 95)),
        'min': float(values.min()),
        'max': float(values.max()),
    }


def rate_hz(recv_ns: Iterable[int]) -> float:
    """Messages per second over the receive-time span (n - 1 intervals)."""
    t = sorted(recv_ns)
    if len(t) < 2 or t[-1] <= t[0]:
        return float('nan')
    return (len(t) - 1) / ((t[-1] - t[0]) * 1e-9)


def receive_gaps_ms(images: Iterable[ImageRecord], outputs: Iterable[ArrayRecord]) -> list[float]:
    """Per output: its bag receive time minus that of the latest copy of its image received before it.

    Both times are the recorder's, so this is the node's delay as a subscriber sees it (transport of the
    result included); header stamps of synthetic or replayed inputs carry no usable clock.
    """
    by_stamp: dict[int, list[int]] = {}
    for img in images:
        by_stamp.setdefault(img.stamp_ns, []).append(img.recv_ns)
    gaps: list[float] = []
    for out in outputs:
        before = [t for t in by_stamp.get(out.stamp_ns, []) if t <= out.recv_ns]
        if before:
            gaps.append((out.recv_ns - max(before)) * 1e-6)
    return gaps


def drops(input_stamps: Sequence[int], outputs: Iterable[ArrayRecord]) -> dict[str, Any]:
    out_stamps = {r.stamp_ns for r in outputs}
    missing = [s for s in input_stamps if s not in out_stamps]
    extra = sorted(out_stamps - set(input_stamps))
    n = len(input_stamps)
    return {
        'input_frames': n,
        'answered': n - len(missing),
        'dropped': len(missing),
        'drop_ratio': len(missing) / n if n else float('nan'),
        'dropped_stamps_ns': missing,
        'outputs_without_input': len(extra),
    }


def joint_jitter(outputs: Iterable[ArrayRecord], input_stamps: Sequence[int]) -> dict[str, Any]:
    """Mean frame-to-frame joint acceleration |j[t+1] - 2 j[t] + j[t-1]| (mm/frame^2) of tracked hands.

    A hand is followed by (side, track_id) over consecutive input frames; a frame holding two hands with
    the same key is ambiguous for that key and skipped. Speed (mm/frame) is given for context: smoothing
    must lower the acceleration without hiding motion.
    """
    index = {s: i for i, s in enumerate(input_stamps)}
    tracks: dict[tuple[str, int], dict[int, np.ndarray]] = {}
    for rec in outputs:
        if rec.stamp_ns not in index:
            continue
        keys = [(h.side, h.track_id) for h in rec.hands]
        for h, key in zip(rec.hands, keys):
            if keys.count(key) == 1:
                tracks.setdefault(key, {})[index[rec.stamp_ns]] = h.joints
    accels: list[float] = []
    speeds: list[float] = []
    for frames in tracks.values():
        for i, joints in frames.items():
            if i - 1 in frames:
                speeds.append(np.linalg.norm(joints - frames[i - 1], axis=1).mean() * 1e3)
            if i - 1 in frames and i + 1 in frames:
                second = frames[i + 1] - 2.0 * joints + frames[i - 1]
                accels.append(np.linalg.norm(second, axis=1).mean() * 1e3)
    return {
        'tracks': len(tracks),
        'n_triplets': len(accels),
        'mean_accel_mm_per_frame2': float(np.mean(accels)) if accels else float('nan'),
        'p95_accel_mm_per_frame2': float(np.percentile(accels, 95)) if accels else float('nan'),
        'mean_speed_mm_per_frame': float(np.mean(speeds)) if speeds else float('nan'),
    }


# ---------------------------------------------------------------------------------------------- ground truth
def _gt_stamp_ns(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return int(value['sec']) * 1_000_000_000 + int(value.get('nanosec', 0))
    return int(round(float(value) * 1e9))


def load_ground_truth(path: str | Path) -> list[dict[str, Any]]:
    """ground_truth.json (tools/sample_frames format) -> [{'stamp_ns', 'hands': {side: (21, 3) joints}}].

    A frame may carry 'stamp' (seconds, or {'sec', 'nanosec'}); without it frames are matched in order
    to the bag's input frames.
    """
    data = json.loads(Path(path).read_text())
    frames = data.get('frames') if isinstance(data, dict) else None
    if not isinstance(frames, list):
        raise ValueError(f"{path}: expected an object with a 'frames' list (tools/sample_frames format)")
    out: list[dict[str, Any]] = []
    for i, frame in enumerate(frames):
        hands: dict[str, np.ndarray] = {}
        for side, hand in (frame.get('hands') or {}).items():
            if side not in ('left', 'right'):
                raise ValueError(f"{path}: frame {i}: hand side must be 'left' or 'right', got {side!r}")
            joints = np.asarray(hand['joints'], np.float64)
            if joints.shape != (21, 3):
                raise ValueError(f'{path}: frame {i} {side}: joints have shape {joints.shape}, expected (21, 3)')
            hands[side] = joints
        out.append({'stamp_ns': _gt_stamp_ns(frame.get('stamp')), 'hands': hands})
    return out


def assign_ground_truth(gt_frames: Sequence[dict[str, Any]], input_stamps: Sequence[int]) -> dict[int, dict[str, Any]]:
    """stamp_ns -> GT frame, by the frames' own stamps or else by order."""
    if all(f['stamp_ns'] is not None for f in gt_frames):
        return {f['stamp_ns']: f for f in gt_frames}
    if len(gt_frames) != len(input_stamps):
        raise ValueError(
            f'ground truth has {len(gt_frames)} frames but the bag has {len(input_stamps)} input '
            "frames: give each GT frame a 'stamp' (seconds) to match them by stamp"
        )
    return dict(zip(input_stamps, gt_frames))


def _best_per_side(hands: Iterable[HandRecord]) -> dict[str, HandRecord]:
    best: dict[str, HandRecord] = {}
    for h in hands:
        if h.side not in best or h.score > best[h.side].score:
            best[h.side] = h
    return best


def ground_truth_metrics(outputs: Iterable[ArrayRecord], gt_by_stamp: Mapping[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-hand MPJPE (wrist-relative), PA-MPJPE, root (wrist) error and per-frame MRRPE, all mm."""
    from hand_recon_ros import metrics
    from hand_recon_ros.conventions import ROOT_WRIST

    samples: list[dict[str, float]] = []
    per_side: dict[str, list[dict[str, float]]] = {'left': [], 'right': []}
    frames_used = 0
    gt_hands = detected = false_positives = 0
    mrrpes: list[float] = []
    for rec in outputs:
        gt = gt_by_stamp.get(rec.stamp_ns)
        if gt is None:
            continue
        frames_used += 1
        pred = _best_per_side(rec.hands)
        false_positives += sum(1 for side in pred if side not in gt['hands'])
        for side, gj in gt['hands'].items():
            gt_hands += 1
            h = pred.get(side)
            if h is None:
                continue
            detected += 1
            sample = {
                'mpjpe_mm': float(metrics.mpjpe(h.joints, gj, root=ROOT_WRIST)),
                'pa_mpjpe_mm': float(metrics.pa_mpjpe(h.joints, gj)),
                'root_error_mm': float(np.linalg.norm(h.joints[ROOT_WRIST] - gj[ROOT_WRIST]) * 1e3),
            }
            samples.append(sample)
            per_side[side].append(sample)
        if {'left', 'right'} <= set(pred) and {'left', 'right'} <= set(gt['hands']):
            mrrpes.append(
                float(
                    metrics.mrrpe(
                        pred['left'].joints[ROOT_WRIST],
                        pred['right'].joints[ROOT_WRIST],
                        gt['hands']['left'][ROOT_WRIST],
                        gt['hands']['right'][ROOT_WRIST],
                    )
                )
            )
    summary = metrics.summarize(samples)
    summary.update(
        {
            'frames': frames_used,
            'gt_hands': gt_hands,
            'detected': detected,
            'recall': detected / gt_hands if gt_hands else float('nan'),
            'false_positives': false_positives,
            'mrrpe_mm': float(np.mean(mrrpes)) if mrrpes else float('nan'),
            'n_mrrpe': len(mrrpes),
        }
    )
    summary['per_side'] = {side: metrics.summarize(s) for side, s in per_side.items() if s}
    return summary


# ---------------------------------------------------------------------------------------------- replay
@dataclass
class ReplayOptions:
    weights: str = ''
    device: str = 'auto'
    precision: str = ''  # '' = what the bag's hand_model_info records (bf16 and fp32 differ in the last digits)
    network_runner: str = ''  # '' = the recorded one (traced and eager bf16 round differently); traced | eager
    mano_dir: str | None = None
    detection_threshold: float = DETECTION_THRESHOLD
    min_side_share: float = MIN_SIDE_SHARE
    multi_hand: bool = False
    max_hands: int = 2
    tol_mm: float = 2.0
    score_tol: float = 0.01
    max_frames: int = 0


def pipeline_config(options: ReplayOptions, model_info: dict[str, Any] | None) -> PipelineConfig:
    """The node's model as far as the bag tells it: the recorded network string fixes an untrained net."""
    from hand_recon_ros.pipeline import PipelineConfig

    config = PipelineConfig(
        weights=options.weights,
        device=options.device,
        precision=options.precision or replay_precision(model_info, options.device),
        trace_network=(options.network_runner or replay_network_runner(model_info)) == 'traced',
        mano_dir=options.mano_dir,
        detection_threshold=options.detection_threshold,
        min_side_share=options.min_side_share,
        multi_hand=options.multi_hand,
        max_hands=options.max_hands,
    )
    network = (model_info or {}).get('network', '')
    if not options.weights and model_info is not None and not model_info.get('weights_sha256'):
        config.weights = 'untrained'  # the node ran the seeded random-init network: replay the same one
    if network.startswith('acr/') and '@' in network:
        backbone, size = network[4:].split('@', 1)
        config.backbone = backbone
        if size.isdigit():
            config.input_size = int(size)
    return config


def replay_network_runner(model_info: dict[str, Any] | None) -> str:
    """How the node ran its network: 'traced' or 'eager' as recorded; bags from before the field existed (empty)
    ran eager PyTorch."""
    recorded = str((model_info or {}).get('network_runner') or '')
    return recorded if recorded in ('traced', 'eager') else 'eager'


def replay_precision(model_info: dict[str, Any] | None, device: str) -> str:
    """The precision the node ran (its hand_model_info), so a replay reproduces it; 'auto' when the bag does not
    say, or says fp16 and the replay has no CUDA device."""
    from hand_recon_ros.runtime import resolve_device

    recorded = str((model_info or {}).get('precision') or '')
    if recorded not in ('fp32', 'fp16', 'bf16'):
        return 'auto'
    if recorded == 'fp16' and resolve_device(device).type != 'cuda':
        return 'auto'
    return recorded


def _image_to_bgr(msg: Any, msgtype: str) -> np.ndarray:
    from hand_recon_ros.ros.image_conversion import compressed_to_bgr8, imgmsg_to_numpy, to_bgr8

    if msgtype.endswith('CompressedImage'):
        return compressed_to_bgr8(msg)
    return to_bgr8(imgmsg_to_numpy(msg), str(msg.encoding))


def compare_hands(
    recorded: Sequence[HandRecord], replayed: Sequence[HandRecord], tol_mm: float, score_tol: float
) -> dict[str, Any]:
    """Same hands (sides and count) and joints within tol_mm (max over joints), scores within score_tol."""
    sides_rec = sorted(h.side for h in recorded)
    sides_rep = sorted(h.side for h in replayed)
    result: dict[str, Any] = {
        'same_hands': sides_rec == sides_rep,
        'recorded_sides': sides_rec,
        'replayed_sides': sides_rep,
        'max_joint_diff_mm': 0.0,
        'max_score_diff': 0.0,
    }
    if not result['same_hands']:
        result['ok'] = False
        return result
    for side in set(sides_rec):
        rec = [h for h in recorded if h.side == side]
        rep = [h for h in replayed if h.side == side]
        while rec:  # greedy pairing by wrist distance (several hands per side in multi-hand mode)
            pairs = [
                (np.linalg.norm(a.joints[0] - b.joints[0]), i, j) for i, a in enumerate(rec) for j, b in enumerate(rep)
            ]
            _, i, j = min(pairs)
            a, b = rec.pop(i), rep.pop(j)
            diff = float(np.linalg.norm(a.joints - b.joints, axis=1).max() * 1e3)
            result['max_joint_diff_mm'] = max(result['max_joint_diff_mm'], diff)
            result['max_score_diff'] = max(result['max_score_diff'], abs(a.score - b.score))
    result['ok'] = result['max_joint_diff_mm'] <= tol_mm and result['max_score_diff'] <= score_tol
    return result


def replay(
    contents: BagContents,
    options: ReplayOptions,
    reconstructor: HandReconstructor | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Run every recorded input image (each stamp once) through the offline pipeline and compare."""
    from hand_recon_ros.pipeline import create_reconstructor

    if contents.image_topic is None:
        raise ValueError('--replay needs the input images in the bag (record the camera topic too)')
    config = pipeline_config(options, contents.model_info)
    if reconstructor is None:
        reconstructor = create_reconstructor(config)
    reconstructor.set_runtime(
        detection_threshold=options.detection_threshold,
        min_side_share=options.min_side_share,
        multi_hand=options.multi_hand,
        max_hands=options.max_hands,
    )
    info = reconstructor.info()
    recorded = {r.stamp_ns: r for r in contents.outputs.get(contents.hands_topic, [])}
    frames: list[dict[str, Any]] = []
    seen: set[int] = set()
    times_ms: list[float] = []
    with open_reader(contents.path) as reader:
        connections = [c for c in reader.connections if c.topic == contents.image_topic]
        for conn, _, raw in reader.messages(connections=connections):
            if options.max_frames and len(frames) >= options.max_frames:
                break
            msg: Any = reader.deserialize(raw, conn.msgtype)  # duck-typed message (rosbags types it as object)
            stamp = _stamp_ns(msg.header)
            if stamp in seen:
                continue  # a re-sent copy of a frame already replayed
            seen.add(stamp)
            rec = recorded.get(stamp)
            if rec is None:
                frames.append({'stamp_ns': stamp, 'compared': False, 'reason': 'no recorded output'})
                continue
            image = _image_to_bgr(msg, conn.msgtype)
            K = rec.camera_k if rec.camera_k[0, 0] > 0 else None
            depth_source = rec.hands[0].depth_source if rec.hands else 'camera_info'
            t0 = time.perf_counter()
            result = reconstructor.reconstruct(image, K, depth_source=depth_source)
            times_ms.append((time.perf_counter() - t0) * 1e3)
            replayed = [
                HandRecord(h.handedness, float(h.score), 0, np.asarray(h.joints_3d, np.float64), h.depth_source)
                for h in result.hands
            ]
            row = compare_hands(rec.hands, replayed, options.tol_mm, options.score_tol)
            row.update({'stamp_ns': stamp, 'compared': True})
            frames.append(row)
    compared = [f for f in frames if f['compared']]
    failed = [f for f in compared if not f['ok']]
    recorded_sha = (contents.model_info or {}).get('weights_sha256')
    summary = {
        'frames_replayed': len(frames),
        'frames_compared': len(compared),
        'frames_failed': len(failed),
        'ok': bool(compared) and not failed,
        'max_joint_diff_mm': max((f['max_joint_diff_mm'] for f in compared), default=float('nan')),
        'max_score_diff': max((f['max_score_diff'] for f in compared), default=float('nan')),
        'hand_count_mismatches': sum(1 for f in compared if not f['same_hands']),
        'failed_stamps_ns': [f['stamp_ns'] for f in failed][:20],
        'tol_mm': options.tol_mm,
        'score_tol': options.score_tol,
        'offline_ms': distribution(times_ms),
        'network': info['network'],
        'device': info['device'],
        'precision': info['precision'],
        'weights_sha256': info['weights_sha256'],
        'weights_match_recorded': None if recorded_sha is None else recorded_sha == info['weights_sha256'],
        'detection_threshold': options.detection_threshold,
        'min_side_share': options.min_side_share,
    }
    log(
        f"[bag_eval] replay: {summary['frames_compared']} frames compared, {summary['frames_failed']} failed, "
        f"max joint difference {summary['max_joint_diff_mm']:.3f} mm"
    )
    return {'summary': summary, 'frames': frames}


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate(
    bag_path: str | Path,
    gt_path: str | Path | None = None,
    replay_options: ReplayOptions | None = None,
    image_topic: str | None = None,
    hands_topic: str | None = None,
    smoothed_topic: str | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    contents = read_bag(bag_path, image_topic, hands_topic, smoothed_topic)
    if contents.hands_topic is None and contents.smoothed_topic is None:
        raise ValueError(f'no {HAND_ARRAY_TYPE} topic in {bag_path}: was the node output recorded?')
    stamps = contents.input_stamps()
    report: dict[str, Any] = {
        'bag': str(contents.path),
        'topics': contents.topics,
        'model_info': contents.model_info,
        'image_topic': contents.image_topic,
        'hands_topic': contents.hands_topic,
        'smoothed_topic': contents.smoothed_topic,
        'inputs': {
            'messages': len(contents.images),
            'unique_frames': len({r.stamp_ns for r in contents.images}),
            'rate_hz': rate_hz([r.recv_ns for r in contents.images]),
        },
        'outputs': {},
    }
    gt_by_stamp = assign_ground_truth(load_ground_truth(gt_path), stamps) if gt_path else None
    for role, topic in (('raw', contents.hands_topic), ('smoothed', contents.smoothed_topic)):
        if topic is None:
            continue
        recs = contents.outputs[topic]
        entry: dict[str, Any] = {
            'topic': topic,
            'messages': len(recs),
            'rate_hz': rate_hz([r.recv_ns for r in recs]),
            'hands_per_message': float(np.mean([len(r.hands) for r in recs])) if recs else float('nan'),
            'processing_ms': distribution([r.processing_ms for r in recs]),
            'receive_gap_ms': distribution(receive_gaps_ms(contents.images, recs)),
            'drops': drops(stamps, recs),
            'jitter': joint_jitter(recs, stamps),
        }
        if gt_by_stamp is not None:
            entry['ground_truth'] = ground_truth_metrics(recs, gt_by_stamp)
        report['outputs'][role] = entry
    if replay_options is not None:
        report['replay'] = replay(contents, replay_options, log=log)
    return report


# ---------------------------------------------------------------------------------------------- output
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None  # JSON has no NaN
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def _fmt(value: object, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def _dist_text(d: Mapping[str, Any], digits: int = 1) -> str:
    if not d.get('n'):
        return '-'
    return f"{_fmt(d['p50'], digits)} / {_fmt(d['p95'], digits)} / {_fmt(d['max'], digits)} (n {d['n']})"


def markdown(report: Mapping[str, Any]) -> str:
    lines = ['# hand_recon bag evaluation', '', f"- bag: `{report['bag']}`"]
    info = report.get('model_info')
    if info:
        lines.append(
            f"- node model: `{info['network']}` on `{info['device']}` ({info['precision']}), weights "
            f"sha256 `{info['weights_sha256'][:16] or 'none (untrained)'}`, hand model {info['hand_model']}"
        )
    inputs = report['inputs']
    lines += [
        f"- input: `{report['image_topic'] or 'not recorded'}`: {inputs['messages']} messages, "
        f"{inputs['unique_frames']} distinct frames, {_fmt(inputs['rate_hz'], 2)} Hz",
        '',
        '| topic | type | messages |',
        '|---|---|---|',
    ]
    lines += [f"| `{t}` | {e['type']} | {e['count']} |" for t, e in sorted(report['topics'].items())]
    lines += [
        '',
        '## Outputs',
        '',
        '| | topic | messages | rate Hz | hands/msg | processing ms p50/p95/max | receive gap ms p50/p95/max '
        '| dropped | jitter mm/frame² (triplets, tracks) | speed mm/frame |',
        '|---' * 10 + '|',
    ]
    for role, e in report['outputs'].items():
        d, j = e['drops'], e['jitter']
        lines.append(
            f"| {role} | `{e['topic']}` | {e['messages']} | {_fmt(e['rate_hz'], 2)} | "
            f"{_fmt(e['hands_per_message'], 2)} | {_dist_text(e['processing_ms'])} | "
            f"{_dist_text(e['receive_gap_ms'])} | {d['dropped']}/{d['input_frames']} | "
            f"{_fmt(j['mean_accel_mm_per_frame2'], 2)} ({j['n_triplets']}, {j['tracks']}) | "
            f"{_fmt(j['mean_speed_mm_per_frame'], 2)} |"
        )
    lines += [
        '',
        'Receive gap: bag receive time of a result minus that of its input image (matched by header '
        'stamp). Jitter: mean |j[t+1] - 2 j[t] + j[t-1]| over the 21 joints of hands tracked over '
        'consecutive input frames.',
    ]
    if any('ground_truth' in e for e in report['outputs'].values()):
        lines += [
            '',
            '## Ground truth',
            '',
            '| | frames | recall | false pos. | MPJPE mm (wrist-rel.) | '
            'PA-MPJPE mm | root error mm | MRRPE mm | per side MPJPE / root mm |',
            '|---' * 9 + '|',
        ]
        for role, e in report['outputs'].items():
            g = e.get('ground_truth')
            if g is None:
                continue
            sides = (
                '; '.join(
                    f"{s} {_fmt(v.get('mpjpe_mm'))} / {_fmt(v.get('root_error_mm'))}" for s, v in g['per_side'].items()
                )
                or '-'
            )
            lines.append(
                f"| {role} | {g['frames']} | {_fmt(g['recall'], 3)} | {g['false_positives']} | "
                f"{_fmt(g.get('mpjpe_mm'))} | {_fmt(g.get('pa_mpjpe_mm'))} | {_fmt(g.get('root_error_mm'))} "
                f"| {_fmt(g['mrrpe_mm'])} | {sides} |"
            )
    rep = report.get('replay')
    if rep is not None:
        s = rep['summary']
        lines += [
            '',
            '## Replay parity (offline pipeline vs recorded node output)',
            '',
            f"- result: **{'PASS' if s['ok'] else 'FAIL'}**: {s['frames_compared']} frames compared, "
            f"{s['frames_failed']} outside tolerance ({s['tol_mm']} mm joints, {s['score_tol']} score), "
            f"{s['hand_count_mismatches']} with different hands",
            f"- max joint difference {_fmt(s['max_joint_diff_mm'], 3)} mm, max score difference "
            f"{_fmt(s['max_score_diff'], 4)}",
            f"- offline model `{s['network']}` on `{s['device']}` ({s['precision']}), detection threshold "
            f"{s['detection_threshold']}, weights match the recorded ones: {s['weights_match_recorded']}",
            f"- offline ms per frame p50/p95/max: {_dist_text(s['offline_ms'])}",
        ]
        if s['failed_stamps_ns']:
            lines.append(f"- failed stamps (ns): {', '.join(str(t) for t in s['failed_stamps_ns'])}")
    return '\n'.join(lines) + '\n'


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'report.json').write_text(json.dumps(_jsonable(report), indent=1))
    (out / 'report.md').write_text(markdown(report))
    return out


def build_parser() -> argparse.ArgumentParser:
    assert __doc__ is not None  # the module docstring above
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('bag', help='rosbag2 folder (or its .mcap file)')
    p.add_argument('--gt', help='ground_truth.json (tools/sample_frames format)')
    p.add_argument('--replay', action='store_true', help='re-run the recorded images offline and compare')
    p.add_argument('--out', help='report folder (default: <bag>_eval next to the bag)')
    p.add_argument('--image-topic')
    p.add_argument('--hands-topic')
    p.add_argument('--smoothed-topic')
    g = p.add_argument_group("replay (the node's model settings; the bag does not record parameters)")
    g.add_argument('--weights', default='', help="safetensors file ('' = shipped default / recorded untrained net)")
    g.add_argument('--device', default='auto', help='auto | cpu | cuda | cuda:N')
    g.add_argument(
        '--precision',
        default='',
        choices=('', 'auto', 'fp32', 'fp16', 'bf16'),
        help="default: the precision the bag's hand_model_info records (else auto)",
    )
    g.add_argument(
        '--network-runner',
        default='',
        choices=('', 'traced', 'eager'),
        help="default: how the bag's hand_model_info says the node ran its network (older bags: eager)",
    )
    g.add_argument('--mano-dir', default=None)
    g.add_argument('--detection-threshold', type=float, default=DETECTION_THRESHOLD)
    g.add_argument('--min-side-share', type=float, default=MIN_SIDE_SHARE)
    g.add_argument('--multi-hand', action='store_true')
    g.add_argument('--max-hands', type=int, default=2)
    g.add_argument('--tol-mm', type=float, default=2.0, help='joint tolerance of the parity check (mm)')
    g.add_argument('--score-tol', type=float, default=0.01)
    g.add_argument('--max-frames', type=int, default=0, help='replay at most this many frames (0 = all)')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code 0, or 1 when --replay finds outputs outside tolerance."""
    args = build_parser().parse_args(argv)
    options: ReplayOptions | None = None
    if args.replay:
        if args.tol_mm < 0 or args.score_tol < 0:
            raise SystemExit('--tol-mm and --score-tol must be >= 0')
        options = ReplayOptions(
            weights=args.weights,
            device=args.device,
            precision=args.precision,
            network_runner=args.network_runner,
            mano_dir=args.mano_dir,
            detection_threshold=args.detection_threshold,
            min_side_share=args.min_side_share,
            multi_hand=args.multi_hand,
            max_hands=args.max_hands,
            tol_mm=args.tol_mm,
            score_tol=args.score_tol,
            max_frames=args.max_frames,
        )
    try:
        report = evaluate(args.bag, args.gt, options, args.image_topic, args.hands_topic, args.smoothed_topic)
    except (FileNotFoundError, ValueError) as exc:
        print(f'bag_eval: error: {exc}', file=sys.stderr)
        return 2
    bag = Path(args.bag)
    out = (
        Path(args.out)
        if args.out
        else (bag.parent if bag.is_file() else bag).with_name((bag.parent if bag.is_file() else bag).name + '_eval')
    )
    write_report(report, out)
    print(f"[bag_eval] report: {out / 'report.md'}")
    rep = report.get('replay')
    return 1 if rep is not None and not rep['summary']['ok'] else 0


if __name__ == '__main__':
    sys.exit(main())
