"""HandReconstructor: a camera image (+ intrinsics) in, metric two-hand meshes out. No ROS here.

Per frame: letterbox -> ACR network -> centre-map decoding -> 6D rotations to axis-angle -> MANO (smplx)
-> weak-perspective 2D joints in the original image -> metric translation from the real intrinsics
(least squares on the 2D/3D joints) -> HandResult in the camera optical frame.

This module only composes those steps. The parts live beside it: the network, its factory (``create_model``,
weight discovery) and its parameter conversion in ``acr/``, hand placement in ``geometry/placement.py``,
device / precision / thread / hash helpers in ``runtime.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from hand_recon_ros import conventions
from hand_recon_ros.acr import confidence
from hand_recon_ros.acr.decoding import DecodeConfig, decode
from hand_recon_ros.acr.factory import (
    UNTRAINED,
    create_model,
    find_default_weights,
    find_shipped,
    model_search_dirs,
    weights_description,
)
from hand_recon_ros.acr.network import ACRNet
from hand_recon_ros.acr.params import params_to_mano
from hand_recon_ros.acr.preprocess import letterbox
from hand_recon_ros.acr.traced import TracedNetwork
from hand_recon_ros.conventions import SIDES  # network side index 0 = left, 1 = right (ACR order)
from hand_recon_ros.detection_defaults import (
    CENTER_ANCHOR,
    DETECTION_THRESHOLD,
    MAX_PAIR_OVERLAP,
    MIN_SIDE_SHARE,
    SIDE_SEPARATION,
)
from hand_recon_ros.detection_metrics import box_iou, keypoint_box
from hand_recon_ros.geometry import rotations
from hand_recon_ros.geometry.camera import LetterboxTransform, fallback_intrinsics, project_points
from hand_recon_ros.geometry.depth_placement import DepthPlacementConfig, depth_fix
from hand_recon_ros.geometry.image_rotation import TurnedView, check_turn, turn_image
from hand_recon_ros.geometry.placement import place_hands
from hand_recon_ros.landmarks.crop_stage import CropStage
from hand_recon_ros.landmarks.hand_update import LANDMARK_FACTOR, MIN_PRESENCE, landmark_hands
from hand_recon_ros.landmarks.mediapipe_port import INPUT_SIZE
from hand_recon_ros.landmarks.palm_detection import PalmDetector
from hand_recon_ros.onnx_runner import OnnxRunner, OnnxRunnerError, check_runtime, resolve_runtime
from hand_recon_ros.results import (
    DEPTH_SOURCE_CAMERA_INFO,
    DEPTH_SOURCE_DEPTH_IMAGE,
    DEPTH_SOURCE_WEAK_PERSPECTIVE,
    FrameResult,
    HandResult,
)
from hand_recon_ros.runtime import (
    autocast_dtype,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
    sha256_of,
    single_intra_op_thread,
)

if TYPE_CHECKING:
    from hand_recon_ros.hand_model.model import HandModel

LOG = logging.getLogger('hand_recon_ros.pipeline')


@dataclass
class PipelineConfig:
    weights: str = ''  # '' = shipped default model if present; 'untrained' = seeded random init
    allow_untrained: bool = True  # no weights found: seeded random init (demo/tests), loudly
    backbone: str = 'resnet18'  # only for the untrained network (or any acr.factory.create_model name)
    input_size: int = 256  # only for the untrained network
    mano_dir: str | None = None
    device: str = 'auto'
    precision: str = 'auto'  # auto: bf16 where the CPU computes it natively, else fp32 (runtime.resolve_precision)
    num_threads: int = 0
    detection_threshold: float = DETECTION_THRESHOLD
    min_side_share: float = MIN_SIDE_SHARE  # drop a peak whose side holds less of the two maps there
    side_separation: float = SIDE_SEPARATION  # both sides' tops closer (map px): search a separated pair instead
    center_anchor: float = CENTER_ANCHOR  # a hand drawn farther than this (map px) from its peak is moved onto it
    max_pair_overlap: float = MAX_PAIR_OVERLAP  # two hands whose keypoint boxes overlap more (IoU): one hand, twice
    multi_hand: bool = False
    max_hands: int = 2
    refine: bool = False  # IHMR-MLP refinement for close two-hand pairs (README: off by default, why)
    refine_gate_m: float = 0.3  # ... only when the wrists are closer than this
    refine_weights: str = ''  # IHMR-MLP weights; '' = models/ihmr_default.safetensors if shipped
    refine_stages: str = 'auto'  # auto: the stages the weights' held-out pairs ever accepted (refiner.resolve_stages)
    image_rotation: int = 0  # turn images clockwise by this (0/90/180/270) before the network: the camera's mount
    trace_network: bool = True  # frozen TorchScript graph per input shape (acr/traced.py: faster, GIL released)
    landmarks: bool = False  # redraw each found hand from the landmark network on a crop (landmarks/hand_update.py)
    landmark_passes: int = 2  # crops per hand (the second around the first answer)
    landmark_min_presence: float = MIN_PRESENCE  # drop a hand whose crop's presence is under this unless on a palm
    landmark_palms: bool = True  # place first crops on MediaPipe's palm detections where one lies on the hand
    landmark_new_hands: bool = True  # with palms: a palm no hand took, read as a hand of a free side, is a new hand
    # video: a hand's first crop follows its previous frame's answer (landmarks/crop_stage.py; off for still photos)
    landmark_tracking: bool = False
    # the landmark network under onnxruntime (auto: where it would run fp32 on the CPU; onnx_runner.py)
    landmark_runtime: str = 'auto'
    seed: int = 0


@dataclass
class NetworkPass:
    """One frame between :meth:`HandReconstructor.run_network` and :meth:`HandReconstructor.finish`: the chosen
    detections' parameters, the features the refinement and the confidences need, and the turn to undo."""

    params: torch.Tensor  # (N, 109) decoded parameters of the chosen detections, best first
    sides: list[str]
    scores: list[float]
    handedness_scores: list[float]
    image_size: tuple[int, int]  # (height, width) of the image the network saw
    intrinsics: np.ndarray  # K of that image (the virtual camera's when turned)
    depth_source: str
    image_feature: torch.Tensor  # (1, C, h, w)
    segmentation: torch.Tensor | None
    view: TurnedView | None  # the turn to undo; None when the camera's image went in as it was
    timings_ms: dict[str, float]
    image: np.ndarray | None = None  # the BGR image the network saw (turned when ``view``): for the landmark crops
    peak_centers: np.ndarray | None = None  # (N, 2) each detection's centre-map peak, normalised input (x, y)
    map_size: int = 0  # centre-map width: normalised units per map pixel = 2 / map_size


