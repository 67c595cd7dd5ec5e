"""Deterministic synthetic two-hand samples: the loaded hand model (stand-in or MANO) over procedural scenes.

``SynthGenerator(config, seed).sample(index)`` always gives the same sample for the same (seed, index,
config, hand model): the random stream is ``np.random.default_rng([seed, index])``, independent of the
order in which samples are drawn or of the worker that draws them.

What the network sees: the image is the **letterboxed square** ``S x S`` (a 1:1, 4:3, 16:9 or 3:4 camera
frame rendered directly at network resolution inside centred black bars), and ``K`` is the intrinsics in
those network-input pixels (corner origin), so a 3D point X projects to ``K @ X`` in the image as given.
Sides are ordered like the network's outputs: index 0 = left, 1 = right.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from hand_recon_ros.acr.centermaps import center_heatmaps
from hand_recon_ros.config_utils import dataclass_from_dict
from hand_recon_ros.conventions import SIDES
from hand_recon_ros.geometry import rotations
from hand_recon_ros.hand_model import parts

from .raster import rasterize, vertex_normals

__all__ = ['GENERATOR_VERSION', 'SCENE_TYPES', 'SynthConfig', 'SynthGenerator', 'fit_weak_camera']

# v2: interacting pairs tested for intersection with the closed meshes (v1 sampled every third vertex)
GENERATOR_VERSION = 'synth-v2'
# 'close' (hands touching, a few mm apart) is last and off by default, so default configs draw exactly as before
SCENE_TYPES = ('interacting', 'separate', 'single', 'truncated', 'occluded', 'small', 'large', 'close')
_OCCLUDER_ID = -2
_ASPECTS = ((1, 1), (4, 3), (16, 9), (3, 4))


@dataclass
class SynthConfig:
    """Scene and rendering options (saved with datasets and trained models; hash = ``config_hash``)."""

    image_size: int = 256
    scene_weights: dict = field(
        default_factory=lambda: {
            'interacting': 0.30,
            'separate': 0.15,
            'single': 0.15,
            'truncated': 0.10,
            'occluded': 0.15,
            'small': 0.075,
            'large': 0.075,
        }
    )
    aspect_weights: tuple = (0.35, 0.4, 0.15, 0.1)  # of 1:1, 4:3, 16:9, 3:4 frames
    fov_deg: tuple = (45.0, 75.0)  # horizontal, uniform
    depth_m: tuple = (0.35, 0.8)  # middle-MCP depth, normal scenes
    small_depth_m: tuple = (1.0, 1.8)
    large_depth_m: tuple = (0.18, 0.3)
    pose_scale: float = 1.0  # std multiplier of the pose-PCA coefficients
    pose_noise: float = 0.05  # extra per-joint axis-angle noise (rad)
    betas_std: float = 0.8
    supersample: int = 2  # render at 2S, area-average to S (anti-aliasing)
    min_visible_pixels: int = 40  # at S; fewer and the hand counts as absent
    visibility_tolerance_m: float = 0.025  # joint hidden if a surface is this much nearer
    noise_std: tuple = (1.0, 6.0)
    # hand-free crops of the training photos as backgrounds (teacher label file + photo root; train split only)
    real_background_prob: float = 0.0
    real_background_labels: str | None = None
    real_background_root: str | None = None

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 64 or self.image_size % 32:
            raise ValueError(f'image_size must be an int >= 64 and a multiple of 32, got {self.image_size!r}')
        unknown = sorted(set(self.scene_weights) - set(SCENE_TYPES))
        if unknown or not self.scene_weights:
            raise ValueError(f'scene_weights keys must be among {SCENE_TYPES}, got unknown {unknown}')
        if any(w < 0 for w in self.scene_weights.values()) or sum(self.scene_weights.values()) <= 0:
            raise ValueError('scene_weights must be non-negative with a positive sum')
        if len(self.aspect_weights) != len(_ASPECTS) or sum(self.aspect_weights) <= 0:
            raise ValueError(f'aspect_weights must hold {len(_ASPECTS)} non-negative weights')
        if self.supersample not in (1, 2, 3, 4):
            raise ValueError(f'supersample must be 1..4, got {self.supersample!r}')
        for name in ('fov_deg', 'depth_m', 'small_depth_m', 'large_depth_m', 'noise_std'):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f'{name} must be an ordered (low, high) pair, got {(lo, hi)}')
        self.fov_deg, self.depth_m = tuple(self.fov_deg), tuple(self.depth_m)
        self.small_depth_m, self.large_depth_m = tuple(self.small_depth_m), tuple(self.large_depth_m)
        self.noise_std, self.aspect_weights = tuple(self.noise_std), tuple(self.aspect_weights)
        if not 0.0 <= float(self.real_background_prob) <= 1.0:
            raise ValueError(f'real_background_prob must be in [0, 1], got {self.real_background_prob!r}')
        if self.real_background_prob > 0 and not (self.real_background_labels and self.real_background_root):
            raise ValueError('real_background_prob > 0 needs real_background_labels and real_background_root')

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> SynthConfig:
        return dataclass_from_dict(cls, data)

    def config_hash(self) -> str:
        fields = self.to_dict()
        if not self.real_background_prob:  # configs from before real backgrounds keep their hash (and cache)
            for key in ('real_background_prob', 'real_background_labels', 'real_background_root'):
                fields.pop(key)
        text = json.dumps({'version': GENERATOR_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def fit_weak_camera(joints_rel: np.ndarray, joints_norm: np.ndarray, weights: np.ndarray | None = None):
    """Least-squares (s, tx, ty) with ``s * X[:, :2] + t ~= p`` (ACR's weak perspective, [-1, 1] units)."""
    X = np.asarray(joints_rel, dtype=np.float64)
    p = np.asarray(joints_norm, dtype=np.float64)
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    rows = np.zeros((2 * len(X), 3))
    rows[0::2, 0], rows[0::2, 1] = X[:, 0], 1.0
    rows[1::2, 0], rows[1::2, 2] = X[:, 1], 1.0
    sw = np.sqrt(np.repeat(w, 2))
    sol, *_ = np.linalg.lstsq(rows * sw[:, None], p.reshape(-1) * sw, rcond=None)
    return sol


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == 'x':
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 'y':
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _skin_bgr(rng) -> np.ndarray:
    """Skin tones from dark to light (BGR), with a little hue jitter."""
    t = rng.uniform(0.0, 1.0)
    dark, light = np.array([45.0, 70.0, 115.0]), np.array([175.0, 200.0, 240.0])
    return np.clip((1 - t) * dark + t * light + rng.normal(0, 8, 3), 10, 250)


class SynthGenerator:
    """Renders samples; holds the hand model, its faces and part classes (load once per process)."""

    def __init__(self, config: SynthConfig | None = None, seed: int = 0, hand_model=None):
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f'seed must be a non-negative int, got {seed!r}')
        self.config = config or SynthConfig()
        self.seed = int(seed)
        if hand_model is None:
            from hand_recon_ros.hand_model.model import load_hand_model

            hand_model = load_hand_model()
        self.model = hand_model
        scene_names = [s for s in SCENE_TYPES if self.config.scene_weights.get(s, 0) > 0]
        w = np.array([self.config.scene_weights[s] for s in scene_names], dtype=np.float64)
        self._scenes, self._scene_p = scene_names, w / w.sum()
        self._aspect_p = np.asarray(self.config.aspect_weights, dtype=np.float64)
        self._aspect_p = self._aspect_p / self._aspect_p.sum()
        self._backgrounds = None
        if self.config.real_background_prob > 0:
            from .backgrounds import BackgroundBank

            self._backgrounds = BackgroundBank(self.config.real_background_labels, self.config.real_background_root)
        self._side = {}
        for side in SIDES:
            faces = np.asarray(hand_model.watertight_faces(side), dtype=np.int64)
            n_open = len(hand_model.faces(side))
            classes = np.empty(len(faces), dtype=np.int64)
            classes[:n_open] = parts.model_face_classes(hand_model, side)
            classes[n_open:] = parts.class_id(side, 0)  # wrist cap belongs to the palm
            comps = np.asarray(hand_model.model_array(side, 'hands_components'), dtype=np.float64)
            coeffs = np.asarray(hand_model.model_array(side, 'hands_coeffs'), dtype=np.float64)
            rest = hand_model.rest_joints(side)
            self._side[side] = dict(
                faces=faces,
                classes=classes,
                comps=comps,
                coeff_std=coeffs.std(axis=0),
                coeff_lo=coeffs.min(axis=0),
                coeff_hi=coeffs.max(axis=0),
                bank=coeffs,
                base=self._upright_rotation(rest),
            )

    # ------------------------------------------------------------------ hand parameters
    @staticmethod
    def _upright_rotation(rest_joints: np.ndarray) -> np.ndarray:
        """Rotation taking the rest hand to 'fingers up, palm plane facing the camera' (from its joints,
        so it works for the stand-in and for MANO of either side)."""
        finger = rest_joints[4] - rest_joints[0]  # wrist -> middle1
        finger /= np.linalg.norm(finger)
        normal = np.cross(rest_joints[1] - rest_joints[0], rest_joints[7] - rest_joints[0])
        normal -= normal @ finger * finger
        normal /= np.linalg.norm(normal)
        src = np.stack([finger, normal, np.cross(finger, normal)], axis=1)
        dst = np.stack([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], np.cross([0.0, -1.0, 0.0], [0.0, 0.0, -1.0])], axis=1)
        return dst @ src.T

    def _sample_pose(self, rng, side: str) -> np.ndarray:
        """45-D hand_pose as the model takes it (relative to hands_mean): PCA coefficients, clamped to the
        range of the model's own pose bank; sometimes a bank pose with noise."""
        d, cfg = self._side[side], self.config
        if rng.uniform() < 0.3:
            coeffs = d['bank'][rng.integers(len(d['bank']))] * rng.uniform(0.6, 1.1)
        else:
            coeffs = rng.normal(0.0, 1.0, d['comps'].shape[0]) * d['coeff_std'] * cfg.pose_scale
        coeffs = np.clip(coeffs, d['coeff_lo'], d['coeff_hi'])
        return coeffs @ d['comps'] + rng.normal(0.0, cfg.pose_noise, 45)

    def _sample_orientation(self, rng, side: str) -> np.ndarray:
        roll = rng.uniform(-np.deg2rad(100), np.deg2rad(100))
        pitch = rng.uniform(-np.deg2rad(50), np.deg2rad(50))
        yaw = rng.uniform(-np.pi, np.pi)
        return _rot('z', roll) @ _rot('x', pitch) @ _rot('y', yaw) @ self._side[side]['base']

    def _hand(self, rng, side: str, R: np.ndarray | None = None) -> dict:
        R = self._sample_orientation(rng, side) if R is None else R
        orient = rotations.matrix_to_axis_angle(R)
        pose = self._sample_pose(rng, side)
        betas = np.clip(rng.normal(0.0, self.config.betas_std, 10), -2.5, 2.5)
        with torch.no_grad():
            out = self.model(
                side,
                torch.tensor(orient[None], dtype=torch.float32),
                torch.tensor(pose[None], dtype=torch.float32),
                torch.tensor(betas[None], dtype=torch.float32),
            )
        return dict(
            side=side,
            global_orient=orient,
            hand_pose=pose,
            betas=betas,
            vertices=out['vertices'][0].double().numpy(),
            joints=out['joints'][0].double().numpy(),
        )

    # ------------------------------------------------------------------ scene layout
    @staticmethod
    def _place(hand: dict, target: np.ndarray) -> None:
        shift = target - hand['joints'][9]  # middle MCP = ACR's root
        hand['transl'] = shift
        hand['vertices'] = hand['vertices'] + shift
        hand['joints'] = hand['joints'] + shift

    @staticmethod
    def _backproject(K, u, v, z) -> np.ndarray:
        return np.array([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])

    def _apart(self, a: dict, b: dict, min_joint: float = 0.02, min_vertex: float = 0.004) -> bool:
        """Joints > ``min_joint`` and every vertex > ``min_vertex`` apart, and no vertex of either hand inside the
        other's closed mesh (synth-v1 compared every third vertex only: ~10 % of pairs intersected)."""
        from scipy.spatial import cKDTree

        if np.linalg.norm(a['joints'][:, None] - b['joints'][None], axis=-1).min() <= min_joint:
            return False
        if cKDTree(a['vertices']).query(b['vertices'], k=1)[0].min() <= min_vertex:
            return False
        return not self._solid(a).inside(b['vertices']).any() and not self._solid(b).inside(a['vertices']).any()

    def _solid(self, hand: dict):
        from hand_recon_ros.hand_model.penetration import prepare_mesh

        side = hand['side']
        return prepare_mesh(
            np.asarray(self.model.watertight_vertices(side, hand['vertices'])),
            self.model.watertight_faces(side),
            name=f'{side} hand',
        )

    def _facing_pair(self, rng, sides) -> list[dict]:
        """Two hands with roughly opposite orientations (palms towards each other, fingers the same way, as
        when clapping, praying or interlacing), each with its own random pose."""
        roll = rng.uniform(-np.deg2rad(100), np.deg2rad(100))
        pitch = rng.uniform(-np.deg2rad(50), np.deg2rad(50))
        yaw = rng.uniform(-np.pi, np.pi)
        hands = []
        for i, side in enumerate(sides):
            jitter = rng.normal(0.0, np.deg2rad(15), 3)
            view = _rot('z', roll + jitter[0]) @ _rot('x', pitch + jitter[1]) @ _rot('y', yaw + i * np.pi + jitter[2])
            hand = self._hand(rng, side, view @ self._side[side]['base'])
            hand['view'] = view
            hands.append(hand)
        return hands

    def _touching(
        self, rng, fixed: dict, moving: dict, towards: np.ndarray | None = None, far_m: float = 0.3, steps: int = 14
    ) -> None:
        """Slide ``moving`` towards ``fixed`` along a random direction until they nearly touch: the nearest
        vertices ``gap`` (2-8 mm) apart and neither mesh inside the other (checked with the solids, since a
        vertex gap alone lets a fingertip slip between vertices). Bisection on the distance between roots."""
        from scipy.spatial import cKDTree

        tree = cKDTree(fixed['vertices'])
        fixed_solid = self._solid(fixed)
        anchor = fixed['joints'][9]
        gap = rng.uniform(0.002, 0.008)

        def clear(distance, direction):
            self._place(moving, anchor + distance * direction)
            if tree.query(moving['vertices'], k=1)[0].min() <= gap:
                return False
            if fixed_solid.inside(moving['vertices']).any():
                return False
            return not self._solid(moving).inside(fixed['vertices']).any()

        for attempt in range(8):
            if towards is not None and attempt < 6:  # mostly along the palm normal, spread wider on retries
                direction = towards + rng.normal(0.0, 0.25 + 0.1 * attempt, 3)
            else:
                direction = rng.normal(0.0, 1.0, 3) * np.array([1.0, 1.0, 0.6])
            direction /= np.linalg.norm(direction)
            if not clear(far_m, direction):
                continue
            lo, hi = 0.0, far_m
            for _ in range(steps):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if clear(mid, direction) else (mid, hi)
            clear(hi, direction)
            return
        self._place(moving, anchor + np.array([far_m, 0.0, 0.0]))  # no clear direction found: far apart

    def _layout(self, rng, scene: str, K, box) -> list[dict]:
        """Hands placed in the camera frame. ``box`` = content area (x0, y0, x1, y1) in pixels."""
        cfg = self.config
        x0, y0, x1, y1 = box
        cw, ch = x1 - x0, y1 - y0

        def uniform_px(margin=0.2):
            return (rng.uniform(x0 + margin * cw, x1 - margin * cw), rng.uniform(y0 + margin * ch, y1 - margin * ch))

        depth = {'small': cfg.small_depth_m, 'large': cfg.large_depth_m}.get(scene, cfg.depth_m)
        if scene in ('single', 'large', 'truncated') or (scene == 'small' and rng.uniform() < 0.3):
            sides = [SIDES[rng.integers(2)]]
        else:
            sides = list(SIDES)
        hands = [self._hand(rng, s) for s in sides]
        z = rng.uniform(*depth)
        if scene == 'truncated':
            u, v = uniform_px(0.1)
            edge = rng.integers(4)
            off = rng.uniform(-0.04, 0.06)
            if edge == 0:
                u = x0 + off * cw
            elif edge == 1:
                u = x1 - off * cw
            elif edge == 2:
                v = y0 + off * ch
            else:
                v = y1 - off * ch
            self._place(hands[0], self._backproject(K, u, v, z))
            return hands
        if len(hands) == 1:
            self._place(hands[0], self._backproject(K, *uniform_px(0.25 if scene != 'large' else 0.4), z))
            return hands
        if scene in ('separate', 'small') or (scene == 'occluded' and rng.uniform() < 0.5):
            us = sorted([rng.uniform(x0 + 0.15 * cw, x0 + 0.42 * cw), rng.uniform(x0 + 0.58 * cw, x1 - 0.15 * cw)])
            rng.shuffle(us)
            for hand, u in zip(hands, us):
                v = rng.uniform(y0 + 0.25 * ch, y1 - 0.25 * ch)
                self._place(hand, self._backproject(K, u, v, z * rng.uniform(0.85, 1.15)))
            return hands
        if scene == 'close':
            hands = self._facing_pair(rng, sides)
            self._place(hands[0], self._backproject(K, *uniform_px(0.3), z))
            palm_normal = hands[0]['view'] @ np.array([0.0, 0.0, -1.0])
            self._touching(rng, hands[0], hands[1], palm_normal)
            return hands
        # interacting: the second hand close to the first, at a random 3D offset, without touching
        self._place(hands[0], self._backproject(K, *uniform_px(0.3), z))
        for attempt in range(12):
            direction = rng.normal(0.0, 1.0, 3) * np.array([1.0, 1.0, 0.6])
            direction /= np.linalg.norm(direction)
            dist = rng.uniform(0.05, 0.11) + 0.01 * attempt
            self._place(hands[1], hands[0]['joints'][9] + dist * direction)
            if self._apart(hands[0], hands[1]):
                break
        return hands

    # ------------------------------------------------------------------ appearance
    @staticmethod
    def _background(rng, h: int, w: int) -> np.ndarray:
        """Procedural clutter: smooth colour field + stripes / blobs / texture noise (never blank)."""
        low = rng.integers(20, 235, (rng.integers(2, 7), rng.integers(2, 7), 3)).astype(np.uint8)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        if rng.uniform() < 0.6:
            a = rng.uniform(0, np.pi)
            period = rng.uniform(4, 40)
            stripes = np.sin((xx * np.cos(a) + yy * np.sin(a)) * (2 * np.pi / period)) > rng.uniform(-0.5, 0.7)
            img[stripes] *= rng.uniform(0.5, 0.85)
        for _ in range(rng.integers(1, 7)):
            colour = rng.integers(0, 255, 3).tolist()
            if rng.uniform() < 0.25:  # skin-like distractors
                colour = _skin_bgr(rng).tolist()
            centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            axes = (int(rng.uniform(0.03, 0.3) * w) + 1, int(rng.uniform(0.03, 0.3) * h) + 1)
            cv2.ellipse(img, centre, axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
        noise = cv2.resize(rng.normal(0, 1, (max(h // 4, 1), max(w // 4, 1))).astype(np.float32), (w, h))
        img += noise[..., None] * rng.uniform(2, 14)
        return np.clip(img, 0, 255)

    def _occluders(self, rng, image, face_id, hand_boxes, ss) -> None:
        """1-3 random shapes in front of the hands (drawn into both the image and the id buffer)."""
        for _ in range(rng.integers(1, 4)):
            bx0, by0, bx1, by1 = hand_boxes[rng.integers(len(hand_boxes))]
            bw, bh = max(bx1 - bx0, 4.0), max(by1 - by0, 4.0)
            cx, cy = rng.uniform(bx0, bx1), rng.uniform(by0, by1)
            size = rng.uniform(0.15, 0.45) * max(bw, bh)
            colour = rng.integers(0, 255, 3).tolist()
            mask = np.zeros(face_id.shape, np.uint8)
            kind = rng.integers(3)
            if kind == 0:
                axes = (int(size * ss) + 1, int(size * ss * rng.uniform(0.3, 1.0)) + 1)
                cv2.ellipse(mask, (int(cx * ss), int(cy * ss)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
            elif kind == 1:  # a bar across the hand (pen, cable, edge)
                a = rng.uniform(0, np.pi)
                d = np.array([np.cos(a), np.sin(a)]) * 2.0 * max(bw, bh)
                p0, p1 = (np.array([cx, cy]) - d) * ss, (np.array([cx, cy]) + d) * ss
                cv2.line(mask, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, max(int(size * 0.35 * ss), 2))
            else:
                n = rng.integers(3, 7)
                ang = np.sort(rng.uniform(0, 2 * np.pi, n))
                rad = size * rng.uniform(0.5, 1.0, n)
                poly = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1) * ss
                cv2.fillPoly(mask, [poly.astype(np.int32)], 1)
            sel = mask > 0
            shade = 1.0 + 0.15 * cv2.resize(rng.normal(0, 1, (8, 8)).astype(np.float32), face_id.shape[::-1])
            image[sel] = np.clip(np.asarray(colour, np.float32)[None] * shade[sel][:, None], 0, 255)
            face_id[sel] = _OCCLUDER_ID

    # ------------------------------------------------------------------ the sample
    def sample(self, index: int) -> dict:
        """One sample as numpy arrays (see docs/training.md for every key)."""
        if not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f'index must be a non-negative int, got {index!r}')
        cfg = self.config
        rng = np.random.default_rng([self.seed, int(index)])
        S, ss = cfg.image_size, cfg.supersample
        scene = self._scenes[rng.choice(len(self._scenes), p=self._scene_p)]
        aw, ah = _ASPECTS[rng.choice(len(_ASPECTS), p=self._aspect_p)]
        cw, ch = (S, int(round(S * ah / aw))) if aw >= ah else (int(round(S * aw / ah)), S)
        x0, y0 = (S - cw) // 2, (S - ch) // 2
        f = 0.5 * cw / np.tan(np.deg2rad(rng.uniform(*cfg.fov_deg)) / 2.0)
        K = np.array([[f, 0.0, x0 + cw / 2.0], [0.0, f, y0 + ch / 2.0], [0.0, 0.0, 1.0]])

        hands = self._layout(rng, scene, K, (x0, y0, x0 + cw, y0 + ch))

        # merged mesh of all hands, per-face class and owner
        verts, faces, classes, owner, offset = [], [], [], [], 0
        for h_i, hand in enumerate(hands):
            side = hand['side']
            wv = np.asarray(self.model.watertight_vertices(side, hand['vertices']))
            verts.append(wv)
            faces.append(self._side[side]['faces'] + offset)
            classes.append(self._side[side]['classes'])
            owner.append(np.full(len(self._side[side]['faces']), h_i))
            offset += len(wv)
        verts, faces = np.concatenate(verts), np.concatenate(faces)
        classes, owner = np.concatenate(classes), np.concatenate(owner)

        H = S * ss
        raster = rasterize(verts, faces, K, H, H, scale=ss)
        face_id = raster.face_id
        content = np.zeros((H, H), bool)
        content[y0 * ss : (y0 + ch) * ss, x0 * ss : (x0 + cw) * ss] = True
        face_id[~content] = -1

        # shading: per-vertex Lambert + ambient, interpolated with the barycentrics
        light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0])
        light /= np.linalg.norm(light)
        normals = vertex_normals(verts, faces)
        ambient, diffuse = rng.uniform(0.3, 0.55), rng.uniform(0.45, 0.8)
        vert_int = ambient + diffuse * np.clip(-(normals @ light), 0.0, 1.0)
        tones = [_skin_bgr(rng)]
        tones.append(tones[0] * rng.uniform(0.95, 1.05) if rng.uniform() < 0.8 else _skin_bgr(rng))

        bg = None
        if self._backgrounds is not None and rng.uniform() < self.config.real_background_prob:
            bg = self._backgrounds.sample(np.random.default_rng([self.seed, int(index), 1]), ch, cw)
        if bg is None:
            bg = self._background(rng, ch, cw)
        image = np.zeros((H, H, 3), np.float32)
        image[y0 * ss : (y0 + ch) * ss, x0 * ss : (x0 + cw) * ss] = cv2.resize(
            bg, (cw * ss, ch * ss), interpolation=cv2.INTER_LINEAR
        )
        in_content = content[raster.ys, raster.xs]
        ys, xs = raster.ys[in_content], raster.xs[in_content]
        fids = face_id[ys, xs]
        intensity = (raster.bary[in_content] * vert_int[faces[fids]]).sum(axis=1)
        tone = np.stack(tones)[owner[fids]]
        texture = 1.0 + 0.05 * cv2.resize(rng.normal(0, 1, (S // 8, S // 8)).astype(np.float32), (H, H))[ys, xs]
        image[ys, xs] = np.clip(tone * (intensity * texture)[:, None], 0, 255)

        # hand boxes before occlusion (occluders are placed over the hands)
        hand_boxes = []
        for hand in hands:
            uvh = hand['vertices'] @ K.T
            uvh = uvh[:, :2] / uvh[:, 2:3]
            hand_boxes.append((*uvh.min(axis=0), *uvh.max(axis=0)))
        if scene == 'occluded':
            self._occluders(rng, image, face_id, hand_boxes, ss)

        # final image at S: area average, mild blur, sensor noise, pad stays exactly black
        img = cv2.resize(image, (S, S), interpolation=cv2.INTER_AREA) if ss > 1 else image
        if rng.uniform() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.0))
        img = img * rng.uniform(0.8, 1.15) + rng.uniform(-15, 15)
        img += rng.normal(0.0, rng.uniform(*cfg.noise_std), img.shape).astype(np.float32)
        img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        pad = np.ones((S, S), bool)
        pad[y0 : y0 + ch, x0 : x0 + cw] = False
        img[pad] = 0

        # labels from the id buffer
        hand_of_pixel = np.where(face_id >= 0, owner[np.maximum(face_id, 0)], -1)
        cls_hi = np.where(face_id >= 0, classes[np.maximum(face_id, 0)], parts.BACKGROUND)
        seg = cls_hi[ss :: 2 * ss, ss :: 2 * ss]  # centre sample of each S/2 pixel
        seg = np.ascontiguousarray(seg[: S // 2, : S // 2]).astype(np.uint8)
        hand_mask = np.zeros((S, S), np.uint8)  # 0 none, 1 left, 2 right (at S)
        sample_px = hand_of_pixel[ss // 2 :: ss, ss // 2 :: ss][:S, :S]
        depth_img = raster.depth_image()
        for h_i, hand in enumerate(hands):
            hand_mask[sample_px == h_i] = SIDES.index(hand['side']) + 1

        out = self._empty_labels(self.model.num_vertices)
        out.update(
            image=img,
            K=K,
            scene=scene,
            hand_mask=hand_mask,
            seg=seg,
            content_box=np.array([x0, y0, x0 + cw, y0 + ch], np.int32),
        )
        centers, boxes, sides = [], [], []
        for h_i, hand in enumerate(hands):
            s_idx = SIDES.index(hand['side'])
            uvh = hand['joints'] @ K.T
            uv = uvh[:, :2] / uvh[:, 2:3]
            px = np.floor(uv * ss).astype(np.int64)
            inside = (uv[:, 0] >= x0) & (uv[:, 0] < x0 + cw) & (uv[:, 1] >= y0) & (uv[:, 1] < y0 + ch)
            pxc = np.clip(px, 0, H - 1)
            same = hand_of_pixel[pxc[:, 1], pxc[:, 0]] == h_i
            near = depth_img[pxc[:, 1], pxc[:, 0]] > hand['joints'][:, 2] - cfg.visibility_tolerance_m
            vis = inside & same & near
            visible_px = int((hand_of_pixel == h_i).sum()) / ss**2
            valid = visible_px >= cfg.min_visible_pixels
            norm = uv / (S / 2.0) - 1.0
            rel = hand['joints'] - hand['joints'][9]
            out['valid'][s_idx] = valid
            out['visible_pixels'][s_idx] = visible_px
            out['global_orient'][s_idx] = hand['global_orient']
            out['hand_pose'][s_idx] = hand['hand_pose']
            out['betas'][s_idx] = hand['betas']
            out['transl'][s_idx] = hand['transl']
            out['joints_3d'][s_idx] = hand['joints']
            out['vertices'][s_idx] = hand['vertices']
            out['keypoints_2d'][s_idx] = uv
            out['joints_vis'][s_idx] = vis
            out['cam'][s_idx] = fit_weak_camera(rel, norm)
            if valid:
                # centre from the keypoints (ACR center_def_kp), kernel from the vertex box, both clipped
                lo = np.clip(uv.min(axis=0), [x0, y0], [x0 + cw, y0 + ch])
                hi = np.clip(uv.max(axis=0), [x0, y0], [x0 + cw, y0 + ch])
                bx0, by0, bx1, by1 = hand_boxes[h_i]
                vlo = np.clip([bx0, by0], [x0, y0], [x0 + cw, y0 + ch])
                vhi = np.clip([bx1, by1], [x0, y0], [x0 + cw, y0 + ch])
                centers.append((lo + hi) / 2.0 / 8.0 - 0.5)
                boxes.append((vhi - vlo) / 8.0)
                sides.append(s_idx)
                out['center_2d'][s_idx] = (lo + hi) / 2.0
        out['center_maps'] = (
            center_heatmaps(centers, boxes, sides, S // 8) if centers else np.zeros((2, S // 8, S // 8), np.float32)
        )
        return out

    @staticmethod
    def _empty_labels(nv: int) -> dict:
        return dict(
            valid=np.zeros(2, bool),
            visible_pixels=np.zeros(2, np.float32),
            global_orient=np.zeros((2, 3), np.float32),
            hand_pose=np.zeros((2, 45), np.float32),
            betas=np.zeros((2, 10), np.float32),
            transl=np.zeros((2, 3), np.float32),
            joints_3d=np.zeros((2, 21, 3), np.float32),
            vertices=np.zeros((2, nv, 3), np.float32),
            keypoints_2d=np.zeros((2, 21, 2), np.float32),
            joints_vis=np.zeros((2, 21), bool),
            cam=np.zeros((2, 3), np.float32),
            center_2d=np.zeros((2, 2), np.float32),
        )
