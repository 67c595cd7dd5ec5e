"""IHMR-MLP: one residual MLP per factor, applied in stages, each stage verified (method-acr-ihmr.md §3.3).

Stage order = results.REFINE_FACTORS: translation, left_orient, right_orient, fingers, shape (IHMR's
camera stage is left out: the pipeline solves the camera from the intrinsics). Each MLP sees
[pooled image feature, current 122-d two-hand vector] and proposes a residual for its factor only;
the candidate is kept per sample only if the joint error (vs the joint head) and the collision error
both drop strictly (verify.accept_candidates).

Cost control, all exact consequences of that rule: the gate skips single or distant hands before any
work; a pair with zero collision skips every stage (collision cannot drop below 0); the collision of a
candidate is computed only where its joint error already dropped; a stage re-runs MANO and rebuilds the
collision structures only for the hands it changes (translation: none, the meshes and structures are
shifted; an orientation stage: none, its hand's mesh and structures are rotated about the wrist, equal to a
MANO pass up to float32 rounding, ~1e-7 m).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.refine.collision import TwoHandCollision
from hand_recon_ros.refine.factors import (
    DEFAULT_GATE_M,
    FACTOR_SIDES,
    FACTOR_SIZES,
    PARAM_DIM,
    REFINE_FACTORS,
    HandMeshes,
    TwoHandState,
    apply_factor,
    extract_factor,
    forward_hands,
    gate_mask,
    should_refine,
    wrists_from_vector,
)
from hand_recon_ros.refine.verify import accept_candidates, check_joint_head_output, joint_errors

if TYPE_CHECKING:
    from hand_recon_ros.hand_model.model import HandModel
    from hand_recon_ros.hand_model.penetration import MeshSolid

__all__ = ['FactorMLP', 'Refiner', 'build_refiner', 'resolve_stages', 'rotation_matrices', 'STAGES_AUTO', 'STAGES_ALL']

_ORIENT_SIDE = {'left_orient': 'left', 'right_orient': 'right'}
_ORIENT_COLUMNS = {'left_orient': slice(3, 6), 'right_orient': slice(6, 9)}


def rotation_matrices(axis_angle: np.ndarray) -> np.ndarray:
    """(B, 3, 3) float64 rotation matrices of (B, 3) axis-angle vectors (Rodrigues; exact at angle 0)."""
    aa = np.asarray(axis_angle, dtype=np.float64).reshape(-1, 3)
    angle = np.linalg.norm(aa, axis=1)
    small = angle < 1e-8
    safe = np.where(small, 1.0, angle)
    # sin(a)/a and (1 - cos(a))/a^2 with their limits 1 and 1/2 at a = 0.
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, (1.0 - np.cos(safe)) / safe**2)
    x, y, z = aa.T
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=1).reshape(-1, 3, 3)
    return np.eye(3) + a[:, None, None] * k + b[:, None, None] * (k @ k)


STAGES_AUTO = 'auto'
STAGES_ALL = 'all'


def resolve_stages(spec: str, accept_rates: dict[str, float] | None = None) -> tuple[str, ...]:
    """Which factor stages run, in REFINE_FACTORS order.

    ``spec``: 'all'; 'auto' = the stages accepted on some held-out pair when the weights were trained
    (``accept_rates``, the weights' ``metrics.accept_rate``; every stage when there is no record, e.g.
    untrained weights); or comma-separated factor names. A stage that verification never accepted
    still costs its MLP, its hand-model pass and its collision checks on every close pair."""
    if not isinstance(spec, str):
        raise TypeError(f'stages must be a string, got {type(spec).__name__}')
    text = spec.strip()
    if text == STAGES_ALL:
        return REFINE_FACTORS
    if text == STAGES_AUTO:
        if not accept_rates:
            return REFINE_FACTORS
        return tuple(f for f in REFINE_FACTORS if float(accept_rates.get(f, 1.0)) > 0.0)
    names = [n.strip() for n in text.split(',') if n.strip()]
    unknown = [n for n in names if n not in REFINE_FACTORS]
    if not names or unknown:
        raise ValueError(
            f"stages must be 'auto', 'all' or comma-separated names from {', '.join(REFINE_FACTORS)}; got {spec!r}"
        )
    return tuple(f for f in REFINE_FACTORS if f in names)


@contextlib.contextmanager
def _torch_threads(num_threads: int | None, device: torch.device | str) -> Iterator[None]:
    """torch's CPU thread count set for a block and restored after (process-wide while it runs)."""
    previous = torch.get_num_threads()
    change = num_threads is not None and torch.device(device).type == 'cpu' and previous != num_threads
    if change:
        assert num_threads is not None  # change implies it
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(previous)


