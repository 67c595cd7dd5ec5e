"""IHMR-OPT: per-factor Adam optimisation of the two-hand state against the joint head, with IHMR's
snapshot selection (method-acr-ihmr.md §3.4). Offline: seconds per frame on a CPU.

Stages (IHMR order): relative translation -> both global orientations -> both finger poses -> both
shapes. Objective per sample (all targets come from the joint head, never GT):
    w2d  * mean |proj(joints) - joints_2d|_1   (only with a camera projection and joints_2d)
  + w3d  * mean squared 3D joint distance (right-wrist frame, verify.joint_errors)
  + wtrans * |left wrist - right wrist - relative_translation|^2
  + wshape * |betas_left - betas_right|^2
  + wcoll  * collision (sum of exact penetration depths, metres; collision.TwoHandCollision.loss)
  + wfinger * finger twist/planarity penalty (stage 3 only)
A snapshot is stored every ``snapshot_every`` steps; verify.select_snapshots then keeps, per sample,
the admissible snapshot with the lowest joint error (never a higher joint error than the start with
the default tolerance 0; collision must drop by ``collision_drop`` unless the start is kept).

Weights and steps differ from IHMR's table (documented in docs/design-ihmr.md): IHMR runs 301 steps
with a translation step of 1e-4 m; here 40 steps per stage with 1e-3 m, and the collision weights are
doubled because IHMR's SDF measures depth in units of ~0.1 m per 4 (its grid normalisation), i.e. one
metre here is ~2.3 of IHMR's collision units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.refine.collision import TwoHandCollision
from hand_recon_ros.refine.factors import (
    FACTOR_SIZES,
    PARAM_DIM,
    REFINE_FACTORS,
    HandMeshes,
    TwoHandState,
    apply_factor,
    extract_factor,
    forward_hands,
    gate_mask,
    wrists_from_vector,
)
from hand_recon_ros.refine.verify import check_joint_head_output, joint_errors, select_snapshots

if TYPE_CHECKING:
    from hand_recon_ros.geometry.camera import LetterboxTransform
    from hand_recon_ros.hand_model.model import HandModel

__all__ = [
    'OptStage',
    'OptConfig',
    'DEFAULT_OPT_STAGES',
    'CameraProjection',
    'finger_twist_loss',
    'optimize_batch',
    'optimize_state',
]

# 21-joint order: each finger's (mcp, pip, dip, tip), thumb first.
_FINGER_CHAINS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]])


@dataclass(frozen=True)
class OptStage:
    name: str
    factors: tuple[str, ...]
    lr: float
    w2d: float
    w3d: float
    wtrans: float
    wshape: float
    wcoll: float
    wfinger: float = 0.0

    def __post_init__(self) -> None:
        unknown = [f for f in self.factors if f not in REFINE_FACTORS]
        if not self.factors or unknown:
            raise ValueError(f'stage {self.name!r}: factors must be a non-empty subset of {REFINE_FACTORS}')
        if self.lr <= 0:
            raise ValueError(f'stage {self.name!r}: lr must be > 0, got {self.lr}')


DEFAULT_OPT_STAGES = (
    OptStage('translation', ('translation',), lr=1e-3, w2d=100, w3d=1000, wtrans=1000, wshape=0.1, wcoll=0.2),
    OptStage('orient', ('left_orient', 'right_orient'), lr=1e-2, w2d=10, w3d=1000, wtrans=100, wshape=0.1, wcoll=2.0),
    OptStage('fingers', ('fingers',), lr=1e-2, w2d=10, w3d=1000, wtrans=100, wshape=0.1, wcoll=2.0, wfinger=1e5),
    OptStage('shape', ('shape',), lr=1e-2, w2d=10, w3d=1000, wtrans=100, wshape=0.1, wcoll=2.0),
)


@dataclass
class OptConfig:
    stages: tuple[OptStage, ...] = DEFAULT_OPT_STAGES
    steps: int = 40
    snapshot_every: int = 5
    joint_tolerance: float = 0.0
    collision_drop: float = 0.1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.snapshot_every < 1:
            raise ValueError(f'steps and snapshot_every must be >= 1, got {self.steps}, {self.snapshot_every}')


@dataclass
class CameraProjection:
    """Camera-frame points -> the network input's normalised [-1, 1] coordinates (the joints_2d frame).

    K: 3x3 intrinsics of the original image; letterbox: geometry.camera.LetterboxTransform.
    """

    K: np.ndarray
    letterbox: LetterboxTransform
    _cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor, float]] = field(
        default_factory=dict, repr=False
    )

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        key = (points.device, points.dtype)
        if key not in self._cache:
            K = torch.as_tensor(np.asarray(self.K, np.float64), dtype=points.dtype, device=points.device)
            lb = self.letterbox
            pad = torch.tensor([lb.pad_left, lb.pad_top], dtype=points.dtype, device=points.device)
            self._cache[key] = (K, pad, 0.5 * lb.padded_side)
        K, pad, half = self._cache[key]
        z = points[..., 2:3].clamp_min(1e-3)
        uv = (points[..., :2] / z) @ K[:2, :2].T + K[:2, 2]
        return (uv + pad) / half - 1.0


def finger_twist_loss(joints: torch.Tensor) -> torch.Tensor:
    """(B,) IHMR finger regulariser over (B, 21, 3) joints: per finger, |b3 . (b1 x b2)| (the three bones
    leave a plane) minus min(0, (b1 x b2) . (b2 x b3)) (the finger bends back on itself); summed."""
    chains = joints[:, _FINGER_CHAINS.to(joints.device)]  # (B, 5, 4, 3)
    b1, b2, b3 = (chains[:, :, i + 1] - chains[:, :, i] for i in range(3))
    n12, n23 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
    return ((b3 * n12).sum(-1).abs() - (n12 * n23).sum(-1).clamp_max(0.0)).sum(-1)


def _stage_vector(vec0: torch.Tensor, stage: OptStage, param: torch.Tensor) -> torch.Tensor:
    out, pos = vec0, 0
    for f in stage.factors:
        k = FACTOR_SIZES[f]
        out = apply_factor(out, f, param[:, pos : pos + k])
        pos += k
    return out


def _stage_meshes(
    hand_model: HandModel, stage: OptStage, vec: torch.Tensor, base_vec: torch.Tensor, base_meshes: HandMeshes | None
) -> HandMeshes:
    if stage.factors == ('translation',):
        assert base_meshes is not None, 'optimize_batch computes the base meshes for a translation stage'
        old, new = wrists_from_vector(base_vec), wrists_from_vector(vec)
        return {
            s: (base_meshes[s][0] + (n - o)[:, None], base_meshes[s][1] + (n - o)[:, None])
            for s, o, n in zip(SIDES, old, new)
        }
    return forward_hands(hand_model, vec)


def optimize_batch(
    vec: torch.Tensor,
    joint_head_out: dict[str, Any],
    hand_model: HandModel,
    config: OptConfig | None = None,
    camera: CameraProjection | None = None,
    collision: TwoHandCollision | None = None,
) -> tuple[torch.Tensor, np.ndarray, dict[str, Any]]:
    """(B, 122) two-hand vectors -> (vec, accepted (B, 5) bool over REFINE_FACTORS, info dict).

    info: 'joint_error' and 'collision' (B,) at the start and the end, per-stage selected snapshot,
    'timings_ms' per stage.
    """
    config = config or OptConfig()
    collision = collision or TwoHandCollision(hand_model)
    device = hand_model.device
    if not isinstance(vec, torch.Tensor) or vec.dim() != 2 or vec.shape[1] != PARAM_DIM:
        raise ValueError(f'vec must be a (B, {PARAM_DIM}) tensor')
    batch = vec.shape[0]
    vec = vec.detach().to(device, torch.float32).clone()
    head = {
        k: (v.to(device) if v is not None else None) for k, v in check_joint_head_output(joint_head_out, batch).items()
    }
    use_2d = camera is not None and head['joints_2d'] is not None
    accepted = np.zeros((batch, len(REFINE_FACTORS)), dtype=bool)
    info: dict[str, Any] = {'selected_snapshot': {}, 'timings_ms': {}}
    arange = torch.arange(batch, device=device)
    with torch.no_grad():
        meshes = forward_hands(hand_model, vec)
        info['joint_error_start'] = joint_errors(meshes['left'][1], meshes['right'][1], head).cpu().numpy()
        info['collision_start'] = collision.errors(meshes['left'][0], meshes['right'][0])

    for stage in config.stages:
        t0 = time.perf_counter()
        base_vec = vec
        with torch.no_grad():
            base_meshes = forward_hands(hand_model, base_vec) if stage.factors == ('translation',) else None
        param = torch.nn.Parameter(torch.cat([extract_factor(vec, f) for f in stage.factors], dim=1))
        optimiser = torch.optim.Adam([param], lr=stage.lr, betas=(0.9, 0.999))
        snapshots: list[torch.Tensor] = []
        joint_hist: list[np.ndarray] = []
        coll_hist: list[np.ndarray] = []
        for step in range(config.steps + 1):
            cur = _stage_vector(base_vec, stage, param)
            m = _stage_meshes(hand_model, stage, cur, base_vec, base_meshes)
            (vl, jl), (vr, jr) = m['left'], m['right']
            coll = collision.loss(vl, vr)
            if step % config.snapshot_every == 0 or step == config.steps:
                with torch.no_grad():
                    snapshots.append(cur.detach().clone())
                    joint_hist.append(joint_errors(jl, jr, head).cpu().numpy())
                    coll_hist.append(coll.detach().cpu().numpy().astype(np.float64))
            if step == config.steps:
                break
            loss = stage.w3d * joint_errors(jl, jr, head, squared=True) + stage.wcoll * coll
            if head['relative_translation'] is not None and stage.wtrans:
                rel = (jl[:, 0] - jr[:, 0]) - head['relative_translation']
                loss = loss + stage.wtrans * (rel * rel).sum(-1)
            if stage.wshape:
                db = cur[:, 99:109] - cur[:, 109:119]
                loss = loss + stage.wshape * (db * db).sum(-1)
            if use_2d and stage.w2d:
                assert camera is not None and head['joints_2d'] is not None  # what use_2d checked
                proj = torch.stack([camera(jl), camera(jr)], dim=1)
                loss = loss + stage.w2d * (proj - head['joints_2d']).abs().mean((1, 2, 3))
            if stage.wfinger:
                loss = loss + stage.wfinger * (finger_twist_loss(jl) + finger_twist_loss(jr))
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
        choice = select_snapshots(
            np.stack(joint_hist), np.stack(coll_hist), config.joint_tolerance, config.collision_drop
        )
        vec = torch.stack(snapshots)[torch.as_tensor(choice, device=device), arange]
        for f in stage.factors:
            accepted[:, REFINE_FACTORS.index(f)] |= choice > 0
        info['selected_snapshot'][stage.name] = choice
        info['timings_ms'][stage.name] = (time.perf_counter() - t0) * 1e3
    with torch.no_grad():
        meshes = forward_hands(hand_model, vec)
        info['joint_error_end'] = joint_errors(meshes['left'][1], meshes['right'][1], head).cpu().numpy()
        info['collision_end'] = collision.errors(meshes['left'][0], meshes['right'][0])
    return vec, accepted, info


def optimize_state(
    state: TwoHandState,
    joint_head_out: dict[str, Any],
    hand_model: HandModel,
    config: OptConfig | None = None,
    camera: CameraProjection | None = None,
    gate_m: float | None = None,
) -> tuple[TwoHandState, tuple[str, ...], dict[str, Any]]:
    """One frame (or batch) as a TwoHandState. -> (new_state, accepted names, info). Single hands, and
    with ``gate_m`` hands whose wrists are farther apart, come back unchanged."""
    if not isinstance(state, TwoHandState):
        raise TypeError(f'state must be a TwoHandState, got {type(state).__name__}')
    if not state.is_pair:
        return state, (), {}
    vec = state.to_vector()
    if gate_m is not None and not bool(gate_mask(vec, gate_m).any()):
        return state, (), {}
    new_vec, accepted, info = optimize_batch(vec, joint_head_out, hand_model, config, camera)
    names = tuple(f for i, f in enumerate(REFINE_FACTORS) if accepted[:, i].any())
    assert state.left is not None  # is_pair above
    new_state = TwoHandState.from_vector(new_vec.to(state.left.translation.device), batched=state.left.batched)
    return new_state, names, info
