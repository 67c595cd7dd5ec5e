"""Train IHMR-MLP (the joint head + the five factor MLPs of hand_recon_ros.refine) on close two-hand pairs.

    python -m hand_recon_train.train_ihmr --config ihmr_tiny                      # seconds, CPU
    python -m hand_recon_train.train_ihmr --config ihmr_synthetic --acr-weights models/acr_default.safetensors

Recipe (method-acr-ihmr.md §3.3): data = the synthetic generator with scene weights on close interaction
(``data.synth``), both hands valid. A FROZEN ACR network gives each sample's image feature (the refiner's
input, as in the pipeline) and, with ``init.source: acr``, the initial two-hand state: its parameters read
at the ground-truth centres (no detection misses), turned into metric hands by the pipeline's own
``hands_from_params`` (camera solve from K). ``init.source: perturbed`` starts from the ground truth with
noise instead, pulling the wrists together to create collisions (cheaper, needs no trained ACR; the
weights then learn to undo that noise, not ACR's errors: the manifest records which).

1. The joint head is trained first (3D wrist-relative joints, 2D joints, wrist-to-wrist vector); its
   outputs are the verifier's pseudo ground truth, as at inference.
2. Factor stages in order (translation, left_orient, right_orient, fingers, shape): before stage i every
   training sample has passed through the trained stages < i WITH the verifier (``Refiner.refine_batch``,
   the inference path); stage i's MLP is then trained with Adam (lr 1e-4) on
   param + 3D joints + translation + collision (x1) against the targets (ground truth, or with
   ``targets.source: opt`` the result of IHMR-OPT from the initial state, as IHMR's ``--use_opt_params``).

Output folder: ``refiner.safetensors`` + ``refiner.json`` (hand_recon_ros.refine.weights; load with
``load_refiner_weights(refiner, joint_head, path)`` or ``build_from_weights(path, hand_model)``),
``train_log.csv`` (per step), ``manifest.json`` (sha256, config, data, metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hand_recon_ros import metrics
from hand_recon_ros.conventions import ROOT_WRIST, SIDES
from hand_recon_ros.geometry import rotations
from hand_recon_ros.refine.factors import PARAM_DIM, REFINE_FACTORS, extract_factor, forward_hands
from hand_recon_ros.refine.verify import joint_errors

from .config import IhmrConfig, InitSection, PairDataSection, build_config, load_config
from .loop import Hook, LoopState, run_loop
from .run_record import CsvLog, manifest, write_manifest

__all__ = [
    'load_ihmr_config',
    'as_ihmr_config',
    'build_acr_for_features',
    'prepare_split',
    'train_joint_head',
    'joint_head_outputs',
    'stage_loss',
    'apply_stage',
    'train_stage',
    'evaluate_refiner',
    'train_ihmr',
    'load_refiner_weights',
    'main',
]

# touching pairs ('close') and near ones ('interacting'); both give the refiner something to separate
CLOSE_INTERACTION = {'interacting': 0.4, 'close': 0.6}


# ---------------------------------------------------------------------------------------------- config
def load_ihmr_config(name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> IhmrConfig:
    """An IHMR-MLP training config (``hand_recon_train.config.IhmrConfig``) by path or by name in
    hand_recon_train/configs; ``overrides`` are ``section.key=value`` strings."""
    return typing.cast(IhmrConfig, load_config(name_or_path, overrides, schema=IhmrConfig))


def as_ihmr_config(config: IhmrConfig | dict) -> IhmrConfig:
    """A config as given, or rebuilt (and checked) from the mapping a run record stores."""
    if isinstance(config, IhmrConfig):
        return config
    built = build_config(IhmrConfig, config)
    built.check()
    return built


# ---------------------------------------------------------------------------------------------- data
def build_acr_for_features(config: IhmrConfig, device) -> Any:
    """The frozen ACR network: ``acr.weights`` when given, else a seeded untrained ``acr.preset``."""
    from hand_recon_ros.acr.network import build_acr
    from hand_recon_ros.acr.weights import load_acr

    acfg = config.acr
    if acfg.weights:
        network = load_acr(acfg.weights)
    else:
        torch.manual_seed(int(acfg.seed))
        network = build_acr(acfg.preset, input_size=int(acfg.input_size))
    return network.to(device).eval().requires_grad_(False)


def _gt_vector(batch, rows):
    """(N, 122) two-hand vectors of the ground truth (wrist = joint 0 in the camera frame)."""

    def side(s):
        return (
            batch['global_orient'][rows, s],
            batch['hand_pose'][rows, s],
            batch['betas'][rows, s],
            batch['joints_3d'][rows, s, ROOT_WRIST],
        )

    (ol, pl, bl, wl), (orr, pr, br, wr) = side(0), side(1)
    return torch.cat([wl - wr, ol, orr, pl, pr, bl, br, 0.5 * (wl + wr)], dim=1).float()


def _perturbed(gt_vec: torch.Tensor, indices, cfg: InitSection) -> torch.Tensor:
    """Ground truth + per-sample noise (stream default_rng([init.seed, index]): independent of batching);
    the wrist-to-wrist vector is shortened by ``approach`` (fraction) so that many pairs interpenetrate."""
    out = gt_vec.clone()
    lo, hi = cfg.approach
    for row, index in enumerate(indices):
        rng = np.random.default_rng([int(cfg.seed), int(index)])
        noise = np.zeros(PARAM_DIM)
        noise[0:3] = -rng.uniform(lo, hi) * gt_vec[row, 0:3].numpy() + rng.normal(0, cfg.translation_m, 3)
        noise[3:9] = rng.normal(0, cfg.orient_rad, 6)
        noise[9:99] = rng.normal(0, cfg.finger_rad, 90)
        noise[99:119] = rng.normal(0, cfg.betas_std, 20)
        out[row] += torch.from_numpy(noise).float()
    return out


def _acr_initial(reconstructor, side_params, batch, rows):
    """Initial vectors from ACR's parameters through the pipeline's camera solve; None where a hand drops."""
    from hand_recon_ros.refine.factors import TwoHandState

    size = batch['image'].shape[-1]
    out = []
    for b in rows.tolist():
        hands = reconstructor.hands_from_params(
            side_params[b].float().cpu(), list(SIDES), [1.0, 1.0], (size, size), batch['K'][b].double().cpu().numpy()
        )
        state = TwoHandState.from_hand_results(hands)
        out.append(state.to_vector()[0] if state.is_pair else None)
    return out


def _synth_config(dcfg: PairDataSection, image_size: int) -> Any:
    from .synth import SynthConfig

    return SynthConfig.from_dict({'scene_weights': dict(CLOSE_INTERACTION), **dcfg.synth, 'image_size': image_size})


@torch.no_grad()
def prepare_split(config: IhmrConfig, seed: int, size: int, network, hand_model, device) -> dict:
    """Render ``size`` samples of the close-interaction generator (seed ``seed``), keep those with both
    hands valid (and, with ``data.drop_penetrating_gt``, a collision-free ground truth), run the frozen ACR
    once. -> tensors (N, ...): feature, side_params (ACR's 109 per side at
    the GT centres), init_vec, gt_vec, joints_3d (camera frame), joints_2d ([-1, 1]), index; plus counts."""
    from torch.utils.data import DataLoader

    from .losses import select_hand_params
    from .synth import SynthDataset

    dcfg = config.data
    synth = _synth_config(dcfg, network.config.input_size)
    data = SynthDataset(synth, seed=seed, length=size, normalization=network.normalization, cache_dir=dcfg.cache_dir)
    loader = DataLoader(data, batch_size=config.acr.batch_size, num_workers=0)
    reconstructor = None
    if config.init.source == 'acr':
        from hand_recon_ros.pipeline import HandReconstructor

        reconstructor = HandReconstructor(network, hand_model, device, refine=False)
    keep = {k: [] for k in ('feature', 'side_params', 'init_vec', 'gt_vec', 'joints_3d', 'joints_2d', 'index')}
    dropped = 0
    for batch in loader:
        valid = batch['valid'].bool().all(dim=1)
        rows = torch.nonzero(valid).flatten()
        if len(rows) == 0:
            continue
        outputs = {k: v.float() for k, v in network(batch['image'].to(device)).items()}
        side_params, _ = select_hand_params(
            outputs, batch['center_maps'].to(device), batch['valid'].to(device), network.config.decode
        )
        gt_vec = _gt_vector(batch, rows)
        if reconstructor is None:
            init = list(_perturbed(gt_vec, batch['index'][rows].tolist(), config.init))
        else:
            init = _acr_initial(reconstructor, side_params, batch, rows)
        for j, b in enumerate(rows.tolist()):
            if init[j] is None or not torch.isfinite(init[j]).all():
                dropped += 1
                continue
            keep['feature'].append(outputs['image_feature'][b].cpu())
            keep['side_params'].append(side_params[b].cpu())
            keep['init_vec'].append(init[j].float().cpu())
            keep['gt_vec'].append(gt_vec[j])
            keep['joints_3d'].append(batch['joints_3d'][b].float())
            keep['joints_2d'].append(batch['joints_2d'][b].float())
            keep['index'].append(batch['index'][b])
    if not keep['index']:
        raise ValueError(
            f'no usable close two-hand sample in {size} samples of seed {seed} '
            f'({dropped} dropped by the camera solve): raise data sizes or check init.source'
        )
    split = {k: torch.stack(v) for k, v in keep.items()}
    penetrating = 0
    if dcfg.drop_penetrating_gt:
        # the generator's "apart" test samples vertices, so a few ground-truth pairs still interpenetrate
        # (measured: 3 of 40, up to 15 mm); a target inside the other hand would fight the collision term
        from hand_recon_ros.refine.collision import TwoHandCollision

        meshes = forward_hands(hand_model, split['gt_vec'].to(hand_model.device))
        coll = TwoHandCollision(hand_model).errors(meshes['left'][0], meshes['right'][0])
        free = torch.as_tensor(coll == 0)
        penetrating = int((~free).sum())
        split = _subset(split, torch.nonzero(free).flatten())
        if not len(split['index']):
            raise ValueError(f'every ground-truth pair of seed {seed} interpenetrates ({penetrating})')
    split.update(num_rendered=size, num_dropped=dropped, num_penetrating_gt=penetrating, seed=seed)
    return split


def _subset(split, rows):
    return {k: (v[rows] if isinstance(v, torch.Tensor) else v) for k, v in split.items()}


# ---------------------------------------------------------------------------------------------- joint head
def _head_targets(split):
    j = split['joints_3d']
    return {'joints_3d': j - j[:, :, :1], 'joints_2d': split['joints_2d'], 'relative': j[:, 0, 0] - j[:, 1, 0]}


def _head_loss(out, target, weights):
    terms = {
        'j3d': (out['joints_3d'] - target['joints_3d']).norm(dim=-1).mean(),
        'j2d': (out['joints_2d'] - target['joints_2d']).abs().mean(),
        'relative': (out['relative_translation'] - target['relative']).norm(dim=-1).mean(),
    }
    return sum(getattr(weights, k) * v for k, v in terms.items()), {k: float(v.detach()) for k, v in terms.items()}


def joint_head_outputs(joint_head, split, use_side_params: bool, batch_size: int = 256) -> dict:
    """The head's outputs for a whole split (no gradient), as the verifier takes them."""
    outs = []
    with torch.no_grad():
        for start in range(0, len(split['index']), batch_size):
            sl = slice(start, start + batch_size)
            outs.append(joint_head(split['feature'][sl], split['side_params'][sl] if use_side_params else None))
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def _row_batches(n: int, batch_size: int, gen: torch.Generator) -> Callable[[int], Any]:
    """The loop's batch source over a split held in memory: each epoch a fresh permutation of its rows."""

    def batches(epoch: int) -> Any:
        order = torch.randperm(n, generator=gen)
        return (order[start : start + batch_size] for start in range(0, n, batch_size))

    return batches