def check_center_anchor(value: float) -> float:
    """A valid ``center_anchor`` (map pixels, 0 = off) as float; ValueError otherwise."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f'center_anchor must be a finite number of map pixels >= 0 (0 = off), got {value}')
    return value


def peak_centers(
    center_logits: torch.Tensor, batch: Sequence[int], side: Sequence[int], y: Sequence[int], x: Sequence[int]
) -> np.ndarray:
    """(N, 2) normalised input (x, y) of each peak, refined inside its pixel by the 3 x 3 probability centroid
    (the training centre of a hand is its keypoint box centre / 8 - 0.5 in map pixels)."""
    out = np.zeros((len(batch), 2))
    if not len(batch):
        return out
    probs = torch.sigmoid(center_logits.detach().float()).numpy()
    height, width = probs.shape[-2:]
    for i, (b, s, py, px) in enumerate(zip(batch, side, y, x)):
        y0, y1, x0, x1 = max(py - 1, 0), min(py + 2, height), max(px - 1, 0), min(px + 2, width)
        window = probs[b, s, y0:y1, x0:x1]
        total = float(window.sum())
        dy = dx = 0.0
        if total > 0:
            dy = float((window.sum(1) * (np.arange(y0, y1) - py)).sum()) / total
            dx = float((window.sum(0) * (np.arange(x0, x1) - px)).sum()) / total
        cx, cy = px + float(np.clip(dx, -0.5, 0.5)), py + float(np.clip(dy, -0.5, 0.5))
        out[i] = ((cx + 0.5) * 2.0 / width - 1.0, (cy + 0.5) * 2.0 / height - 1.0)
    return out


def check_pair_overlap(value: float) -> float:
    """A valid ``max_pair_overlap`` (box IoU in [0, 1], 1 = off) as float; ValueError otherwise."""
    value = float(value)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f'max_pair_overlap must be a box IoU in [0, 1] (1 = off), got {value}')
    return value


def drop_overlapping_hands(hands: list[HandResult], max_overlap: float) -> list[HandResult]:
    """The hands, best score first, without any whose 2D keypoint box overlaps a better one's by more than
    ``max_overlap`` (IoU): one hand that both centre maps claimed, drawn twice. Order is kept."""
    if len(hands) < 2 or max_overlap >= 1.0:
        return hands
    boxes = [keypoint_box(h.keypoints_2d) for h in hands]
    kept: list[int] = []
    for i in sorted(range(len(hands)), key=lambda i: -hands[i].score):
        if all(box_iou(boxes[i], boxes[k]) <= max_overlap for k in kept):
            kept.append(i)
    return [hands[i] for i in sorted(kept)]


def anchor_camera(cam: Sequence[float], joints_model: np.ndarray, anchor: np.ndarray, tolerance: float) -> list[float]:
    """The weak camera (s, tx, ty), its translation shifted so that the hand's projected keypoint box centre
    lies on ``anchor`` when it is farther than ``tolerance`` from it (normalised input units).

    Why: the centre maps find hands where the parameter maps' translation can be wrong (hands rolled far from
    upright, seen as one hand drawn between two peaks); the peak is where the network saw the hand."""
    s, tx, ty = (float(v) for v in cam)
    rel = np.asarray(joints_model, np.float64)
    rel = rel[:, :2] - rel[conventions.ROOT_MIDDLE_MCP, :2]
    if not (np.isfinite(rel).all() and math.isfinite(s) and math.isfinite(tx) and math.isfinite(ty)):
        return [s, tx, ty]
    center = s * (rel.min(0) + rel.max(0)) / 2.0 + (tx, ty)
    offset = np.asarray(anchor, np.float64) - center
    if not np.isfinite(offset).all() or float(np.hypot(*offset)) <= tolerance:
        return [s, tx, ty]
    return [s, tx + float(offset[0]), ty + float(offset[1])]


class HandReconstructor:
    """The whole per-frame pipeline. Build with :func:`create_reconstructor`."""

    def __init__(
        self,
        network: ACRNet,
        hand_model: HandModel,
        device: torch.device,
        precision: str = 'fp32',
        weights_file: str | Path = '',
        weights_sha256: str = '',
        weights_description: str = '',
        detection_threshold: float = DETECTION_THRESHOLD,
        multi_hand: bool = False,
        max_hands: int = 2,
        refine: bool = False,
        refine_gate_m: float = 0.3,
        refine_weights: str | Path | None = None,
        min_side_share: float = MIN_SIDE_SHARE,
        refine_stages: str = 'auto',
        image_rotation: int = 0,
        side_separation: float = SIDE_SEPARATION,
        center_anchor: float = CENTER_ANCHOR,
        max_pair_overlap: float = MAX_PAIR_OVERLAP,
        trace_network: bool = False,
        landmarks: bool = False,
        landmark_passes: int = 2,
        landmark_min_presence: float = MIN_PRESENCE,
        landmark_palms: bool = True,
        landmark_new_hands: bool = True,
        landmark_tracking: bool = False,
        landmark_runtime: str = 'auto',
    ):
        # channels_last: 1.1-1.9x faster convolutions on CPU (oneDNN) and on tensor-core GPUs (bench_acr.py)
        # Module.to takes memory_format (documented); torch's stub overloads leave it out
        self.network = network.to(device).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.hand_model = hand_model
        self.device = device
        self.precision = precision
        self.autocast_dtype = autocast_dtype(precision, device)
        self.network_runner = TracedNetwork(self.network, self.autocast_dtype, enabled=trace_network)
        self.weights_file, self.weights_sha256 = str(weights_file), weights_sha256
        self.weights_description = weights_description
        self.input_size = network.config.input_size
        self.normalization = 'imagenet' if network.normalization == 'imagenet' else 'pm1'
        self.detection_threshold, self.multi_hand, self.max_hands = detection_threshold, multi_hand, max_hands
        self.min_side_share = float(min_side_share)
        self.side_separation = float(side_separation)
        self.center_anchor = check_center_anchor(center_anchor)
        self.max_pair_overlap = check_pair_overlap(max_pair_overlap)
        self._faces = {side: np.asarray(hand_model.faces(side), np.int64) for side in SIDES}
        from hand_recon_ros.refine import JointHead, build_refiner, joint_template

        self.refine_enabled, self.refine_gate_m = bool(refine), float(refine_gate_m)
        feature_dim = network.config.feature_dim
        self.joint_head = JointHead(feature_dim, template=joint_template(hand_model)).to(device).eval()
        self.refiner = build_refiner(feature_dim, hand_model=hand_model, gate_m=self.refine_gate_m).eval()
        self.refine_weights_file, self.refine_weights_sha256 = '', ''
        self.refine_acr_sha256 = ''  # the ACR whose features the refiner was trained on ('' = not recorded)
        self.refine_accept_rates: dict[str, float] = {}  # held-out acceptance per stage, recorded with the weights
        if refine_weights is not None:
            from hand_recon_ros.refine.weights import load_refiner_weights

            document = load_refiner_weights(self.refiner, self.joint_head, refine_weights)
            self.refiner.eval(), self.joint_head.eval()
            self.refine_weights_file, self.refine_weights_sha256 = str(refine_weights), sha256_of(refine_weights)
            self.refine_acr_sha256 = str((document.get('extra') or {}).get('acr_sha256') or '')
            metrics = (document.get('extra') or {}).get('metrics') or {}
            self.refine_accept_rates = dict(metrics.get('accept_rate') or {})
        self.refine_stages_spec = ''
        self.image_rotation = 0
        self._refiner_lock = threading.Lock()
        self.landmarks_enabled, self.landmark_passes, self.landmark_min_presence = False, 2, MIN_PRESENCE
        self.landmark_palms, self.landmark_new_hands, self.landmark_tracking = False, False, False
        self._crop_stage: CropStage | None = None  # built on first use (the landmark network loads then)
        self._palm_detector: PalmDetector | None = None  # likewise, when palms are on
        self._crop_stage_lock = threading.Lock()
        self.landmark_runtime = check_runtime(landmark_runtime)
        self.landmark_runner = ''  # what runs the landmark network once loaded: 'onnxruntime' or 'torch'
        self.landmark_runner_note = ''  # why it is not onnxruntime where that was asked for ('' = it is, or not asked)
        self.set_runtime(
            refine_stages=refine_stages,
            image_rotation=image_rotation,
            landmarks=landmarks,
            landmark_passes=landmark_passes,
            landmark_min_presence=landmark_min_presence,
            landmark_palms=landmark_palms,
            landmark_new_hands=landmark_new_hands,
            landmark_tracking=landmark_tracking,
        )

    def _landmark_dtype(self) -> torch.dtype | None:
        # the crop networks run on the node's device; bf16 where the network runs bf16 on a CPU that has it natively
        # (emulated, depthwise convolutions take a slow path: ~0.7 s per landmark crop, not 14 ms); fp32 on a GPU
        # (half precision there was never measured against MediaPipe; the palm detector degrades in bf16)
        native = self.device.type == 'cpu' and cpu_has_native_bf16()
        return self.autocast_dtype if native else None

    def palm_detector(self) -> PalmDetector:
        """MediaPipe's palm detector for the crop stage's first crops (loaded on first use)."""
        with self._crop_stage_lock:
            if self._palm_detector is None:
                from hand_recon_ros.landmarks import load_palm_model

                self._palm_detector = PalmDetector(
                    load_palm_model(), autocast_dtype=self._landmark_dtype(), device=self.device
                )
            return self._palm_detector

    def landmark_stage(self) -> CropStage:
        """The crop stage (loaded on first use; shared by every frame and by benchmarks that run the node's path)."""
        with self._crop_stage_lock:
            if self._crop_stage is None:
                from hand_recon_ros.landmarks import load_landmark_model

                model = load_landmark_model()
                self._crop_stage = CropStage(
                    model, autocast_dtype=self._landmark_dtype(), device=self.device, runner=self._onnx_runner(model)
                )
            return self._crop_stage

    def _onnx_runner(self, model: torch.nn.Module) -> OnnxRunner | None:
        """The landmark network under onnxruntime where ``landmark_runtime`` asks for it (None: PyTorch runs it)."""
        self.landmark_runner = resolve_runtime(self.landmark_runtime, self.device, self._landmark_dtype())
        if self.landmark_runner != 'onnxruntime':
            return None
        threads = torch.get_num_threads() if self.device.type == 'cpu' else 1
        try:
            return OnnxRunner(model, (INPUT_SIZE, INPUT_SIZE, 3), num_threads=threads)
        except OnnxRunnerError as exc:
            self.landmark_runner, self.landmark_runner_note = 'torch', str(exc)
            return None

    def refiner_matches_network(self) -> bool | None:
        """Whether the refiner was trained on this network's features (None: no weights or no record)."""
        if not self.refine_weights_file or not self.refine_acr_sha256 or not self.weights_sha256:
            return None
        return self.refine_acr_sha256 == self.weights_sha256

    # ------------------------------------------------------------------ configuration
    def set_runtime(
        self,
        detection_threshold: float | None = None,
        multi_hand: bool | None = None,
        max_hands: int | None = None,
        refine: bool | None = None,
        refine_gate_m: float | None = None,
        min_side_share: float | None = None,
        refine_stages: str | None = None,
        image_rotation: int | None = None,
        side_separation: float | None = None,
        center_anchor: float | None = None,
        max_pair_overlap: float | None = None,
        landmarks: bool | None = None,
        landmark_passes: int | None = None,
        landmark_min_presence: float | None = None,
        landmark_palms: bool | None = None,
        landmark_new_hands: bool | None = None,
        landmark_tracking: bool | None = None,
    ) -> None:
        """Change the per-frame settings; a bad value (``refine_stages``, ``image_rotation``, landmark settings ...)
        raises ValueError and changes nothing. Any change ends the crop stage's tracking: the next frame starts over."""
        if image_rotation is not None:
            check_turn(image_rotation)
        if landmark_passes is not None and not 1 <= int(landmark_passes) <= 3:
            raise ValueError(f'landmark_passes must be 1, 2 or 3, got {landmark_passes}')
        if landmark_min_presence is not None and not 0.0 <= float(landmark_min_presence) <= 1.0:
            raise ValueError(f'landmark_min_presence must be in [0, 1], got {landmark_min_presence}')
        # load the networks now: a missing file is refused here, not per frame
        if landmarks or (landmarks is None and self.landmarks_enabled):
            self.landmark_stage()
            if landmark_palms or (landmark_palms is None and self.landmark_palms):
                self.palm_detector()
        if side_separation is not None:
            DecodeConfig(side_separation=float(side_separation))  # validates
        if center_anchor is not None:
            check_center_anchor(center_anchor)
        if max_pair_overlap is not None:
            check_pair_overlap(max_pair_overlap)
        if refine_stages is not None:
            from hand_recon_ros.refine import resolve_stages

            stages = resolve_stages(refine_stages, self.refine_accept_rates)
            with self._refiner_lock:
                self.refiner.set_stages(stages)
            self.refine_stages_spec = refine_stages
        if detection_threshold is not None:
            self.detection_threshold = float(detection_threshold)
        if min_side_share is not None:
            self.min_side_share = float(min_side_share)
        if side_separation is not None:
            self.side_separation = float(side_separation)
        if center_anchor is not None:
            self.center_anchor = check_center_anchor(center_anchor)
        if max_pair_overlap is not None:
            self.max_pair_overlap = check_pair_overlap(max_pair_overlap)
        if multi_hand is not None:
            self.multi_hand = bool(multi_hand)
        if max_hands is not None:
            self.max_hands = int(max_hands)
        if refine is not None:
            self.refine_enabled = bool(refine)
        if landmark_passes is not None:
            self.landmark_passes = int(landmark_passes)
        if landmark_min_presence is not None:
            self.landmark_min_presence = float(landmark_min_presence)
        if landmark_palms is not None:
            self.landmark_palms = bool(landmark_palms)
        if landmark_new_hands is not None:
            self.landmark_new_hands = bool(landmark_new_hands)
        if landmark_tracking is not None:
            self.landmark_tracking = bool(landmark_tracking)
        if landmarks is not None:
            self.landmarks_enabled = bool(landmarks)
        if refine_gate_m is not None:
            self.refine_gate_m = self.refiner.gate_m = float(refine_gate_m)
        if image_rotation is not None:
            self.image_rotation = check_turn(image_rotation)
        if self._crop_stage is not None:
            self._crop_stage.forget()

    def decode_config(self) -> DecodeConfig:
        multi = self.multi_hand and self.network.config.center_attention == 'peak'
        return DecodeConfig(
            threshold=self.detection_threshold,
            max_per_side=max(1, self.max_hands) if multi else 1,
            side_separation=self.side_separation,
        )

    def faces(self, side: str) -> np.ndarray:
        return self._faces[side]

    @property
    def model_id(self) -> str:
        """Short identity of network + weights + hand model (HandArray.model_id / HandModelInfo.model_id)."""
        cfg = self.network.config
        weights = self.weights_sha256[:12] if self.weights_sha256 else 'untrained'
        hand = hashlib.sha256(str(self.hand_model.identity).encode()).hexdigest()[:12]
        return f'acr/{cfg.backbone}@{cfg.input_size}|weights:{weights}|hand:{hand}'

    def info(self) -> dict[str, Any]:
        cfg = self.network.config
        return {
            'network': f'acr/{cfg.backbone}@{cfg.input_size}',
            'model_id': self.model_id,
            'weights_file': self.weights_file,
            'weights_sha256': self.weights_sha256,
            'weights_description': self.weights_description,
            'hand_model': self.hand_model.identity,
            'hand_model_is_standin': self.hand_model.is_standin,
            'device': str(self.device),
            'precision': self.precision,
            'network_runner': self.network_runner.mode,
            'landmarks': self.landmarks_enabled,
            'landmark_palms': self.landmarks_enabled and self.landmark_palms,
            'landmark_new_hands': self.landmarks_enabled and self.landmark_palms and self.landmark_new_hands,
            'landmark_runner': self.landmark_runner,
            'num_threads': torch.get_num_threads() if self.device.type == 'cpu' else 0,
            'refine_weights_file': self.refine_weights_file,
            'refine_weights_sha256': self.refine_weights_sha256,
            'refine_stages': list(self.refiner.stages),
            'image_rotation': self.image_rotation,
            'num_vertices': int(
                self.hand_model.num_vertices if hasattr(self.hand_model, 'num_vertices') else conventions.NUM_VERTICES
            ),
            'faces_right': self._faces['right'],
            'faces_left': self._faces['left'],
        }

    # ------------------------------------------------------------------ per frame
    @torch.inference_mode()
    def reconstruct(
        self,
        image_bgr: np.ndarray,
        K: np.ndarray | None = None,
        depth_source: str = DEPTH_SOURCE_CAMERA_INFO,
        depth_m: np.ndarray | None = None,
    ) -> FrameResult:
        """One BGR uint8 frame (any size) -> FrameResult. K: 3x3 intrinsics (None: fallback FOV). ``depth_m``: a
        depth image (H, W) in metres registered to this image (any resolution of the same aspect ratio): hands it
        reads are placed by it (:func:`place_by_depth`)."""
        return self.finish(self.run_network([image_bgr], [K], [depth_source])[0], depth_m)

    @torch.inference_mode()
    def reconstruct_batch(
        self,
        images_bgr: Sequence[np.ndarray],
        Ks: Sequence[np.ndarray | None] | None = None,
        depth_sources: Sequence[str] | None = None,
    ) -> list[FrameResult]:
        """Several frames (e.g. one per camera, any sizes) in ONE network forward -> one FrameResult each.

        With ``image_rotation`` set, each image is turned clockwise before the network and every result is
        turned back: pixels, intrinsics and the camera frame are always those of the camera that took it."""
        return [self.finish(network_pass) for network_pass in self.run_network(images_bgr, Ks, depth_sources)]

    @torch.inference_mode()
    def run_network(
        self,
        images_bgr: Sequence[np.ndarray],
        Ks: Sequence[np.ndarray | None] | None = None,
        depth_sources: Sequence[str] | None = None,
    ) -> list[NetworkPass]:
        """The first half of :meth:`reconstruct_batch`: letterbox, one network forward, centre-map decoding.

        :meth:`finish` makes the hands from each pass. The halves touch different modules, so a caller may run
        ``finish`` of one frame on another thread while ``run_network`` of the next runs (the node's
        ``pipelined`` mode); ``set_runtime`` between them is safe."""
        n = len(images_bgr)
        Ks = list(Ks) if Ks is not None else [None] * n
        depth_sources = list(depth_sources) if depth_sources is not None else [DEPTH_SOURCE_CAMERA_INFO] * n
        if not (len(Ks) == len(depth_sources) == n) or n == 0:
            raise ValueError(f'need one K and depth source per image, got {n} images, {len(Ks)} Ks')
        degrees = self.image_rotation
        if degrees == 0:
            return self._run_network(images_bgr, Ks, depth_sources, [None] * n)
        t = time.perf_counter()
        views, turned = [], []
        for i, image in enumerate(images_bgr):
            height, width = image.shape[:2]
            if Ks[i] is None:  # the camera's fallback, not one for the turned image's width
                Ks[i], depth_sources[i] = fallback_intrinsics(width, height), 'fallback_fov'
            views.append(TurnedView(degrees, width, height, cast(np.ndarray, Ks[i])))
            turned.append(turn_image(image, degrees))
        turn_ms = (time.perf_counter() - t) * 1e3
        passes = self._run_network(turned, [v.K_virtual for v in views], depth_sources, views)
        for network_pass in passes:
            network_pass.timings_ms['preprocess'] += turn_ms
        return passes

    def _run_network(
        self,
        images_bgr: Sequence[np.ndarray],
        Ks: list[np.ndarray | None],
        depth_sources: list[str],
        views: Sequence[TurnedView | None],
    ) -> list[NetworkPass]:
        n = len(images_bgr)
        timings = {}
        t = time.perf_counter()
        sizes, tensors = [], []
        for i, image in enumerate(images_bgr):
            height, width = image.shape[:2]
            sizes.append((height, width))
            if Ks[i] is None:
                Ks[i], depth_sources[i] = fallback_intrinsics(width, height), 'fallback_fov'
            tensors.append(
                letterbox(image, self.input_size, bgr=True, normalization=self.normalization, channels_last=True)[0]
            )
        intrinsics = cast('list[np.ndarray]', Ks)  # every None was replaced by the fallback above
        batch = (tensors[0] if n == 1 else torch.cat(tensors)).to(self.device, non_blocking=True)
        batch = batch.contiguous(memory_format=torch.channels_last)
        timings['preprocess'] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        outputs = {k: v.float() for k, v in self.network_runner(batch).items()}
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        timings['network'] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        with single_intra_op_thread():
            host = {k: v.cpu() for k, v in outputs.items() if k in ('center_maps', 'params', 'prior')}
            dets = decode(host, self.decode_config())
            det_handedness = confidence.handedness_scores(
                host['center_maps'], dets.batch_index.tolist(), dets.side.tolist(), dets.y.tolist(), dets.x.tolist()
            )
        det_batch, det_side, det_score = dets.batch_index.tolist(), dets.side.tolist(), dets.score.tolist()
        centers = peak_centers(host['center_maps'], det_batch, det_side, dets.y.tolist(), dets.x.tolist())
        assigned = dets.side_assigned.tolist() if dets.side_assigned is not None else [False] * len(dets)
        timings['decode'] = (time.perf_counter() - t) * 1e3

        passes = []
        for b in range(n):
            # a peak whose own side holds too little of the two maps there: the other side's hand seen twice (a
            # side chosen by the separated-pair search already rules that out)
            mine = [
                i
                for i in range(len(dets))
                if det_batch[i] == b and (det_handedness[i] >= self.min_side_share or assigned[i])
            ]
            order = sorted(mine, key=lambda i: -det_score[i])[: max(1, self.max_hands)]
            assert dets.params is not None  # decode() always fills it
            passes.append(
                NetworkPass(
                    params=dets.params[order].float(),
                    sides=[SIDES[det_side[i]] for i in order],
                    scores=[det_score[i] for i in order],
                    handedness_scores=[det_handedness[i] for i in order],
                    image_size=sizes[b],
                    intrinsics=np.asarray(intrinsics[b], np.float64),
                    depth_source=depth_sources[b],
                    image_feature=outputs['image_feature'][b : b + 1],
                    segmentation=outputs['segmentation'][b] if 'segmentation' in outputs else None,
                    view=views[b],
                    timings_ms=dict(timings),
                    image=images_bgr[b],
                    peak_centers=centers[order],
                    map_size=int(host['center_maps'].shape[-1]),
                )
            )
        return passes

    @torch.inference_mode()
    def finish(self, network_pass: NetworkPass, depth_m: np.ndarray | None = None) -> FrameResult:
        """The second half of :meth:`reconstruct_batch`: MANO, metric placement, refinement, confidences; with
        ``depth_m`` (metres, registered to the frame) the hands it reads are then placed by it."""
        p = network_pass
        timings = dict(p.timings_ms)
        t = time.perf_counter()
        hands = []
        if p.sides:
            anchors = p.peak_centers if self.center_anchor > 0 and p.peak_centers is not None else None
            hands = self.hands_from_params(
                p.params,
                p.sides,
                p.scores,
                p.image_size,
                p.intrinsics,
                p.depth_source,
                p.handedness_scores,
                anchors=anchors,
                anchor_tolerance=self.center_anchor * 2.0 / max(p.map_size, 1),
            )
        hands = drop_overlapping_hands(hands, self.max_pair_overlap)
        timings['mano_and_camera'] = (time.perf_counter() - t) * 1e3
        new_hands = self.landmark_palms and self.landmark_new_hands
        landmark_counts: dict[str, int] = {}
        if self.landmarks_enabled and (hands or new_hands) and p.image is not None:
            t = time.perf_counter()
            stage = self.landmark_stage()
            stage.iterations = self.landmark_passes
            stage.palms = self.palm_detector() if self.landmark_palms else None
            stage.tracking = self.landmark_tracking
            followed_before, palm_runs_before = stage.tracked_crops, stage.palm_runs
            with single_intra_op_thread():
                hands, _ = landmark_hands(
                    p.image,
                    hands,
                    p.intrinsics,
                    stage,
                    self.hand_model,
                    self.landmark_min_presence,
                    new_hands=new_hands,
                    # the fit follows the depth image's 3D where it reads the hand (camera pixels: not when turned)
                    depth_m=depth_m if p.view is None else None,
                )
            timings['landmarks'] = (time.perf_counter() - t) * 1e3
            landmark_counts = {
                'redrawn_hands': sum(LANDMARK_FACTOR in h.refined_factors for h in hands),
                'followed_crops': stage.tracked_crops - followed_before,
                'palm_runs': stage.palm_runs - palm_runs_before,
            }
        if self.refine_enabled and len({h.handedness for h in hands}) == 2:
            t = time.perf_counter()
            with self._refiner_lock:  # set_runtime may change the refiner's stages from another thread
                hands = self.refine_hands(hands, p.image_feature, p.intrinsics)
            timings['refine'] = (time.perf_counter() - t) * 1e3
        if p.segmentation is not None:
            # after refinement: the confidence belongs to the published keypoints
            for hand in hands:
                hand.joint_confidence = confidence.joint_confidences(
                    p.segmentation, hand.keypoints_2d, hand.handedness, p.image_size, self.input_size
                )
        result = FrameResult(
            hands=hands,
            image_size=p.image_size,
            intrinsics=p.intrinsics.copy(),
            timings_ms=timings,
            model_id=self.model_id,
            landmark_counts=landmark_counts,
        )
        if p.view is not None:
            _turn_back(result, p.view)
        if depth_m is not None:
            t = time.perf_counter()
            result.hands, result.depth_placed = place_by_depth(result.hands, depth_m, result.image_size)
            result.timings_ms['depth'] = (time.perf_counter() - t) * 1e3
        return result

    def refine_hands(self, hands: list[HandResult], image_feature: torch.Tensor, K: np.ndarray) -> list[HandResult]:
        """IHMR-MLP on the best left/right pair when they are close; accepted factors update the hands."""
        from hand_recon_ros.refine import TwoHandState, forward_hands, should_refine

        state = TwoHandState.from_hand_results(hands)
        if not should_refine(state, self.refine_gate_m):
            return hands
        feature = image_feature.float().cpu()
        head = {k: v.cpu() for k, v in self.joint_head(image_feature.float()).items()}
        new_state, accepted, _ = self.refiner.refine(state, feature, head)
        if not accepted:
            return hands
        meshes = forward_hands(self.hand_model, new_state.to_vector())
        done = set()
        for hand in hands:
            side = hand.handedness
            if side in done:
                continue  # only the best hand per side was refined
            done.add(side)
            verts, joints = (m[0].detach().cpu().numpy().astype(np.float64) for m in meshes[side])
            params = getattr(new_state, side)
            orient = params.global_orient.reshape(3).detach().cpu()
            hand.joints_3d = joints.astype(np.float32)
            hand.vertices = verts.astype(np.float32)
            hand.keypoints_2d = project_points(joints, K).astype(np.float32)
            hand.wrist_position = joints[0].astype(np.float32)
            hand.wrist_orientation = rotations.axis_angle_to_quaternion(orient[None])[0].numpy().astype(np.float32)
            hand.mano_pose = np.concatenate(
                [orient.numpy(), params.hand_pose.reshape(45).detach().cpu().numpy()]
            ).astype(np.float32)
            hand.mano_shape = params.betas.reshape(10).detach().cpu().numpy().astype(np.float32)
            hand.center_2d = hand.keypoints_2d[conventions.ROOT_MIDDLE_MCP]
            hand.refined_factors = tuple(accepted)
        return hands

    def hands_from_params(
        self,
        params: torch.Tensor,
        sides: Sequence[str],
        scores: Sequence[float],
        image_size: tuple[int, int],
        K: np.ndarray,
        depth_source: str = DEPTH_SOURCE_CAMERA_INFO,
        handedness_scores: Sequence[float] | None = None,
        anchors: np.ndarray | None = None,
        anchor_tolerance: float = 0.0,
    ) -> list[HandResult]:
        """(N, 109) decoded parameters -> HandResults in the camera frame (metres) and image pixels.

        ``anchors`` (N, 2): where each hand's centre-map peak is (normalised input x, y); a hand whose projected
        keypoint box centre is farther than ``anchor_tolerance`` (normalised units) from it is moved onto it
        (the weak camera's translation is shifted; pose, shape and scale are kept).

        joint_confidence is the detection score here; reconstruct_batch replaces it with the per-joint
        segmentation confidence once the final keypoints are known."""
        handedness_scores = handedness_scores if handedness_scores is not None else [0.5] * len(sides)
        height, width = image_size
        transform = LetterboxTransform(height, width, self.input_size)
        with single_intra_op_thread():
            mano = params_to_mano(params)
            meshes = {}
            for side in SIDES:
                idx = [i for i, s in enumerate(sides) if s == side]
                if not idx:
                    continue
                sel = torch.tensor(idx)
                res = self.hand_model(
                    side,
                    mano['global_orient'][sel].to(self.device),
                    mano['hand_pose'][sel].to(self.device),
                    mano['betas'][sel].to(self.device),
                )
                verts_side, joints_side = (res[k].float().cpu().numpy() for k in ('vertices', 'joints'))
                for k, i in enumerate(idx):
                    meshes[i] = (verts_side[k], joints_side[k])
        # one host conversion per quantity for all hands instead of one per hand
        cams = mano['cam'].tolist()
        if anchors is not None:
            cams = [
                anchor_camera(cam, joints, anchor, anchor_tolerance)
                for cam, (_, joints), anchor in zip(cams, (meshes[i] for i in range(len(sides))), anchors)
            ]
        quats = mano['root_quaternion'].numpy()
        poses = torch.cat([mano['global_orient'], mano['hand_pose']], dim=1).numpy()
        betas = mano['betas'].numpy()
        verts_model, joints_model = zip(*(meshes[i] for i in range(len(sides))))
        placements = place_hands(
            joints_model,
            verts_model,
            cams,
            K,
            transform,
            weak_perspective=depth_source == DEPTH_SOURCE_WEAK_PERSPECTIVE,
        )
        hands = []
        for i, placed in enumerate(placements):
            side = sides[i]
            if placed is None:
                LOG.debug('dropping a %s hand: it cannot be placed in front of the camera', side)
                continue
            s, tx, ty = cams[i]
            # The published 2D keypoints are the projection of the published 3D joints (one consistent answer).
            joints_cam, verts_cam, keypoints = placed.joints, placed.vertices, placed.keypoints_2d
            quat, pose48 = quats[i], poses[i]
            hand = HandResult(
                handedness=side,
                score=scores[i],
                joints_3d=joints_cam.astype(np.float32),
                keypoints_2d=keypoints.astype(np.float32),
                joint_confidence=np.full(21, scores[i], np.float32),
                handedness_score=float(handedness_scores[i]),
                wrist_position=joints_cam[0].astype(np.float32),
                wrist_orientation=quat.astype(np.float32),
                vertices=verts_cam.astype(np.float32),
                mano_pose=pose48.astype(np.float32),
                mano_shape=betas[i].astype(np.float32),
                weak_camera=np.array([s, tx, ty], np.float32),
                depth_source=depth_source,
                center_2d=keypoints[conventions.ROOT_MIDDLE_MCP].astype(np.float32),
            )
            try:
                hand.validate()
            except ValueError as exc:
                LOG.debug('dropping a %s hand: %s', side, exc)
                continue
            hands.append(hand)
        return hands


def place_by_depth(
    hands: Sequence[HandResult],
    depth_m: np.ndarray,
    image_size: tuple[int, int],
    config: DepthPlacementConfig | None = None,
) -> tuple[list[HandResult], int]:
    """-> (the hands, each the depth image reads scaled about the camera centre onto it, with depth_source
    'depth_image'; the number so placed). Projections do not change; distance and size do. ``image_size``: (height,
    width) of the colour image the keypoints are in. A depth image of another aspect ratio: ValueError."""
    config = config or DepthPlacementConfig()
    out, placed = [], 0
    for hand in hands:
        fix = depth_fix(hand.joints_3d, hand.keypoints_2d, depth_m, image_size, config)
        if fix is None:
            out.append(hand)
            continue
        s = np.float32(fix.scale)
        out.append(
            dataclasses.replace(
                hand,
                joints_3d=hand.joints_3d * s,
                wrist_position=hand.wrist_position * s,
                vertices=None if hand.vertices is None else hand.vertices * s,
                joint_velocities=None if hand.joint_velocities is None else hand.joint_velocities * s,
                depth_source=DEPTH_SOURCE_DEPTH_IMAGE,
            )
        )
        placed += 1
    return out, placed


def _turn_back(result: FrameResult, view: TurnedView) -> None:
    """A result of the virtual (turned) camera -> the camera's pixels and optical frame, in place."""
    for hand in result.hands:
        hand.keypoints_2d = view.pixels_back(hand.keypoints_2d)
        hand.center_2d = view.pixels_back(hand.center_2d)
        hand.joints_3d = view.points_back(hand.joints_3d)
        hand.wrist_position = view.points_back(hand.wrist_position)
        if hand.vertices is not None:
            hand.vertices = view.points_back(hand.vertices)
        if hand.joint_velocities is not None:
            hand.joint_velocities = view.points_back(hand.joint_velocities)
        wrist = view.rotation_back(rotations.quaternion_to_matrix(hand.wrist_orientation.astype(np.float64)))
        hand.wrist_orientation = np.asarray(rotations.matrix_to_quaternion(wrist), np.float32)
        root = view.rotation_back(rotations.axis_angle_to_matrix(hand.mano_pose[:3].astype(np.float64)))
        hand.mano_pose = hand.mano_pose.copy()
        hand.mano_pose[:3] = np.asarray(rotations.matrix_to_axis_angle(root), np.float32)
    result.image_size = view.size
    result.intrinsics = view.K.copy()


def create_reconstructor(config: PipelineConfig, logger: Any = None) -> HandReconstructor:
    """Load weights (or build the untrained network), the hand model, and move both to the device.

    ``logger``: a ``logging.Logger`` or an rclpy logger (``warning``/``warn``, ``info``); default this module's."""
    log = logger or LOG
    warn = getattr(log, 'warning', None) or log.warn
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    from hand_recon_ros.hand_model.model import load_hand_model

    if config.weights == UNTRAINED:
        path = None  # explicit: the seeded random-init network even when a default model is shipped
    elif config.weights:
        path = Path(config.weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path} (parameter 'weights')")
    else:
        path = find_default_weights()
    if path is not None:
        network = create_model(path)
        sha, weights_file, description = sha256_of(path), str(path), weights_description(path)
    elif config.allow_untrained or config.weights == UNTRAINED:
        network = create_model(config.backbone, seed=config.seed, input_size=int(config.input_size))
        sha, weights_file = '', ''
        description = 'UNTRAINED: seeded random initialisation; outputs are not meaningful'
        warn(
            'no trained weights found: running an UNTRAINED (seeded random-init) network; hand outputs are '
            'not meaningful. Set the weights parameter to a trained safetensors file.'
        )
    else:
        raise FileNotFoundError(
            'no weights file given and no shipped default model found in '
            + ', '.join(str(d) for d in model_search_dirs())
        )
    refine_path = None
    if config.refine_weights:
        refine_path = Path(config.refine_weights).expanduser()
        if not refine_path.is_file():
            raise FileNotFoundError(f"refinement weights not found: {refine_path} (parameter 'refinement.weights')")
    else:
        refine_path = find_shipped('ihmr_default.safetensors')
        if refine_path is None and config.refine:
            warn(
                'no trained IHMR-MLP weights: the refinement runs untrained (its verification rejects any '
                'candidate that is worse, so it cannot make results worse)'
            )
    if device.type == 'cpu' and precision == 'fp32' and cpu_has_native_bf16():
        info = getattr(log, 'info', None) or warn
        info(
            'this CPU computes bf16 natively: precision bf16 (or auto, the default) runs the network 1.3-1.8x '
            'faster with the same accuracy (README "Benchmarks")'
        )
    hand_model = load_hand_model(config.mano_dir, device=device)
    if hand_model.is_standin:
        warn('no MANO files provided: using the procedural stand-in hand; results are NOT MANO results')
    reconstructor = HandReconstructor(
        network,
        hand_model,
        device,
        precision,
        weights_file,
        sha,
        description,
        config.detection_threshold,
        config.multi_hand,
        config.max_hands,
        config.refine,
        config.refine_gate_m,
        refine_path,
        min_side_share=config.min_side_share,
        side_separation=config.side_separation,
        center_anchor=config.center_anchor,
        max_pair_overlap=config.max_pair_overlap,
        refine_stages=config.refine_stages,
        image_rotation=config.image_rotation,
        trace_network=config.trace_network,
        landmarks=config.landmarks,
        landmark_passes=config.landmark_passes,
        landmark_min_presence=config.landmark_min_presence,
        landmark_palms=config.landmark_palms,
        landmark_new_hands=config.landmark_new_hands,
        landmark_tracking=config.landmark_tracking,
        landmark_runtime=config.landmark_runtime,
    )
    if reconstructor.landmark_runner_note:
        warn(f'the landmark network runs in PyTorch: {reconstructor.landmark_runner_note}')
    if config.trace_network:
        # trace the one-camera graph now: the first frame should not pay for it
        size = reconstructor.input_size
        example = torch.zeros(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        t = time.perf_counter()
        if reconstructor.network_runner.prepare(example) == 'traced':
            note = getattr(log, 'info', None) or warn
            note(f'network traced and frozen in {time.perf_counter() - t:.1f} s (network.trace)')
        else:
            warn(f'network runs eager PyTorch: {reconstructor.network_runner.fallback_reason}')
    if reconstructor.refiner_matches_network() is False:
        warn(
            f'the IHMR-MLP weights {refine_path} were trained on the features of another ACR network (sha256 '
            f'{reconstructor.refine_acr_sha256[:12]}, running {sha[:12]}): the refinement may not help; its '
            'verification still rejects candidates that are worse'
        )
    return reconstructor


__all__ = [
    'PipelineConfig',
    'HandReconstructor',
    'NetworkPass',
    'anchor_camera',
    'check_center_anchor',
    'check_pair_overlap',
    'drop_overlapping_hands',
    'create_reconstructor',
    'peak_centers',
    'place_by_depth',
]
