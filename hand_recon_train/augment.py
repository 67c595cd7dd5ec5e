"""Training-time augmentation of trainer samples (synthetic or real): mirror flip, rotation about the optical
axis, zoom, colour jitter and motion blur, with every label moved consistently.

The geometric part is a change of *camera*, not a 2D trick, so 3D labels stay exact:

* flip = mirror the world (x -> -x): the image is flipped, the left hand becomes a right hand (MANO's mirror rule:
  per-joint axis-angle (a, b, c) -> (a, -b, -c), sides swapped, part classes swapped) and ``cx -> S - cx``;
* rotation = the camera rolls by theta about its optical axis: 3D points and root orientations are rotated by Rz;
* zoom = the focal length is scaled by ``s`` about the principal point; 3D is unchanged.

The image moves by the homography ``K' Rz F K^-1``, which is an affine map because Rz keeps z. Centre maps are
redrawn from the moved keypoints (a warped Gaussian would lose its exact 1.0 peak, the focal loss's positive),
and the weak camera is refitted. Flipping is exact only when the left hand model is the mirror of the right one
(the stand-in is; real MANO after the shapedirs fix of ``mano_loader`` is, to annotation accuracy).

Everything outside the original frame is black, like the letterbox bars at inference, so zooming out never
invents unlabelled hands. Colour changes keep those bars exactly black.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from hand_recon_ros.acr.centermaps import center_heatmaps
from hand_recon_ros.acr.preprocess import IMAGENET_MEAN, IMAGENET_STD
from hand_recon_ros.config_utils import dataclass_from_dict
from hand_recon_ros.conventions import (
    MANO16_TIPS_TO_21,
    MANO_TIP_VERTICES_LEFT,
    MANO_TIP_VERTICES_RIGHT,
    ROOT_MIDDLE_MCP,
)
from hand_recon_ros.geometry import rotations
from hand_recon_ros.hand_model.parts import NUM_PARTS

from .synth.generator import fit_weak_camera

__all__ = ['AugmentConfig', 'AugmentedDataset', 'augment_sample', 'camera_transform']

SEG_IGNORE = -100
_MIRROR_AA = np.array([1.0, -1.0, -1.0])
# per-side keys whose [left, right] order swaps when the world is mirrored
_TIP_ROWS = [MANO16_TIPS_TO_21.index(16 + k) for k in range(5)]  # fingertip rows of the 21 joints
_TIP_VERTICES = (MANO_TIP_VERTICES_LEFT, MANO_TIP_VERTICES_RIGHT)
_SIDE_KEYS = (
    'valid',
    'global_orient',
    'hand_pose',
    'betas',
    'cam',
    'joints_3d',
    'vertices',
    'joints_2d',
    'joints_vis',
    'joints_valid',
    'has_mano',
)


@dataclass
class AugmentConfig:
    """``enabled`` switches the whole thing (off: samples pass through untouched). Probabilities are per sample.

    ``rotation_deg``: roll uniform in [-r, r] with probability ``rotation_prob``; ``scale_range``: zoom factor
    drawn log-uniformly (> 1 = closer); ``brightness`` / ``contrast`` / ``saturation``: factors in [1-x, 1+x];
    ``hue_deg``: hue rotation in [-h, h]; ``motion_blur_prob`` / ``motion_blur_max_px``: a linear blur kernel of
    3..max pixels at a random angle (the DIR supplement's motion-blur practice); ``grayscale_prob``: the image becomes
    its luminance in all three channels (monochrome and IR robot cameras; drawn only when > 0, so configs without it
    keep their random draws). ``any_rotation_prob``: with this probability the roll is instead uniform over the
    whole circle (hands pointing sideways or down, as a robot's camera sees them reach; drawn only when > 0).
    """

    enabled: bool = False
    flip_prob: float = 0.5
    rotation_prob: float = 0.5
    rotation_deg: float = 30.0
    any_rotation_prob: float = 0.0
    scale_range: tuple = (0.8, 1.25)
    colour_prob: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue_deg: float = 8.0
    motion_blur_prob: float = 0.0
    motion_blur_max_px: int = 9
    grayscale_prob: float = 0.0

    def __post_init__(self):
        for name in (
            'flip_prob',
            'rotation_prob',
            'any_rotation_prob',
            'colour_prob',
            'motion_blur_prob',
            'grayscale_prob',
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f'augment.{name} must be a probability in [0, 1], got {value!r}')
        for name in ('rotation_deg', 'brightness', 'contrast', 'saturation', 'hue_deg'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'augment.{name} must be a finite number >= 0, got {value!r}')
        for name in ('brightness', 'contrast', 'saturation'):
            if getattr(self, name) >= 1.0:
                raise ValueError(f'augment.{name} must be < 1 (a factor in [1-x, 1+x]), got {getattr(self, name)}')
        lo, hi = (float(v) for v in self.scale_range)
        if not (0 < lo <= hi):
            raise ValueError(f'augment.scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}')
        self.scale_range = (lo, hi)
        if not isinstance(self.motion_blur_max_px, int) or self.motion_blur_max_px < 3:
            raise ValueError(f'augment.motion_blur_max_px must be an int >= 3, got {self.motion_blur_max_px!r}')

    @classmethod
    def from_dict(cls, data: dict | None) -> AugmentConfig:
        return dataclass_from_dict(cls, data, 'augment config')


def _rot_z(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_transform(K: np.ndarray, size: int, flip: bool, theta: float, scale: float):
    """-> (R, K_new, A): 3D rotation applied to camera-frame points (mirror included), the new intrinsics and
    the 3x3 map of continuous pixel coordinates (corner origin) from the old image to the new one.

    ``K`` all zero (unknown intrinsics, 2D-only data) is treated as a square-pixel camera centred in the image;
    the returned ``K_new`` is then zero too."""
    S = float(size)
    known = bool(K[0, 0] > 0 and K[1, 1] > 0)
    K0 = np.asarray(K, np.float64) if known else np.array([[S, 0.0, S / 2], [0.0, S, S / 2], [0.0, 0.0, 1.0]])
    mirror = np.diag([-1.0, 1.0, 1.0]) if flip else np.eye(3)
    K_flip = K0.copy()
    if flip:
        K_flip[0, 2] = S - K0[0, 2]
    K_new = K_flip.copy()
    K_new[0, 0] *= scale
    K_new[1, 1] *= scale
    Rz = _rot_z(theta)
    F = np.array([[-1.0, 0.0, S], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if flip else np.eye(3)
    A = K_new @ Rz @ np.linalg.inv(K_flip) @ F
    A /= A[2, 2]
    return Rz @ mirror, (K_new if known else np.zeros((3, 3))), A


def _index_affine(A: np.ndarray, pixel_scale: float = 1.0) -> np.ndarray:
    """2x3 map for cv2.warpAffine (pixel centres at integers) of a continuous-coordinate map A, on a grid whose
    pixels are ``pixel_scale`` network pixels wide."""
    D = np.diag([1.0 / pixel_scale, 1.0 / pixel_scale, 1.0])
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    M = np.linalg.inv(shift) @ D @ A @ np.linalg.inv(D) @ shift
    return M[:2]


def _to_pixels(image: torch.Tensor, normalization: str) -> np.ndarray:
    x = image.permute(1, 2, 0).numpy().astype(np.float32)
    if normalization == 'imagenet':
        return (x * IMAGENET_STD + IMAGENET_MEAN) * 255.0
    return (x + 1.0) * 127.5


def _from_pixels(rgb: np.ndarray, normalization: str) -> torch.Tensor:
    if normalization == 'imagenet':
        x = (rgb / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    else:
        x = rgb / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


def _colour(rgb: np.ndarray, content: np.ndarray, rng, cfg: AugmentConfig) -> np.ndarray:
    out = rgb * rng.uniform(1.0 - cfg.brightness, 1.0 + cfg.brightness)
    mean = out[content].mean(axis=0) if content.any() else np.zeros(3, np.float32)
    out = (out - mean) * rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast) + mean
    gray = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = gray[..., None] + (out - gray[..., None]) * rng.uniform(1.0 - cfg.saturation, 1.0 + cfg.saturation)
    if cfg.hue_deg > 0:
        # hue = rotation of the chroma plane of YIQ
        h = math.radians(rng.uniform(-cfg.hue_deg, cfg.hue_deg))
        to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(h), -math.sin(h)], [0.0, math.sin(h), math.cos(h)]])
        out = out @ (np.linalg.inv(to_yiq) @ rot @ to_yiq).T.astype(np.float32)
    return out


def _motion_blur(rgb: np.ndarray, rng, max_px: int) -> np.ndarray:
    length = int(rng.integers(3, max_px + 1))
    kernel = np.zeros((length, length), np.float32)
    angle = rng.uniform(0.0, math.pi)
    c = (length - 1) / 2.0
    d = np.array([math.cos(angle), math.sin(angle)]) * c
    cv2.line(
        kernel,
        (int(round(c - d[0])), int(round(c - d[1]))),
        (int(round(c + d[0])), int(round(c + d[1]))),
        1.0,
        1,
        cv2.LINE_AA,
    )
    kernel /= kernel.sum()
    return cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_CONSTANT)


def _box(points: np.ndarray, lo_clip: np.ndarray, hi_clip: np.ndarray):
    lo = np.clip(points.min(axis=0), lo_clip, hi_clip)
    hi = np.clip(points.max(axis=0), lo_clip, hi_clip)
    return lo, hi


def augment_sample(item: dict, rng: np.random.Generator, cfg: AugmentConfig, normalization: str) -> dict:
    """One trainer sample (``SynthDataset`` or ``datasets.common.make_sample`` dict) -> an augmented copy.

    Synthetic samples (no ``joints_valid`` key) know every joint's 2D position, visible or not; real samples
    know the ones in ``joints_vis``. A hand stays ``valid`` when at least two known joints remain in the frame."""
    if not cfg.enabled:
        return item
    out = dict(item)
    S = int(item['image'].shape[-1])
    flip = bool(rng.uniform() < cfg.flip_prob)
    theta = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)) if rng.uniform() < cfg.rotation_prob else 0.0
    if cfg.any_rotation_prob > 0 and rng.uniform() < cfg.any_rotation_prob:
        theta = rng.uniform(-math.pi, math.pi)
    lo, hi = cfg.scale_range
    scale = float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
    geometric = flip or theta != 0.0 or scale != 1.0
    do_colour = bool(rng.uniform() < cfg.colour_prob)
    do_blur = bool(rng.uniform() < cfg.motion_blur_prob)
    do_gray = cfg.grayscale_prob > 0 and bool(rng.uniform() < cfg.grayscale_prob)
    if not (geometric or do_colour or do_blur or do_gray):
        return out

    rgb = _to_pixels(item['image'], normalization)
    content = rgb.max(axis=-1) > 0.5  # letterbox bars and borders are exactly black
    K = item['K'].numpy().astype(np.float64)
    R, K_new, A = camera_transform(K, S, flip, theta, scale)
    if geometric:
        M = _index_affine(A)
        rgb = cv2.warpAffine(rgb, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        content = cv2.warpAffine(
            content.astype(np.uint8), M, (S, S), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        ).astype(bool)
    if do_colour:
        rgb = _colour(rgb, content, rng, cfg)
    if do_blur:
        rgb = _motion_blur(rgb, rng, cfg.motion_blur_max_px)
    if do_gray:
        rgb = np.repeat((rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=-1)
    rgb = np.clip(rgb, 0.0, 255.0)
    rgb[~content] = 0.0
    out['image'] = _from_pixels(rgb, normalization)
    if not geometric:
        return out

    # per-side arrays in numpy, mirrored sides swapped
    swap = [1, 0] if flip else [0, 1]
    arr = {k: item[k].numpy()[swap].copy() for k in _SIDE_KEYS if k in item}
    is_real = 'joints_valid' in item

    seg = item['seg'].numpy()
    if not is_real or bool((seg != SEG_IGNORE).any()):
        seg8 = np.where(seg == SEG_IGNORE, 255, seg).astype(np.uint8)
        seg8 = cv2.warpAffine(
            seg8,
            _index_affine(A, 2.0),
            (S // 2, S // 2),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        seg_new = np.where(seg8 == 255, SEG_IGNORE, seg8).astype(np.int64)
        if flip:  # right parts 1..16 <-> left parts 17..32
            part = (seg_new >= 1) & (seg_new <= 2 * NUM_PARTS)
            seg_new = np.where(part, np.where(seg_new <= NUM_PARTS, seg_new + NUM_PARTS, seg_new - NUM_PARTS), seg_new)
        out['seg'] = torch.from_numpy(seg_new)

    # 3D: points and root orientation rotate with the camera; the mirror also mirrors every joint rotation
    for key in ('joints_3d', 'vertices'):
        if key in arr:
            arr[key] = (arr[key].astype(np.float64) @ R.T).astype(np.float32)
    if flip and 'vertices' in arr and arr['vertices'].shape[1] > max(max(t) for t in _TIP_VERTICES):
        # the two sides read some fingertips from different vertices (middle tip 444 / 445): re-read them
        for s in range(2):
            arr['joints_3d'][s, _TIP_ROWS] = arr['vertices'][s, list(_TIP_VERTICES[s])]
    go, pose = arr['global_orient'].astype(np.float64), arr['hand_pose'].astype(np.float64)
    if flip:
        go = go * _MIRROR_AA
        pose = (pose.reshape(2, -1, 3) * _MIRROR_AA).reshape(2, -1)
    Rz = R @ (np.diag([-1.0, 1.0, 1.0]) if flip else np.eye(3))  # the roll alone
    go_mats = Rz[None] @ rotations.axis_angle_to_matrix(go)
    go = rotations.matrix_to_axis_angle(go_mats)
    if 'has_mano' in arr:  # hands without MANO labels keep all-zero parameters
        keep = arr['has_mano'].astype(bool)[:, None]
        go, pose = np.where(keep, go, 0.0), np.where(keep, pose, 0.0)
        arr['betas'] = np.where(keep, arr['betas'], 0.0)
    arr['global_orient'], arr['hand_pose'] = go.astype(np.float32), pose.astype(np.float32)

    # 2D: keypoints through the same pixel map
    px = (arr['joints_2d'].astype(np.float64) + 1.0) * (S / 2.0)
    px = px @ A[:2, :2].T + A[:2, 2]
    if not is_real and K_new[0, 0] > 0:
        # synthetic 2D labels are projections of the 3D ones (exact, and consistent with re-read fingertips)
        uvh = arr['joints_3d'].astype(np.float64) @ K_new.T
        with np.errstate(divide='ignore', invalid='ignore'):
            projected = uvh[..., :2] / uvh[..., 2:3]
        px = np.where(np.isfinite(projected) & (uvh[..., 2:3] > 0), projected, px)
    known = arr['joints_vis'].astype(bool) if is_real else np.ones((2, 21), bool)
    in_frame = (px >= 0).all(-1) & (px < S).all(-1)
    arr['joints_vis'] = arr['joints_vis'].astype(bool) & in_frame
    norm = px / (S / 2.0) - 1.0
    arr['joints_2d'] = (np.where(arr['joints_vis'][..., None], norm, 0.0) if is_real else norm).astype(np.float32)
    arr['valid'] = arr['valid'].astype(bool) & ((known & in_frame).sum(-1) >= 2)

    # centre maps and weak cameras from the moved labels (the definitions of the generator / make_sample)
    ys, xs = np.nonzero(content)
    clip_lo = np.array([xs.min(), ys.min()], np.float64) if len(xs) else np.zeros(2)
    clip_hi = np.array([xs.max() + 1, ys.max() + 1], np.float64) if len(xs) else np.full(2, float(S))
    centers, boxes, sides = [], [], []
    cam = np.zeros((2, 3))
    j3d_valid = arr['joints_valid'].astype(bool) if is_real else np.ones((2, 21), bool)
    for s in range(2):
        if not arr['valid'][s]:
            continue
        if is_real:
            pts = px[s][arr['joints_vis'][s]]
            c_lo, c_hi = _box(pts, clip_lo, clip_hi)
            k_lo, k_hi = c_lo, c_hi
        else:
            c_lo, c_hi = _box(px[s], clip_lo, clip_hi)
            uvh = arr['vertices'][s].astype(np.float64) @ K_new.T
            k_lo, k_hi = _box(uvh[:, :2] / uvh[:, 2:3], clip_lo, clip_hi)
        centers.append((c_lo + c_hi) / 2.0 / 8.0 - 0.5)
        boxes.append((k_hi - k_lo) / 8.0)
        sides.append(s)
        fit = j3d_valid[s] & (arr['joints_vis'][s] if is_real else True)
        if j3d_valid[s, ROOT_MIDDLE_MCP] and fit.sum() >= 2:
            rel = arr['joints_3d'][s] - arr['joints_3d'][s, ROOT_MIDDLE_MCP]
            cam[s] = fit_weak_camera(rel[fit], norm[s][fit])
    out['center_maps'] = torch.from_numpy(
        center_heatmaps(centers, boxes, sides, S // 8) if centers else np.zeros((2, S // 8, S // 8), np.float32)
    )
    arr['cam'] = cam.astype(np.float32)
    out['K'] = torch.from_numpy(K_new.astype(np.float32))
    for key, value in arr.items():
        out[key] = torch.from_numpy(np.ascontiguousarray(value))
    return out


class AugmentedDataset(torch.utils.data.Dataset):
    """``dataset`` with :func:`augment_sample` applied; item i of epoch e is the same on every run (the random
    draws come from (seed, epoch, i)). Call :meth:`set_epoch` before each epoch; with DataLoader workers the
    loader must not keep persistent workers, or they would keep the old epoch."""

    def __init__(self, dataset, config: AugmentConfig, seed: int = 0, normalization: str | None = None):
        self.dataset, self.config, self.seed, self.epoch = dataset, config, int(seed), 0
        self.normalization = normalization or getattr(dataset, 'normalization', None)
        if self.normalization not in ('imagenet', 'pm1'):
            raise ValueError(f'normalization must be given as imagenet or pm1, got {self.normalization!r}')

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        return augment_sample(item, rng, self.config, self.normalization)