def train_joint_head(joint_head, split: dict, config: IhmrConfig, hooks: typing.Sequence[Hook] = ()) -> dict:
    """Adam on the 3D / 2D / wrist-to-wrist terms; returns {'loss_before', 'loss_after', 'steps'}. ``hooks``
    (e.g. ``run_record.CsvLog``) see each step's record (phase ``joint_head``)."""
    hcfg = config.joint_head
    target = _head_targets(split)
    use_side = hcfg.use_side_params

    def full_loss():
        out = joint_head_outputs(joint_head, split, use_side)
        return float(_head_loss(out, target, hcfg.weights)[0])

    before = full_loss()
    optimizer = torch.optim.Adam(joint_head.parameters(), lr=hcfg.lr)
    gen = torch.Generator().manual_seed(int(config.train.seed))

    def step(rows: torch.Tensor, state: LoopState) -> dict:
        out = joint_head(split['feature'][rows], split['side_params'][rows] if use_side else None)
        loss, terms = _head_loss(out, {k: v[rows] for k, v in target.items()}, hcfg.weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {'phase': 'joint_head', 'loss': float(loss.detach()), **terms}

    joint_head.train()
    state = run_loop(step, _row_batches(len(split['index']), hcfg.batch_size, gen), range(int(hcfg.epochs)), hooks)
    joint_head.eval()
    return {'loss_before': before, 'loss_after': full_loss(), 'steps': state.step}


# ---------------------------------------------------------------------------------------------- stages
def _head_from_vec(vec, hand_model):
    """Verifier-style target dict from a two-hand vector (wrist-relative joints + wrist-to-wrist)."""
    meshes = forward_hands(hand_model, vec)
    jl, jr = meshes['left'][1], meshes['right'][1]
    return {
        'joints_3d': torch.stack([jl - jl[:, :1], jr - jr[:, :1]], dim=1),
        'relative_translation': jl[:, 0] - jr[:, 0],
    }


def stage_loss(
    refiner, factor: str, cand: torch.Tensor, target_vec: torch.Tensor, target_head: dict, weights: dict
) -> tuple[torch.Tensor, dict]:
    """IHMR's supervised stage loss of a candidate (B, 122) vs the targets: factor parameters (rotation
    matrices for orientations / finger poses, L1 for betas; the translation stage's parameter IS the
    translation term), mean squared 3D joint distance in the right-wrist frame, squared wrist-to-wrist
    error, and the summed penetration depth (differentiable collision loss). Means over the batch."""
    hand_model = refiner.hand_model
    meshes = forward_hands(hand_model, cand)
    (vl, jl), (vr, jr) = meshes['left'], meshes['right']
    first = factor == 'translation'
    terms = {'j3d': joint_errors(jl, jr, target_head, squared=True).mean()}
    rel = (jl[:, 0] - jr[:, 0]) - target_head['relative_translation']
    terms['trans'] = (rel * rel).sum(-1).mean()
    if factor == 'shape':
        terms['param'] = (extract_factor(cand, factor) - extract_factor(target_vec, factor)).abs().mean()
    elif not first:
        pred = rotations.axis_angle_to_matrix(extract_factor(cand, factor).reshape(-1, 3))
        gt = rotations.axis_angle_to_matrix(extract_factor(target_vec, factor).reshape(-1, 3))
        terms['param'] = ((pred - gt) ** 2).mean()
    terms['collision'] = refiner.collision.loss(vl, vr).mean()
    w = {
        'j3d': weights.j3d_translation_stage if first else weights.j3d,
        'trans': weights.trans_translation_stage if first else weights.trans,
        'param': weights.param,
        'collision': weights.collision,
    }
    total = sum(w[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


@contextlib.contextmanager
def _only_factors(refiner, factors):
    """Run the refiner's verified inference path over a subset of its stages."""
    saved = refiner.factors
    refiner.factors = tuple(factors)
    try:
        yield refiner
    finally:
        refiner.factors = saved


def apply_stage(refiner, factor: str, vec, feature, head_out, batch_size: int = 256):
    """One stage WITH the verifier over a whole split: (new vectors, accepted (N,) bool)."""
    outs, acc = [], []
    with _only_factors(refiner, (factor,)):
        for start in range(0, len(vec), batch_size):
            sl = slice(start, start + batch_size)
            new, accepted, _ = refiner.refine_batch(vec[sl], feature[sl], {k: v[sl] for k, v in head_out.items()})
            outs.append(new.cpu())
            acc.append(accepted[:, 0])
    return torch.cat(outs), np.concatenate(acc)


def _mean_stage_loss(refiner, factor, vec, feature, target_vec, target_head, weights, batch_size):
    total, n = 0.0, len(vec)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            cand = refiner.propose(factor, vec[sl], feature[sl])
            loss, _ = stage_loss(
                refiner, factor, cand, target_vec[sl], {k: v[sl] for k, v in target_head.items()}, weights
            )
            total += float(loss.detach()) * len(cand)
    return total / n


def train_stage(
    refiner, factor: str, vec, feature, target_vec, target_head, config: IhmrConfig, hooks: typing.Sequence[Hook] = ()
) -> dict:
    """Train one factor MLP (fresh Adam, ``refiner.lr``) on the stage inputs ``vec`` (already passed
    through the earlier stages). Returns {'loss_before', 'loss_after', 'steps'} (mean loss over ``vec``);
    ``hooks`` see each step's record (phase = the factor)."""
    rcfg, weights = config.refiner, config.loss
    mlp = refiner.mlps[factor]
    before = _mean_stage_loss(refiner, factor, vec, feature, target_vec, target_head, weights, rcfg.batch_size)
    optimizer = torch.optim.Adam(mlp.parameters(), lr=rcfg.lr)
    gen = torch.Generator().manual_seed(int(config.train.seed) * 1009 + REFINE_FACTORS.index(factor))

    def step(rows: torch.Tensor, state: LoopState) -> dict:
        cand = refiner.propose(factor, vec[rows], feature[rows])
        loss, terms = stage_loss(
            refiner, factor, cand, target_vec[rows], {k: v[rows] for k, v in target_head.items()}, weights
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if rcfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(mlp.parameters(), rcfg.grad_clip)
        optimizer.step()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f'stage {factor}: loss {float(loss.detach())} at step {state.step + 1}: {terms}')
        return {'phase': factor, 'loss': float(loss.detach()), **terms}

    mlp.train()
    state = run_loop(
        step,
        _row_batches(len(vec), rcfg.batch_size, gen),
        range(int(rcfg.epochs_per_stage)),
        hooks,
        max_steps=rcfg.max_steps_per_stage,
    )
    mlp.eval()
    after = _mean_stage_loss(refiner, factor, vec, feature, target_vec, target_head, weights, rcfg.batch_size)
    return {'loss_before': before, 'loss_after': after, 'steps': state.step}


# ---------------------------------------------------------------------------------------------- evaluation
def _pair_metrics(hand_model, vec, joints_3d):
    meshes = forward_hands(hand_model, vec)
    faces = {s: hand_model.watertight_faces(s) for s in SIDES}
    nv = hand_model.num_vertices
    rows = []
    for i in range(len(vec)):
        pred = {s: meshes[s][1][i].detach().cpu().double().numpy() for s in SIDES}
        verts = {s: hand_model.watertight_vertices(s, meshes[s][0][i].detach().cpu().double().numpy()) for s in SIDES}
        gt = {s: joints_3d[i, k].double().numpy() for k, s in enumerate(SIDES)}
        pen = metrics.penetration_from_depths(*_depths(verts, faces, nv))
        rows.append(
            {
                'mpjpe_mm': 0.5
                * (
                    metrics.mpjpe(pred['left'], gt['left'], root=ROOT_WRIST)
                    + metrics.mpjpe(pred['right'], gt['right'], root=ROOT_WRIST)
                ),
                'i_mpjpe_mm': metrics.i_mpjpe(pred['left'], pred['right'], gt['left'], gt['right']),
                'ave_p_mm': pen['ave_p_mm'],
                'max_p_mm': pen['max_p_mm'],
                'colliding': pen['n_inside'] > 0,
            }
        )
    return rows


def _depths(verts, faces, nv):
    from hand_recon_ros.hand_model.penetration import penetration_depths

    # the wrist-cap centroid closes each mesh for the inside test but is not a hand vertex: report over the
    # model's vertices only (IHMR: 2 x 778 for MANO)
    da, db = penetration_depths(verts['left'], faces['left'], verts['right'], faces['right'])
    return da[:nv], db[:nv]


EVAL_KEYS = ('mpjpe_mm', 'i_mpjpe_mm', 'ave_p_mm', 'max_p_mm')


def evaluate_refiner(refiner, joint_head, split: dict, use_side_params: bool = False, batch_size: int = 64) -> dict:
    """Metrics on a held-out split before and after the verified refinement (all five stages, the
    inference path): MPJPE (mm, each hand wrist-relative, mean of both), I-MPJPE (mm, IHMR's per-axis
    joint alignment), AVE-P / MAX-P (mm, mean over pairs; MAX-P = each pair's deepest vertex), plus the
    joint head's own 3D error and the per-factor acceptance rates."""
    hand_model = refiner.hand_model
    head = joint_head_outputs(joint_head, split, use_side_params)
    feature, vec0 = split['feature'], split['init_vec']
    outs, acc = [], []
    for start in range(0, len(vec0), batch_size):
        sl = slice(start, start + batch_size)
        new, accepted, _ = refiner.refine_batch(vec0[sl], feature[sl], {k: v[sl] for k, v in head.items()})
        outs.append(new.cpu())
        acc.append(accepted)
    vec1, accepted = torch.cat(outs), np.concatenate(acc)
    with torch.no_grad():
        before = _pair_metrics(hand_model, vec0, split['joints_3d'])
        after = _pair_metrics(hand_model, vec1, split['joints_3d'])
    target = _head_targets(split)
    head_err = (head['joints_3d'] - target['joints_3d']).norm(dim=-1).mean() * 1000.0
    result = {
        'num_pairs': len(vec0),
        'num_colliding_before': int(sum(r['colliding'] for r in before)),
        'num_colliding_after': int(sum(r['colliding'] for r in after)),
        'joint_head_mpjpe_mm': float(head_err),
        'accept_rate': {f: float(accepted[:, i].mean()) for i, f in enumerate(refiner.factors)},
    }
    for name, rows in (('before', before), ('after', after)):
        summary = metrics.summarize([{k: r[k] for k in EVAL_KEYS} for r in rows])
        result[name] = {k: summary[k] for k in EVAL_KEYS}
    return result


# ---------------------------------------------------------------------------------------------- run
def _opt_targets(split, head_out, hand_model, steps: int, batch_size: int = 64):
    from hand_recon_ros.refine.optimize import OptConfig, optimize_batch

    outs = []
    for start in range(0, len(split['init_vec']), batch_size):
        sl = slice(start, start + batch_size)
        vec, _, _ = optimize_batch(
            split['init_vec'][sl], {k: v[sl] for k, v in head_out.items()}, hand_model, OptConfig(steps=int(steps))
        )
        outs.append(vec.detach().cpu())
    return torch.cat(outs)


LOG_FIELDS = ['phase', 'epoch', 'step', 'loss', 'j3d', 'j2d', 'relative', 'trans', 'param', 'collision']


def train_ihmr(config: IhmrConfig) -> dict:
    """Run the whole recipe; returns {'out_dir', 'weights', 'metrics', 'stages', 'joint_head'}."""
    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.refine.joint_head import JointHead, joint_template
    from hand_recon_ros.refine.refiner import build_refiner
    from hand_recon_ros.refine.weights import save_refiner_weights
    from hand_recon_ros.runtime import resolve_device, sha256_of

    from .synth import GENERATOR_VERSION

    tcfg, dcfg = config.train, config.data
    device = resolve_device(tcfg.device)
    if tcfg.threads:
        torch.set_num_threads(int(tcfg.threads))
    out_dir = Path(tcfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = [CsvLog(out_dir / 'train_log.csv', LOG_FIELDS, fresh=True)]
    t0 = time.perf_counter()

    hand_model = load_hand_model(device=device)
    network = build_acr_for_features(config, device)
    train_split = prepare_split(config, dcfg.train_seed, dcfg.train_size, network, hand_model, device)
    val_split = prepare_split(config, dcfg.val_seed, dcfg.val_size, network, hand_model, device)
    feature_dim, input_size = network.config.feature_dim, network.config.input_size
    del network

    torch.manual_seed(int(tcfg.seed))
    hcfg, rcfg = config.joint_head, config.refiner
    joint_head = JointHead(feature_dim, hidden=tuple(hcfg.hidden), template=joint_template(hand_model)).to(device)
    refiner = build_refiner(feature_dim, hand_model=hand_model, gate_m=float(rcfg.gate_m), hidden=tuple(rcfg.hidden))
    head_record = train_joint_head(joint_head, train_split, config, log)
    head_out = joint_head_outputs(joint_head, train_split, hcfg.use_side_params)

    if config.targets.source == 'opt':
        target_vec = _opt_targets(train_split, head_out, hand_model, config.targets.opt_steps)
    else:
        target_vec = train_split['gt_vec']
    with torch.no_grad():
        target_head = _head_from_vec(target_vec, hand_model)

    baseline = evaluate_refiner(refiner, joint_head, val_split, hcfg.use_side_params)
    vec, feature, stages = train_split['init_vec'], train_split['feature'], {}
    for factor in REFINE_FACTORS:
        record = train_stage(refiner, factor, vec, feature, target_vec, target_head, config, log)
        vec, accepted = apply_stage(refiner, factor, vec, feature, head_out)
        record['train_accept_rate'] = float(accepted.mean())
        stages[factor] = record
        print(
            f"stage {factor}: loss {record['loss_before']:.4g} -> {record['loss_after']:.4g}, "
            f"{record['steps']} steps, accepted on {100 * record['train_accept_rate']:.0f}% of the training pairs",
            flush=True,
        )
    result_metrics = evaluate_refiner(refiner, joint_head, val_split, hcfg.use_side_params)
    result_metrics['untrained_refiner_after'] = baseline['after']

    synth = _synth_config(dcfg, input_size)
    description = (
        f"IHMR-MLP refiner + joint head trained on synthetic close two-hand pairs ({GENERATOR_VERSION}, "
        f"{hand_model.identity}); init {config.init.source}, targets {config.targets.source}, "
        f"ACR features from {config.acr.weights or 'an UNTRAINED seeded ' + config.acr.preset}"
    )
    weights_path = out_dir / 'refiner.safetensors'
    acr_weights = config.acr.weights
    # the refiner reads this ACR's image features: the pipeline warns when it runs with another network
    acr_sha256 = sha256_of(acr_weights) if acr_weights else ''
    save_refiner_weights(
        refiner,
        joint_head,
        weights_path,
        use_side_params=hcfg.use_side_params,
        hand_model_identity=hand_model.identity,
        extra={
            'description': description,
            'metrics': result_metrics,
            'config': config.to_dict(),
            'acr_sha256': acr_sha256,
        },
    )
    data_record = {
        'generator': GENERATOR_VERSION,
        'synth_config': synth.to_dict(),
        'synth_config_hash': synth.config_hash(),
        'hand_model': hand_model.identity,
        'hand_model_is_standin': hand_model.is_standin,
    }
    for name, split in (('train', train_split), ('val', val_split)):
        data_record[name] = {
            'seed': split['seed'],
            'rendered': split['num_rendered'],
            'pairs': int(len(split['index'])),
            'dropped_by_camera_solve': split['num_dropped'],
            'dropped_penetrating_gt': split['num_penetrating_gt'],
        }
    record = manifest(
        weights_path,
        description,
        config.to_dict(),
        data_record,
        result_metrics,
        device,
        loader='hand_recon_ros.refine.weights.load_refiner_weights(refiner, joint_head, path)',
        joint_head=head_record,
        stages=stages,
        seconds=round(time.perf_counter() - t0, 1),
    )
    write_manifest(out_dir, record)
    return {
        'out_dir': str(out_dir),
        'weights': str(weights_path),
        'metrics': result_metrics,
        'stages': stages,
        'joint_head': head_record,
    }


def load_refiner_weights(refiner, joint_head, path) -> dict:
    """Same as hand_recon_ros.refine.weights.load_refiner_weights (the node should import that one)."""
    from hand_recon_ros.refine.weights import load_refiner_weights as _load

    return _load(refiner, joint_head, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Train the IHMR-MLP refiner and joint head on synthetic pairs.')
    parser.add_argument('--config', default='ihmr_tiny', help='YAML file or a name in hand_recon_train/configs')
    parser.add_argument('--acr-weights', default=None, help='frozen ACR weights (image features, init state)')
    parser.add_argument('--out-dir', default=None)
    parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE')
    args = parser.parse_args(argv)
    overrides = list(args.set)
    if args.out_dir is not None:
        overrides.append(f'train.out_dir={args.out_dir}')
    config = load_ihmr_config(args.config, overrides)
    if args.acr_weights:
        config.acr.weights = args.acr_weights
    result = train_ihmr(config)
    m = result['metrics']
    for key in EVAL_KEYS:
        print(f"{key}: {m['before'][key]:.2f} -> {m['after'][key]:.2f}")
    print(f"wrote {result['weights']} and {Path(result['out_dir']) / 'manifest.json'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