class FactorMLP(nn.Module):
    """FC 512-256-128-K with ReLU; Xavier-uniform weights with a small gain so residuals start near 0."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden: Sequence[int] = (512, 256, 128), init_gain: float = 0.01
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=init_gain)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Refiner(nn.Module):
    def __init__(
        self,
        feature_dim: int = 1024,
        hand_model: HandModel | None = None,
        gate_m: float = DEFAULT_GATE_M,
        hidden: Sequence[int] = (512, 256, 128),
        init_gain: float = 0.01,
        num_threads: int | None = 1,
    ) -> None:
        super().__init__()
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f'num_threads must be a positive int or None, got {num_threads!r}')
        # Small matmuls and MANO passes: one thread was ~6x faster than two on the shared 2-core machine.
        self.num_threads = num_threads
        if hand_model is None:
            raise ValueError('Refiner needs a hand model (hand_model.load_hand_model())')
        if not isinstance(feature_dim, int) or feature_dim <= 0:
            raise ValueError(f'feature_dim must be a positive int, got {feature_dim!r}')
        self.feature_dim = feature_dim
        self.gate_m = float(gate_m)
        self.factors = REFINE_FACTORS
        self.stages: tuple[str, ...] = REFINE_FACTORS  # the factors that run (set_stages); all have MLPs
        self.mlps = nn.ModuleDict(
            {f: FactorMLP(feature_dim + PARAM_DIM, FACTOR_SIZES[f], hidden, init_gain) for f in self.factors}
        )
        # Kept out of the module tree: the refiner's state dict must never contain MANO-derived buffers.
        self._hand_model = (hand_model,)
        self.collision = TwoHandCollision(hand_model)

    @property
    def hand_model(self) -> HandModel:
        return self._hand_model[0]

    def set_stages(self, stages: Sequence[str]) -> None:
        """Run only these factor stages (kept in factor order); the others stay unaccepted."""
        unknown = [f for f in stages if f not in self.factors]
        if unknown:
            raise ValueError(f'unknown refinement stages {unknown}; factors are {self.factors}')
        self.stages = tuple(f for f in self.factors if f in stages)

    def propose(self, factor: str, vec: torch.Tensor, image_feature: torch.Tensor) -> torch.Tensor:
        """Candidate vector (B, 122) for one stage: the factor's columns + the MLP residual (differentiable,
        for training)."""
        residual = self.mlps[factor](torch.cat([image_feature, vec], dim=1))
        return apply_factor(vec, factor, extract_factor(vec, factor) + residual)

    def _check_feature(self, image_feature: torch.Tensor, batch: int) -> torch.Tensor:
        if not isinstance(image_feature, torch.Tensor):
            raise TypeError(f'image_feature must be a torch.Tensor, got {type(image_feature).__name__}')
        if image_feature.dim() == 1:
            image_feature = image_feature[None]
        if image_feature.shape != (batch, self.feature_dim):
            raise ValueError(f'image_feature must be ({batch}, {self.feature_dim}), got {tuple(image_feature.shape)}')
        return image_feature

    def _candidate_meshes(self, factor: str, cand: torch.Tensor, vec: torch.Tensor, meshes: HandMeshes) -> HandMeshes:
        """Meshes of a stage's candidates. Translation shifts the current meshes; an orientation stage
        rotates that hand's current mesh about its wrist (MANO rotates the whole hand about the wrist joint,
        so this equals a MANO pass up to float32 rounding, ~1e-7 m); the others run MANO for the hands
        they change."""
        if factor == 'translation':
            old, new = wrists_from_vector(vec), wrists_from_vector(cand)
            return {
                side: (meshes[side][0] + (n - o)[:, None], meshes[side][1] + (n - o)[:, None])
                for side, o, n in zip(SIDES, old, new)
            }
        out = dict(meshes)
        if factor in _ORIENT_SIDE:
            side = _ORIENT_SIDE[factor]
            rotation, wrist = self._orient_motion(factor, cand, vec)
            rot = torch.as_tensor(rotation, device=cand.device)
            pivot = torch.as_tensor(wrist, device=cand.device)[:, None]
            out[side] = tuple(((m.double() - pivot) @ rot.transpose(1, 2) + pivot).to(m.dtype) for m in meshes[side])
            return out
        out.update(forward_hands(self.hand_model, cand, FACTOR_SIDES[factor]))
        return out

    @staticmethod
    def _orient_motion(factor: str, cand: torch.Tensor, vec: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, 3) float64 rotations taking the current hand to the candidate's, and (B, 3) wrists."""
        cols = _ORIENT_COLUMNS[factor]
        new = rotation_matrices(cand[:, cols].detach().cpu().double().numpy())
        old = rotation_matrices(vec[:, cols].detach().cpu().double().numpy())
        wrist = wrists_from_vector(vec)[0 if _ORIENT_SIDE[factor] == 'left' else 1]
        return new @ old.transpose(0, 2, 1), wrist.detach().cpu().double().numpy()

    def _candidate_solids(
        self,
        factor: str,
        cand: torch.Tensor,
        vec: torch.Tensor,
        cand_meshes: HandMeshes,
        solids: dict[str, list[MeshSolid | None]],
        need: np.ndarray,
    ) -> dict[str, list[MeshSolid | None]]:
        """Collision solids of a stage's candidates (rows in ``need``): a translation shifts the current
        ones, an orientation stage rotates the current one of its hand (no rebuild), another stage
        rebuilds the hands it changes; the other hand's solid is kept."""
        if factor == 'translation':
            shifts = [
                (n - o).detach().cpu().double().numpy()
                for o, n in zip(wrists_from_vector(vec), wrists_from_vector(cand))
            ]
            return {
                side: [
                    s.translated(shift[j]) if need[j] and s is not None else None for j, s in enumerate(solids[side])
                ]
                for side, shift in zip(SIDES, shifts)
            }
        out = dict(solids)
        if factor in _ORIENT_SIDE:
            side = _ORIENT_SIDE[factor]
            rotation, wrist = self._orient_motion(factor, cand, vec)
            out[side] = [
                s.rotated(rotation[j], wrist[j]) if need[j] and s is not None else None
                for j, s in enumerate(solids[side])
            ]
            return out
        for side in FACTOR_SIDES[factor]:
            out[side] = self.collision.solids(side, cand_meshes[side][0], mask=need)
        return out

    def refine_batch(
        self,
        vec: torch.Tensor,
        image_feature: torch.Tensor,
        joint_head_out: dict[str, Any],
        trace: list[dict[str, Any]] | None = None,
    ) -> tuple[torch.Tensor, np.ndarray, dict[str, float]]:
        """Batched refinement of (B, 122) two-hand vectors. -> (vec, accepted (B, 5) bool, timings_ms).

        ``trace``: optional list; one dict per stage run is appended (errors before/after, accepted).
        Only the factors in ``self.stages`` run; the others' columns of ``accepted`` stay False.
        On CPU, torch runs with ``num_threads`` threads for the call (restored afterwards).
        """
        with torch.no_grad(), _torch_threads(self.num_threads, self.hand_model.device):
            return self._refine_batch(vec, image_feature, joint_head_out, trace)

    def _refine_batch(
        self,
        vec: torch.Tensor,
        image_feature: torch.Tensor,
        joint_head_out: dict[str, Any],
        trace: list[dict[str, Any]] | None = None,
    ) -> tuple[torch.Tensor, np.ndarray, dict[str, float]]:
        t_start = time.perf_counter()
        timings = {'refine_mlp': 0.0, 'refine_hand_model': 0.0, 'refine_collision': 0.0}
        device = self.hand_model.device
        if not isinstance(vec, torch.Tensor) or vec.dim() != 2 or vec.shape[1] != PARAM_DIM:
            raise ValueError(f'vec must be a (B, {PARAM_DIM}) tensor')
        batch = vec.shape[0]
        vec = vec.detach().to(device, torch.float32).clone()
        feature = self._check_feature(image_feature, batch).detach().to(device, torch.float32)
        head = check_joint_head_output(joint_head_out, batch)
        head = {k: (v.to(device) if v is not None else None) for k, v in head.items()}
        accepted = np.zeros((batch, len(self.factors)), dtype=bool)
        active = gate_mask(vec, self.gate_m).cpu().numpy()

        def clock(key: str, t: float) -> None:
            timings[key] += (time.perf_counter() - t) * 1e3

        if active.any():
            t = time.perf_counter()
            meshes = forward_hands(self.hand_model, vec)
            clock('refine_hand_model', t)
            joint_err = joint_errors(meshes['left'][1], meshes['right'][1], head).cpu().numpy().astype(np.float64)
            t = time.perf_counter()
            # Each hand's collision structures are kept across stages: a stage rebuilds only the hands it
            # changes, and a translation only shifts them.
            solids = {side: self.collision.solids(side, meshes[side][0], mask=active) for side in SIDES}
            coll = self.collision.errors_of(solids['left'], solids['right'], mask=active)
            clock('refine_collision', t)
            active &= coll > 0  # NaN > 0 is False
            for i, factor in enumerate(self.factors):
                if not active.any():
                    break
                if factor not in self.stages:
                    continue
                t = time.perf_counter()
                cand = self.propose(factor, vec, feature)
                clock('refine_mlp', t)
                t = time.perf_counter()
                cand_meshes = self._candidate_meshes(factor, cand, vec, meshes)
                clock('refine_hand_model', t)
                cand_joint = joint_errors(cand_meshes['left'][1], cand_meshes['right'][1], head).cpu().numpy()
                with np.errstate(invalid='ignore'):
                    need = active & (cand_joint < joint_err)
                t = time.perf_counter()
                cand_solids = self._candidate_solids(factor, cand, vec, cand_meshes, solids, need)
                cand_coll = self.collision.errors_of(cand_solids['left'], cand_solids['right'], mask=need)
                clock('refine_collision', t)
                ok = accept_candidates(joint_err, coll, cand_joint, cand_coll) & active
                if trace is not None:
                    trace.append(
                        {
                            'factor': factor,
                            'active': active.copy(),
                            'joint_before': joint_err.copy(),
                            'collision_before': coll.copy(),
                            'joint_candidate': cand_joint.astype(np.float64),
                            'collision_candidate': cand_coll.copy(),
                            'accepted': ok.copy(),
                        }
                    )
                if ok.any():
                    rows = torch.as_tensor(ok, device=device)
                    vec = torch.where(rows[:, None], cand, vec)
                    keep = rows[:, None, None]
                    meshes = {
                        s: tuple(torch.where(keep, c, m) for c, m in zip(cand_meshes[s], meshes[s])) for s in meshes
                    }
                    for side in solids:
                        solids[side] = [c if take else m for c, m, take in zip(cand_solids[side], solids[side], ok)]
                    joint_err = np.where(ok, cand_joint, joint_err)
                    coll = np.where(ok, cand_coll, coll)
                    accepted[:, i] = ok
                    active &= coll > 0
        timings['refine_total'] = (time.perf_counter() - t_start) * 1e3
        return vec, accepted, timings

    def refine(
        self, state: TwoHandState, image_feature: torch.Tensor, joint_head_out: dict[str, Any]
    ) -> tuple[TwoHandState, tuple[str, ...], dict[str, float]]:
        """One frame. -> (new_state, accepted factor names, timings_ms). Returns ``state`` itself when
        the gate skips it or no stage is accepted."""
        t_start = time.perf_counter()
        if not isinstance(state, TwoHandState):
            raise TypeError(f'state must be a TwoHandState, got {type(state).__name__}')
        if not should_refine(state, self.gate_m):
            return state, (), {'refine_total': (time.perf_counter() - t_start) * 1e3}
        vec = state.to_vector()
        if vec.shape[0] != 1:
            raise ValueError(f'refine() takes one frame; use refine_batch for a batch of {vec.shape[0]}')
        new_vec, accepted, timings = self.refine_batch(vec, image_feature, joint_head_out)
        names = tuple(f for f, a in zip(self.factors, accepted[0]) if a)
        timings['refine_total'] = (time.perf_counter() - t_start) * 1e3
        if not names:
            return state, (), timings
        assert state.left is not None  # should_refine passed: both hands are present
        new_vec = new_vec.to(state.left.translation.device)
        return TwoHandState.from_vector(new_vec, batched=state.left.batched), names, timings


def build_refiner(
    feature_dim: int = 1024, hand_model: HandModel | None = None, gate_m: float = DEFAULT_GATE_M, **kwargs: Any
) -> Refiner:
    """The MLP refiner (untrained weights: residuals ~ 0, anything worse is rejected by verification).
    ``hand_model=None`` loads the default model (MANO from $HAND_RECON_MANO_DIR, else the stand-in)."""
    if hand_model is None:
        from hand_recon_ros.hand_model.model import load_hand_model

        hand_model = load_hand_model()
    refiner = Refiner(feature_dim, hand_model, gate_m, **kwargs)
    return refiner.to(hand_model.device).eval()
