"""Fit the loaded hand model (stand-in or MANO) to 21 keypoints: root-relative 3D joints and/or 2D pixels with K.

    from hand_recon_ros.hand_model.fit import fit_hands, fit_keypoints
    res = fit_hands(model, 'right', joints_3d)                       # (N, 21, 3) root-relative, any scale
    res = fit_keypoints(model, 'left', kp (N, 21, 2), K, world_joints=None)   # metric camera-frame hand
    res.joints, res.vertices, res.global_orient, res.hand_pose, res.betas, res.transl

Unknowns per hand: global rotation, finger pose in the model's pose-PCA space (whitened by the model's own pose
bank, ``hands_coeffs``), 10 shape betas, and by mode a free scale of the 3D target, a 3D offset, and the metric
root position. Priors: a Gaussian on the whitened pose coefficients, soft joint limits at the range of the pose
bank, a unit Gaussian on the betas. Residuals are per-joint robust (Huber or Geman-McClure, by IRLS weights).
Solver: batched Levenberg-Marquardt in float64 over a joints-only forward of the model (16 joints + 5 tip
vertices, the same LBS as smplx), Jacobians by forward-mode autodiff. Every hand keeps its own damping and stops
on its own, so a hand's result does not depend on the batch it came in. No ROS imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from .. import conventions
from ..geometry import rotations

if TYPE_CHECKING:
    from .model import HandModel

logger = logging.getLogger('hand_recon_ros.hand_model')
DTYPE = torch.float64
PALM = (0, 5, 9, 13, 17)  # wrist + four finger MCPs: the most rigid joints, for initial rotations
ROBUST_KERNELS = ('huber', 'geman-mcclure', 'none')
MAX_TRACED = 32  # traced graphs kept per side (one per batch shape; the crop stage uses one or two)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Weights are in units of the expected noise: a residual of ``sigma_3d`` metres / ``sigma_2d`` pixels
    counts as much as a pose coefficient one prior standard deviation from the bank's mean."""

    iterations: int = 30  # LM iterations per full-fit stage (each hand stops earlier when done)
    # 2D-only fits try several global rotations: a rigid fit of the mean hand and a short full fit from each,
    # then the best few are fitted in full (the wrong ones end with clearly higher cost)
    rotation_starts: int = 6  # view directions tried (6: the cube faces; up to 14 with its corners)
    init_iterations: int = 5  # rigid LM iterations per start
    screen_iterations: int = 8  # full LM iterations per start before choosing
    starts_kept: int = 2  # starts carried into the full fit
    # with 3D and 2D targets: fit the 3D alone first (from the palm's rigid alignment), then both. False fits both
    # at once from the palm alignment and the 3D hand's linear placement onto the keypoints: about half the LM
    # iterations
    prefit_3d: bool = True
    sigma_3d: float = 0.005  # metres
    sigma_2d: float = 2.0  # pixels
    weight_3d: float = 1.0
    weight_2d: float = 1.0
    pose_prior_weight: float = 1.0
    pose_std_floor: float = 0.02  # rad; the stand-in's bank spans 20 of 45 directions, the rest are ~0
    limit_weight: float = 10.0
    limit_margin: float = 0.5  # soft limits sit this many prior stds beyond the bank's range
    shape_prior_weight: float = 1.0
    fit_shape: bool = True
    free_scale: bool = True  # 3D targets of unknown scale (e.g. MediaPipe world landmarks)
    robust: str = 'huber'
    robust_threshold: float = 3.0  # in sigmas
    tolerance: float = 1e-4  # relative cost decrease under which a hand is done
    return_vertices: bool = True
    # torch threads during the fit (None: leave torch's setting); its operations are small, so on a shared or
    # loaded machine 1 thread is faster than 2
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.robust not in ROBUST_KERNELS:
            raise ValueError(f'robust must be one of {ROBUST_KERNELS}, got {self.robust!r}')
        for name in ('sigma_3d', 'sigma_2d', 'robust_threshold', 'pose_std_floor'):
            if not getattr(self, name) > 0:
                raise ValueError(f'{name} must be > 0, got {getattr(self, name)!r}')
        for name in ('iterations', 'init_iterations', 'screen_iterations', 'rotation_starts', 'starts_kept'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)!r}')
        if self.num_threads is not None and int(self.num_threads) < 1:
            raise ValueError(f'num_threads must be >= 1 or None, got {self.num_threads!r}')
        for name in ('weight_3d', 'weight_2d', 'pose_prior_weight', 'limit_weight', 'shape_prior_weight'):
            if not getattr(self, name) >= 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)!r}')


@dataclasses.dataclass
class FitResult:
    """Per hand (first axis N). ``joints``/``vertices`` are camera-frame metres when 2D keypoints were fitted,
    else root-relative (wrist at the origin) at the model's metric size. ``hand_pose`` is in the model's input
    convention (PCA coefficients if it was loaded with use_pca; relative to its pose mean), so
    ``hand_model(side, global_orient, hand_pose, betas, transl)`` reproduces the fitted hand. ``scale``: the
    factor taking the 3D target to the model's metres (1 without a free scale). Residuals per joint:
    ``residual_3d`` metres (after scale), ``residual_2d`` pixels; NaN where the term was not used."""

    side: str
    joints: np.ndarray
    vertices: np.ndarray | None
    global_orient: np.ndarray
    hand_pose: np.ndarray
    full_pose: np.ndarray  # (N, 45) finger axis-angles relative to the flat hand
    betas: np.ndarray
    transl: np.ndarray
    root: np.ndarray  # (N, 3) wrist position
    scale: np.ndarray
    residual_3d: np.ndarray
    residual_2d: np.ndarray
    cost: np.ndarray
    iterations: np.ndarray
    coeffs: np.ndarray | None = None  # (N, D) the pose coefficients the fit solved for (``FitStart``)

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __len__(self) -> int:
        return int(self.joints.shape[0])


@dataclasses.dataclass(frozen=True)
class FitStart:
    """Where a fit starts instead of the palm's alignment: an earlier fit of the same hands (the previous video
    frame's), per hand (first axis N) its ``global_orient`` (N, 3), ``coeffs`` (N, D) and ``betas`` (N, 10).
    From a near start the fit needs a few LM iterations instead of ~10; from a far one it can end in a worse
    minimum, so callers check the result (``hand_update`` refits from scratch a hand whose keypoints it misses)."""

    global_orient: np.ndarray
    coeffs: np.ndarray
    betas: np.ndarray

    @classmethod
    def of(cls, result: FitResult, rows: Sequence[int] | None = None) -> FitStart:
        """The start that continues ``result`` (its hands ``rows``, all by default)."""
        if result.coeffs is None:
            raise ValueError('the fit result carries no pose coefficients to start from')
        pick = slice(None) if rows is None else list(rows)
        return cls(
            np.asarray(result.global_orient, np.float64)[pick].copy(),
            np.asarray(result.coeffs, np.float64)[pick].copy(),
            np.asarray(result.betas, np.float64)[pick].copy(),
        )

    def __len__(self) -> int:
        return int(np.asarray(self.global_orient).shape[0])


# ------------------------------------------------------------------------------------------------
# Joints-only forward of the loaded model
# ------------------------------------------------------------------------------------------------
class _Kinematics:
    """float64 copies of what the 21 joints depend on, taken from the model's smplx layer (so MANO files, the
    stand-in, use_pca and flat_hand_mean all behave as the model itself does)."""

    def __init__(self, hand_model: HandModel, side: str) -> None:
        mano: Any = hand_model.mano[side]  # smplx.MANO or BuiltinMano
        f64 = lambda t: t.detach().to('cpu', DTYPE)  # noqa: E731
        vt, sd, jr = f64(mano.v_template), f64(mano.shapedirs), f64(mano.J_regressor)
        n_verts = vt.shape[0]
        tips = getattr(hand_model, f'tips_{side}').cpu()
        self.j_template = jr @ vt  # (16, 3)
        self.j_dirs = torch.einsum('jv,vcb->jcb', jr, sd)  # (16, 3, 10)
        self.tip_template = vt[tips]
        self.tip_dirs = sd[tips]
        self.tip_posedirs = f64(mano.posedirs).view(-1, n_verts, 3)[:, tips]  # (135, 5, 3)
        self.tip_weights = f64(mano.lbs_weights)[tips]  # (5, 16)
        self.order21 = hand_model.order21.cpu()
        parents = [int(p) for p in mano.parents]
        depth = [0] * len(parents)
        for j in range(1, len(parents)):
            depth[j] = depth[parents[j]] + 1
        # per depth level: its joints, their parents, and where the parents sit in the list computed so far
        self.levels, computed = [], [0]
        for d in range(1, max(depth) + 1):
            js = [j for j in range(len(parents)) if depth[j] == d]
            ps = [parents[j] for j in js]
            self.levels.append((torch.tensor(js), torch.tensor(ps), torch.tensor([computed.index(p) for p in ps])))
            computed += js
        self.eval_order = torch.tensor(computed)
        n_j = len(parents)
        self.subtree = torch.zeros(n_j, n_j, dtype=DTYPE)  # [j, k] = 1 if k is j or below j
        for k in range(n_j):
            j = k
            while j >= 0:
                self.subtree[j, k] = 1.0
                j = parents[j]
        # which of the 16 transforms move each of the 21 points (pre-reorder rows: 16 joints, then 5 tips)
        self.point_weights = torch.cat([torch.eye(n_j, dtype=DTYPE), self.tip_weights], 0)  # (21, 16)
        self.lever_mass = self.point_weights @ self.subtree.T  # (21, 16)
        self.has_posedirs = bool(self.tip_posedirs.abs().max() > 0)
        # (point, joint) pairs where turning the joint moves the point (pre-reorder points; joints first)
        moves = self.lever_mass > 0
        moves[torch.arange(n_j), torch.arange(n_j)] = False  # a joint does not move its own centre
        pi, pj = moves.nonzero(as_tuple=True)
        self.pair_point, self.pair_joint = pi, pj
        self.n_joint_pairs = int((pi < n_j).sum())
        self._tip_shape_lever = self.tip_dirs.unsqueeze(1) - self.j_dirs.unsqueeze(0)  # (5, 16, 3, 10)
        self.restore = torch.argsort(self.eval_order)

        # pose parameterisation: finger pose (45, flat-relative) = base + basis @ coefficients
        model_mean = f64(mano.pose_mean)[3:]
        data_mean = torch.as_tensor(np.asarray(hand_model.model_array(side, 'hands_mean'), np.float64))
        comps = torch.as_tensor(np.asarray(hand_model.model_array(side, 'hands_components'), np.float64))
        self.use_pca = bool(hand_model.use_pca)
        if self.use_pca:
            self.basis, self.base = comps[: hand_model.pose_dim].T.contiguous(), model_mean
        else:
            self.basis, self.base = comps.T.contiguous(), data_mean
        self.model_mean = model_mean
        pinv = torch.linalg.pinv(self.basis)
        try:
            bank = torch.as_tensor(np.asarray(hand_model.model_array(side, 'hands_coeffs'), np.float64))
        except KeyError:
            bank = None
        if bank is None or bank.ndim != 2 or bank.shape[1] != comps.shape[0] or len(bank) < 2:
            logger.warning('hand model has no pose bank (hands_coeffs): pose prior N(0, 0.5^2), no joint limits')
            d = self.basis.shape[1]
            self.bank_mean, self.bank_std = pinv @ (data_mean - self.base), torch.full((d,), 0.5, dtype=DTYPE)
            self.bank_lo, self.bank_hi = torch.full((d,), -np.inf, dtype=DTYPE), torch.full((d,), np.inf, dtype=DTYPE)
            self.bank = None
        else:
            coeffs = (data_mean - self.base + bank @ comps) @ pinv.T  # the bank in this parameterisation
            self.bank_mean, self.bank_std = coeffs.mean(0), coeffs.std(0)
            self.bank_lo, self.bank_hi = coeffs.min(0).values, coeffs.max(0).values
            self.bank = coeffs
        self.pose_dim = self.basis.shape[1]
        self._traced: dict[tuple, Any] = {}

    def fast(self, name: str, *args: Tensor) -> Any:
        """``joints_rel`` or ``joints_rel_jac`` as a TorchScript graph traced for these input shapes: the LM's
        hot path is ~100 small ops whose Python dispatch costs more than their arithmetic (traced: the same values,
        ~1.7x faster per call). A new graph is checked against the eager method on other values of the same shapes
        (a value the trace baked in shows there); up to ``MAX_TRACED`` shapes per side are kept; past that, and
        where tracing fails or differs, eager."""
        method = getattr(self, name)
        key = (name, *(tuple(a.shape) for a in args))
        fn = self._traced.get(key)
        if fn is None:
            if len(self._traced) >= MAX_TRACED:
                return method(*args)
            fn = method
            try:
                with warnings.catch_warnings():
                    # torch.jit's deprecation notice and the tracer's notes on the shape checks it records
                    warnings.simplefilter('ignore')
                    graph = torch.jit.trace(method, args, check_trace=False)
                other = tuple(a * 1.1 + 0.01 for a in args)
                pairs = zip(_as_tuple(graph(*other)), _as_tuple(method(*other)))
                if all(torch.allclose(g, e, rtol=1e-10, atol=1e-12) for g, e in pairs):
                    fn = graph
                else:
                    logger.warning('fit: the traced %s differs from the eager one: eager kept', name)
            except Exception as exc:  # a shape the tracer cannot follow: stay eager for it
                logger.warning(
                    'fit: %s not traced for shapes %s (%s: %s): eager kept', name, key[1:], type(exc).__name__, exc
                )
            self._traced[key] = fn
        return fn(*args)

    def shaped_root(self, betas: Tensor) -> Tensor:
        """(B, 3) rest position of the wrist (the point global rotation turns about) for the betas."""
        return self.j_template[0] + torch.einsum('cb,nb->nc', self.j_dirs[0], betas)

    def joints_rel(self, root_rot: Tensor, finger_pose: Tensor, betas: Tensor) -> Tensor:
        """(B, 3, 3), (B, 45), (B, 10) -> (B, 21, 3) joints relative to the wrist, in the 21-joint order."""
        b = finger_pose.shape[0]
        rots = rotations.axis_angle_to_matrix(finger_pose.reshape(b, 15, 3))  # (B, 15, 3, 3)
        J = self.j_template + torch.einsum('jcb,nb->njc', self.j_dirs, betas)  # (B, 16, 3)
        G, P = root_rot.unsqueeze(1), J[:, :1]
        for js, ps, pos in self.levels:
            Gp, Pp = G[:, pos], P[:, pos]
            G = torch.cat([G, Gp @ rots[:, js - 1]], 1)
            P = torch.cat([P, Pp + (Gp @ (J[:, js] - J[:, ps]).unsqueeze(-1)).squeeze(-1)], 1)
        G, P = G[:, self.restore], P[:, self.restore]  # (B, 16, 3, 3), (B, 16, 3)
        feat = (rots - torch.eye(3, dtype=rots.dtype)).reshape(b, -1)
        tips = (
            self.tip_template
            + torch.einsum('tcb,nb->ntc', self.tip_dirs, betas)
            + torch.einsum('np,ptc->ntc', feat, self.tip_posedirs)
        )  # (B, 5, 3)
        # LBS: v = sum_k w_k (G_k (x - J_k) + P_k)
        Gw = torch.einsum('tk,nkij->ntij', self.tip_weights, G)
        off = torch.einsum('tk,nki->nti', self.tip_weights, P - (G @ J.unsqueeze(-1)).squeeze(-1))
        tips = (Gw @ tips.unsqueeze(-1)).squeeze(-1) + off
        joints = torch.cat([P, tips], 1)[:, self.order21]
        return joints - P[:, :1]

    def joints_rel_jac(
        self, root_rot: Tensor, finger_pose: Tensor, betas: Tensor, pose_map: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """joints_rel and its Jacobians: (B, 21, 3, 3) for a rotation increment on the right of root_rot,
        (B, 21, 3, D) for pose parameters q with d(finger axis-angles) = pose_map (45, D) dq, (B, 21, 3, 10)
        for the betas.

        Turning joint j by a local increment e moves every point by w x (X - P_j), w = G_j e, with X the
        point's share moved by the transforms below j (LBS weights for the tips); a finger axis-angle a moves
        the local rotation by e = Jr(a) da (Jr: SO(3) right Jacobian)."""
        b = finger_pose.shape[0]
        aa = finger_pose.reshape(b, 15, 3)
        rots = rotations.axis_angle_to_matrix(aa)
        J = self.j_template + torch.einsum('jcb,nb->njc', self.j_dirs, betas)
        dJ = self.j_dirs  # (16, 3, 10)
        G, P = root_rot.unsqueeze(1), J[:, :1]
        dP = dJ[:1].expand(b, 1, 3, 10)
        for js, ps, pos in self.levels:
            Gp, Pp = G[:, pos], P[:, pos]
            G = torch.cat([G, Gp @ rots[:, js - 1]], 1)
            P = torch.cat([P, Pp + (Gp @ (J[:, js] - J[:, ps]).unsqueeze(-1)).squeeze(-1)], 1)
            dP = torch.cat([dP, dP[:, pos] + Gp @ (dJ[js] - dJ[ps])], 1)
        G, P, dP = G[:, self.restore], P[:, self.restore], dP[:, self.restore]
        feat = (rots - torch.eye(3, dtype=rots.dtype)).reshape(b, -1)
        rest = (
            self.tip_template
            + torch.einsum('tcb,nb->ntc', self.tip_dirs, betas)
            + torch.einsum('np,ptc->ntc', feat, self.tip_posedirs)
        )  # (B, 5, 3)
        # A_k(x) = G_k (x - J_k) + P_k for every tip and transform
        A = (G.unsqueeze(1) @ (rest.unsqueeze(2) - J.unsqueeze(1)).unsqueeze(-1)).squeeze(-1) + P.unsqueeze(1)
        tips = torch.einsum('tk,ntkc->ntc', self.tip_weights, A)
        X = torch.cat([P, tips], 1)  # (B, 21, 3) pre-order
        # lever of each (point, joint) pair that moves: joints below j (P_i - P_j); tips: their LBS share below j
        lever_tips = torch.einsum('jk,tk,ntkc->ntjc', self.subtree, self.tip_weights, A) - self.lever_mass[
            16:, :, None
        ] * P.unsqueeze(1)  # (B, 5, 16, 3)
        Q = torch.cat(
            [
                P[:, self.pair_point[: self.n_joint_pairs]] - P[:, self.pair_joint[: self.n_joint_pairs]],
                lever_tips[:, self.pair_point[self.n_joint_pairs :] - 16, self.pair_joint[self.n_joint_pairs :]],
            ],
            1,
        )  # (B, M, 3)
        Gp = G[:, self.pair_joint]  # (B, M, 3, 3)
        # d X_i / d e_j = -[Q]x G_j, column m = G_j[:, m] x Q
        d_eps = torch.linalg.cross(Gp.transpose(-1, -2), Q.unsqueeze(-2).expand_as(Gp)).transpose(-1, -2)
        root = self.pair_joint == 0
        d_rot = torch.zeros(b, 21, 3, 3, dtype=DTYPE)
        d_rot[:, self.pair_point[root]] = d_eps[:, root]
        fing = ~root
        jr = _right_jacobian(aa)  # (B, 15, 3, 3)
        d_a = d_eps[:, fing] @ jr[:, self.pair_joint[fing] - 1]  # (B, Mf, 3c, 3m)
        rows = pose_map.view(15, 3, -1)[self.pair_joint[fing] - 1]  # (Mf, 3m, D)
        d_pose = torch.zeros(b, 21, 3, pose_map.shape[1], dtype=DTYPE)
        d_pose.index_add_(1, self.pair_point[fing], torch.einsum('nfcm,fmd->nfcd', d_a, rows))
        if self.has_posedirs:
            # pose-corrective offsets of the tips: d vec(R_j) = R_j [Jr e_m]x
            dR = rots.unsqueeze(2) @ rotations._skew(jr.transpose(-1, -2))  # (B, 15, 3m, 3, 3)
            pd = self.tip_posedirs.view(15, 9, 5, 3)
            d_rest = torch.einsum('njme,jetc->ntcjm', dR.reshape(b, 15, 3, 9), pd)  # (B, 5, 3, 15, 3m)
            Gw = torch.einsum('tk,nkij->ntij', self.tip_weights, G)
            d_pose[:, 16:] += (Gw @ d_rest.reshape(b, 5, 3, 45)) @ pose_map
        d_tips = torch.einsum('tk,nkcd,tkdb->ntcb', self.tip_weights, G, self._tip_shape_lever) + torch.einsum(
            'tk,nkcb->ntcb', self.tip_weights, dP
        )
        d_b = torch.cat([dP, d_tips], 1) - dJ[0]
        o = self.order21
        return X[:, o] - P[:, :1], d_rot[:, o], d_pose[:, o], d_b[:, o]

    def finger_pose(self, coeffs: Tensor) -> Tensor:
        return self.base + coeffs @ self.basis.T


def _as_tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _right_jacobian(aa: Tensor) -> Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) SO(3) right Jacobian: exp(a + da) = exp(a) exp(Jr(a) da)."""
    t2 = (aa * aa).sum(-1)
    small = t2 < 1e-8
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = t2s.sqrt()
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(t)) / t2s)
    c = torch.where(small, 1 / 6 - t2 / 120, (t - torch.sin(t)) / (t2s * t))
    S = rotations._skew(aa)
    eye = torch.eye(3, dtype=aa.dtype).expand(S.shape)
    return eye - b[..., None, None] * S + c[..., None, None] * (S @ S)


_KIN_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _kinematics(hand_model: HandModel, side: str) -> _Kinematics:
    per_model = _KIN_CACHE.setdefault(hand_model, {})
    if side not in per_model:
        per_model[side] = _Kinematics(hand_model, side)
    return per_model[side]


# ------------------------------------------------------------------------------------------------
# Residuals
# ------------------------------------------------------------------------------------------------
class _Problem:
    """Residual vector of a batch of hands. Parameter vector per hand, blocks in this order (absent ones are held
    at their values in ``fixed``): rot (3, a rotation increment applied on the right of ``root_rot``), pose (D,
    whitened coefficients), betas (10), log_scale (1), offset (3, 3D target), root (3: x, y, log z metres)."""

    def __init__(
        self,
        kin: _Kinematics,
        cfg: FitConfig,
        free: Sequence[str],
        fixed: dict[str, Tensor],
        root_rot: Tensor,
        target3d: Tensor | None = None,
        kp2d: Tensor | None = None,
        K: Tensor | None = None,
        joints_used: Iterable[int] | None = None,
    ) -> None:
        self.kin, self.cfg = kin, cfg
        self.mask = None
        if joints_used is not None:
            self.mask = torch.zeros(21, 1, dtype=DTYPE)
            self.mask[list(joints_used)] = 1.0
        self.root_rot = root_rot
        self.target3d, self.kp2d, self.K = target3d, kp2d, K
        self.fixed = fixed  # block name -> (B, n) values used when the block is not free
        sizes = dict(rot=3, pose=kin.pose_dim, betas=10, log_scale=1, offset=3, root=3)
        self.slices, n = {}, 0
        for name in ('rot', 'pose', 'betas', 'log_scale', 'offset', 'root'):
            if name in free:
                self.slices[name] = slice(n, n + sizes[name])
                n += sizes[name]
        self.n_params = n
        self.std = kin.bank_std.clamp_min(cfg.pose_std_floor)
        self.pose_map = kin.basis * self.std  # d(finger axis-angles) / d(whitened coefficients)
        margin = cfg.limit_margin * self.std
        self.lo, self.hi = kin.bank_lo - margin, kin.bank_hi + margin

    def block(self, p: Tensor, name: str) -> Tensor:
        if name in self.slices:
            return p[:, self.slices[name]]
        return self.fixed[name]

    def coeffs(self, p: Tensor) -> Tensor:
        return self.kin.bank_mean + self.std * self.block(p, 'pose')

    def rotation(self, p: Tensor) -> Tensor:
        if 'rot' not in self.slices:
            return self.root_rot
        return self.root_rot @ rotations.axis_angle_to_matrix(p[:, self.slices['rot']])

    def joints(self, p: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, 21, 3) wrist-relative joints, and the root (B, 3) when it is a parameter (else None)."""
        rel = self.kin.fast(
            'joints_rel', self.rotation(p), self.kin.finger_pose(self.coeffs(p)), self.block(p, 'betas')
        )
        root = None
        if self.kp2d is not None:
            r = self.block(p, 'root')
            root = torch.cat([r[:, :2], r[:, 2:].exp()], 1)
        return rel, root

    def residuals(self, p: Tensor) -> Tensor:
        """-> (B, R) residual vector in noise units; the 3D/2D blocks come first (21 x 3, then 21 x 2)."""
        cfg = self.cfg
        rel, root = self.joints(p)
        parts = []
        if self.target3d is not None:
            # in target units (the target is pre-scaled to about model metres): a residual in model metres
            # would let the fit shrink hand and target together
            scale = self.block(p, 'log_scale').exp().unsqueeze(-1)
            r3 = (rel + self.block(p, 'offset').unsqueeze(1)) / scale - self.target3d
            parts.append((cfg.weight_3d**0.5 / cfg.sigma_3d) * r3.reshape(len(p), -1))
        if self.kp2d is not None:
            assert root is not None and self.K is not None  # both come with kp2d
            X = rel + root.unsqueeze(1)
            h = X @ self.K.transpose(1, 2)
            # a joint behind the camera keeps a finite residual; the LM step that caused it is then rejected
            z = h[..., 2:].clamp_min(1e-6)
            r2 = h[..., :2] / z - self.kp2d
            if self.mask is not None:
                r2 = r2 * self.mask
            parts.append((cfg.weight_2d**0.5 / cfg.sigma_2d) * r2.reshape(len(p), -1))
        c = self.coeffs(p)
        parts.append(cfg.pose_prior_weight**0.5 * (c - self.kin.bank_mean) / self.std)
        over = (c - self.hi).clamp_min(0) + (c - self.lo).clamp_max(0)
        parts.append(cfg.limit_weight**0.5 * over / self.std)
        parts.append(cfg.shape_prior_weight**0.5 * self.block(p, 'betas'))
        return torch.cat(parts, 1)

    def _joint_blocks(self, r: Tensor) -> tuple[list[Tensor], int]:
        """Per-joint residual norms (B, J) of the data terms (3D joints then 2D joints), in noise units."""
        blocks, n = [], 0
        if self.target3d is not None:
            blocks.append(r[:, :63].reshape(len(r), 21, 3))
            n = 63
        if self.kp2d is not None:
            blocks.append(r[:, n : n + 42].reshape(len(r), 21, 2))
            n += 42
        return blocks, n

    def cost_and_weights(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """Robust cost (B,) and IRLS row weights (B, R) of a residual vector."""
        cfg = self.cfg
        k = cfg.robust_threshold
        blocks, n_data = self._joint_blocks(r)
        cost = (r[:, n_data:] ** 2).sum(1)
        weights = [torch.ones_like(r[:, n_data:])]
        row_w = []
        for blk in blocks:
            # the weights of 3D/2D terms (weight_3d / sigma) are folded in, so thresholds are in sigmas of weight 1
            e2 = (blk**2).sum(-1)
            e = e2.sqrt()
            if cfg.robust == 'huber':
                rho = torch.where(e <= k, e2, 2 * k * e - k * k)
                w = torch.where(e <= k, torch.ones_like(e), k / e.clamp_min(1e-12))
            elif cfg.robust == 'geman-mcclure':
                rho = k * k * e2 / (k * k + e2)
                w = (k * k / (k * k + e2)) ** 2
            else:
                rho, w = e2, torch.ones_like(e)
            cost = cost + rho.sum(1)
            row_w.append(w.unsqueeze(-1).expand_as(blk).reshape(len(r), -1))
        return cost, torch.cat(row_w + weights, 1)

    def jacobian(self, p: Tensor, data_only: bool = False) -> Tensor:
        """(B, R, P) analytic Jacobian of ``residuals`` (at a zero rotation increment, as the LM keeps it);
        ``data_only``: the 3D/2D rows alone (the prior rows are diagonal, see normal_equations)."""
        cfg, kin = self.cfg, self.kin
        b = p.shape[0]
        coeffs = self.coeffs(p)
        rel, d_rot, d_z, d_b = kin.fast(
            'joints_rel_jac', self.rotation(p), kin.finger_pose(coeffs), self.block(p, 'betas'), self.pose_map
        )
        d_rel = {'rot': d_rot, 'pose': d_z, 'betas': d_b}  # (B, 21, 3, n)
        rows = []

        def row_block(n_rows: int, parts: Mapping[str, Tensor]) -> Tensor:
            blk = torch.zeros(b, n_rows, self.n_params, dtype=DTYPE)
            for name, val in parts.items():
                if name in self.slices:
                    blk[:, :, self.slices[name]] = val.reshape(b, n_rows, -1)
            return blk

        if self.target3d is not None:
            c3 = cfg.weight_3d**0.5 / cfg.sigma_3d
            inv_s = (-self.block(p, 'log_scale')).exp().view(b, 1, 1, 1)
            parts = {k: c3 * inv_s * v for k, v in d_rel.items()}
            moved = rel + self.block(p, 'offset').unsqueeze(1)
            parts['log_scale'] = -c3 * inv_s[..., 0] * moved
            parts['offset'] = c3 * inv_s * torch.eye(3, dtype=DTYPE).expand(b, 21, 3, 3)
            rows.append(row_block(63, parts))
        if self.kp2d is not None:
            c2 = cfg.weight_2d**0.5 / cfg.sigma_2d
            r = self.block(p, 'root')
            X = rel + torch.cat([r[:, :2], r[:, 2:].exp()], 1).unsqueeze(1)
            assert self.K is not None  # K comes with kp2d
            h = X @ self.K.transpose(1, 2)
            z = h[..., 2:].clamp_min(1e-6)
            uv = h[..., :2] / z
            # d(u, v)/dX = (K[:2] - (u, v) K[2]) / h_z
            duv = (self.K[:, None, :2, :] - uv.unsqueeze(-1) * self.K[:, None, 2:, :]) / z.unsqueeze(-1)
            if self.mask is not None:
                duv = duv * self.mask.unsqueeze(-1)
            duv = c2 * duv  # (B, 21, 2, 3)
            parts = {k: duv @ v for k, v in d_rel.items()}
            d_root = torch.diag_embed(torch.cat([torch.ones_like(r[:, :2]), r[:, 2:].exp()], 1))
            parts['root'] = duv @ d_root.unsqueeze(1)
            rows.append(row_block(42, parts))
        if data_only:
            return torch.cat(rows, 1)
        d = kin.pose_dim
        eye = torch.eye(d, dtype=DTYPE).expand(b, d, d)
        rows.append(row_block(d, {'pose': cfg.pose_prior_weight**0.5 * eye}))
        outside = ((coeffs > self.hi) | (coeffs < self.lo)).to(DTYPE)
        rows.append(row_block(d, {'pose': cfg.limit_weight**0.5 * eye * outside.unsqueeze(-1)}))
        eye10 = torch.eye(10, dtype=DTYPE).expand(b, 10, 10)
        rows.append(row_block(10, {'betas': cfg.shape_prior_weight**0.5 * eye10}))
        return torch.cat(rows, 1)

    def normal_equations(self, p: Tensor, r: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """Gauss-Newton system (J^T W J, J^T W r) per hand; the prior/limit/shape rows enter as diagonals."""
        cfg, d = self.cfg, self.kin.pose_dim
        Jd = self.jacobian(p, data_only=True)
        n_data = Jd.shape[1]
        Jw = Jd * w[:, :n_data].unsqueeze(-1)
        A = Jw.transpose(1, 2) @ Jd
        g = (Jw.transpose(1, 2) @ r[:, :n_data].unsqueeze(-1)).squeeze(-1)
        prior, limit, shape = r[:, n_data : n_data + d], r[:, n_data + d : n_data + 2 * d], r[:, n_data + 2 * d :]
        diag = torch.zeros_like(g)
        if 'pose' in self.slices:
            sl = self.slices['pose']
            cp, cl = cfg.pose_prior_weight**0.5, cfg.limit_weight**0.5
            c = self.coeffs(p)
            active = ((c > self.hi) | (c < self.lo)).to(DTYPE)
            diag[:, sl] = cp * cp + cl * cl * active
            g[:, sl] += cp * prior + cl * active * limit
        if 'betas' in self.slices:
            cs = cfg.shape_prior_weight**0.5
            diag[:, self.slices['betas']] = cs * cs
            g[:, self.slices['betas']] += cs * shape
        return A + torch.diag_embed(diag), g

    def repeated(self, k: int) -> _Problem:
        """The same problem with every hand repeated k times (hand-major), for batched finite differences."""

        def rep(x: Any) -> Any:
            return None if x is None else x.repeat_interleave(k, 0)

        clone = object.__new__(_Problem)
        clone.__dict__.update(self.__dict__)
        clone.root_rot, clone.target3d, clone.kp2d, clone.K = (
            rep(x) for x in (self.root_rot, self.target3d, self.kp2d, self.K)
        )
        clone.fixed = {name: rep(v) for name, v in self.fixed.items()}
        return clone

    def apply_step(self, p: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
        """New parameters after a step; a rotation increment moves into root_rot (returned), its slot resets."""
        new = p + step
        rot = self.root_rot
        if 'rot' in self.slices:
            rot = self.rotation(new)
            new = new.clone()
            new[:, self.slices['rot']] = 0
        return new, rot


def _jacobian(problem: _Problem, p: Tensor, r: Tensor, step: float = 1e-6) -> Tensor:
    """(B, R, P) Jacobian by forward differences in float64 (all P perturbations of all hands in one batched
    forward): the reference the tests hold the analytic ``_Problem.jacobian`` to."""
    b, n = p.shape
    rep = problem.repeated(n)
    shifted = (p.unsqueeze(1) + step * torch.eye(n, dtype=p.dtype)).reshape(b * n, n)
    r_shift = rep.residuals(shifted).view(b, n, -1)
    return ((r_shift - r.unsqueeze(1)) / step).transpose(1, 2)


def _levenberg_marquardt(
    problem: _Problem, p: Tensor, iterations: int, tolerance: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-hand LM with IRLS robust weights. -> (p, cost, iterations used); problem.root_rot is updated."""
    b = p.shape[0]
    lam = torch.full((b,), 1e-3, dtype=DTYPE)
    done = torch.zeros(b, dtype=torch.bool)
    used = torch.zeros(b, dtype=torch.long)
    r = problem.residuals(p)
    cost, w = problem.cost_and_weights(r)
    for _ in range(iterations):
        if bool(done.all()):
            break
        A, g = problem.normal_equations(p, r, w)
        diag = torch.diagonal(A, dim1=1, dim2=2)
        damp = torch.diag_embed(lam.unsqueeze(-1) * (diag + 1e-9))
        L, info = torch.linalg.cholesky_ex(A + damp)
        step = -torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
        step = torch.where((done | (info != 0)).unsqueeze(-1), torch.zeros_like(step), step)
        new_p, new_rot = problem.apply_step(p, step)
        old_rot = problem.root_rot
        problem.root_rot = new_rot
        new_r = problem.residuals(new_p)
        new_cost, new_w = problem.cost_and_weights(new_r)
        accept = (new_cost < cost) & ~done & torch.isfinite(new_cost)
        used = used + (~done).long()
        gain = (cost - new_cost) / cost.clamp_min(1e-300)
        a1 = accept.unsqueeze(-1)
        p = torch.where(a1, new_p, p)
        problem.root_rot = torch.where(a1.unsqueeze(-1), new_rot, old_rot)
        r, w = torch.where(a1, new_r, r), torch.where(a1, new_w, w)
        cost = torch.where(accept, new_cost, cost)
        lam = torch.where(accept, (lam / 3).clamp_min(1e-9), lam * 4)
        done = done | (accept & (gain < tolerance)) | (lam > 1e8)
    return p, cost, used


# ------------------------------------------------------------------------------------------------
# Initial values
# ------------------------------------------------------------------------------------------------
def _view_directions() -> Tensor:
    """14 directions of the hand's frame that may face the camera: cube faces and corners."""
    import itertools  # noqa: PLC0415

    dirs = [v for v in np.eye(3)] + [-v for v in np.eye(3)]
    dirs += [np.array(c) / np.sqrt(3) for c in itertools.product((1.0, -1.0), repeat=3)]
    return torch.tensor(np.stack(dirs), dtype=DTYPE)


def _view_starts(template: Tensor, kp2d: Tensor, n_views: int) -> Tensor:
    """(B * n_views, 3, 3) start rotations, hand-major: each turns one view direction of the template towards the
    camera (-z), then about the optical axis so its orthographic shadow best matches the keypoints (2D Procrustes)."""
    dirs = _view_directions()[:n_views]
    to_cam = torch.tensor([0.0, 0.0, -1.0], dtype=DTYPE)
    axis = torch.linalg.cross(dirs, to_cam.expand_as(dirs))
    sin = axis.norm(dim=1, keepdim=True)
    cos = (dirs * to_cam).sum(1, keepdim=True)
    # rotation taking each direction to -z (the antiparallel case turns about x)
    angle = torch.atan2(sin, cos)
    unit = torch.where(sin > 1e-9, axis / sin.clamp_min(1e-12), torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE))
    R0 = rotations.axis_angle_to_matrix(unit * angle)  # (V, 3, 3)
    b, v = kp2d.shape[0], len(dirs)
    pts = (R0.unsqueeze(0) @ template[:1].transpose(1, 2).unsqueeze(0)).transpose(-1, -2)[..., :2]  # (1, V, 21, 2)
    a = pts - pts.mean(-2, keepdim=True)
    k = (kp2d - kp2d.mean(1, keepdim=True)).unsqueeze(1)  # (B, 1, 21, 2)
    dot = (a * k).sum((-1, -2))
    crs = (a[..., 0] * k[..., 1] - a[..., 1] * k[..., 0]).sum(-1)
    phi = torch.atan2(crs, dot)  # (B, V)
    c, s = phi.cos(), phi.sin()
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    Rz = torch.stack(
        [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)], -2
    )  # (B, V, 3, 3)
    return (Rz @ R0.unsqueeze(0)).reshape(b * v, 3, 3)


def _palm_alignment(template: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation R (B, 3, 3) and scale s (B,) with R @ template_i ~ s * target_i on the palm joints (Kabsch)."""
    a = template[:, PALM] - template[:, :1]
    b = target[:, PALM] - target[:, :1]
    s = a.norm(dim=-1).sum(1) / b.norm(dim=-1).sum(1)
    U, _, Vh = torch.linalg.svd(a.transpose(1, 2) @ b)
    V = Vh.transpose(1, 2)
    d = torch.sign(torch.linalg.det(V @ U.transpose(1, 2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return V @ D @ U.transpose(1, 2), s


def _initial_root(rel: Tensor, kp2d: Tensor, K: Tensor, min_depth: float = 0.05) -> Tensor:
    """Wrist position (B, 3) placing joints rel (camera orientation, metres) onto the keypoints: the linear
    least-squares solution of x_i (Z_i + t_z) = X_i + t_x (and y likewise) in normalised image coordinates.
    Where that lands too close or behind the camera: depth from bone lengths, metres vs pixels."""
    ones = torch.ones_like(kp2d[..., :1])
    xn = (torch.cat([kp2d, ones], -1) @ torch.linalg.inv(K).transpose(1, 2))[..., :2]  # (B, 21, 2)
    b = kp2d.shape[0]
    A = torch.zeros(b, 21, 2, 3, dtype=DTYPE)
    A[..., 0, 0] = 1.0
    A[..., 1, 1] = 1.0
    A[..., :, 2] = -xn
    rhs = xn * rel[..., 2:] - rel[..., :2]
    A, rhs = A.reshape(b, 42, 3), rhs.reshape(b, 42, 1)
    t = torch.linalg.solve(A.transpose(1, 2) @ A + 1e-12 * torch.eye(3, dtype=DTYPE), A.transpose(1, 2) @ rhs).squeeze(
        -1
    )
    bones = torch.tensor(conventions.BONES)
    metric = (rel[:, bones[:, 1]] - rel[:, bones[:, 0]]).norm(dim=-1).sum(1)
    pixels = (kp2d[:, bones[:, 1]] - kp2d[:, bones[:, 0]]).norm(dim=-1).sum(1).clamp_min(1e-6)
    focal = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    depth = focal * metric / pixels
    by_bones = torch.cat([xn[:, 0] * depth[:, None], depth[:, None]], 1)
    bad = ~torch.isfinite(t).all(1) | ((rel[..., 2] + t[:, 2:]).amin(1) < min_depth)
    return torch.where(bad.unsqueeze(-1), by_bones, t)


def _root_params(root: Tensor) -> Tensor:
    return torch.cat([root[:, :2], root[:, 2:].clamp_min(1e-3).log()], 1)


# ------------------------------------------------------------------------------------------------
# Fitting
# ------------------------------------------------------------------------------------------------
def _take(problem: _Problem, p: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
    return {n: problem.block(p, n).clone() for n in names}


def _run(problem: _Problem, p: Tensor, iterations: int, cfg: FitConfig) -> tuple[Tensor, Tensor, Tensor]:
    return _levenberg_marquardt(problem, p, iterations, cfg.tolerance)


def _params_from(problem: _Problem, values: Mapping[str, Tensor]) -> Tensor:
    """Parameter matrix for ``problem`` from block values (missing free blocks start at zero)."""
    b = problem.root_rot.shape[0]
    p = torch.zeros(b, problem.n_params, dtype=DTYPE)
    for name, sl in problem.slices.items():
        if name in values and name != 'rot':
            p[:, sl] = values[name]
    return p


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """``count`` torch threads inside (None: torch's setting), the count restored after."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _start_values(kin: _Kinematics, cfg: FitConfig, start: FitStart, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """(root rotation (N, 3, 3), whitened pose (N, D), betas (N, 10)) of a start, checked against the fit."""
    orient = torch.as_tensor(np.asarray(start.global_orient, np.float64), dtype=DTYPE)
    coeffs = torch.as_tensor(np.asarray(start.coeffs, np.float64), dtype=DTYPE)
    betas = torch.as_tensor(np.asarray(start.betas, np.float64), dtype=DTYPE)
    expected = {'global_orient': (orient, 3), 'coeffs': (coeffs, kin.pose_dim), 'betas': (betas, 10)}
    for name, (value, width) in expected.items():
        if tuple(value.shape) != (n, width) or not torch.isfinite(value).all():
            raise ValueError(f'start.{name} must be finite ({n}, {width}), got {tuple(value.shape)}')
    std = kin.bank_std.clamp_min(cfg.pose_std_floor)
    return rotations.axis_angle_to_matrix(orient), (coeffs - kin.bank_mean) / std, betas


def _fit(
    hand_model: HandModel,
    side: str,
    target3d: Tensor | None,
    kp2d: Tensor | None,
    K: Tensor | None,
    cfg: FitConfig,
    start: FitStart | None = None,
) -> FitResult:
    kin = _kinematics(hand_model, side)
    first = target3d if target3d is not None else kp2d
    assert first is not None  # the public entry points give one or both
    n = first.shape[0]
    zeros = lambda k: torch.zeros(n, k, dtype=DTYPE)  # noqa: E731
    values = dict(pose=zeros(kin.pose_dim), betas=zeros(10), log_scale=zeros(1), offset=zeros(3), root=zeros(3))
    shape_block = ('betas',) if cfg.fit_shape else ()
    eye = torch.eye(3, dtype=DTYPE).expand(n, 3, 3)
    template = kin.joints_rel(eye, kin.finger_pose(kin.bank_mean).expand(n, -1), zeros(10))
    rot, s0 = eye, torch.ones(n, dtype=DTYPE)
    if start is not None:
        rot, values['pose'], values['betas'] = _start_values(kin, cfg, start, n)
    used = torch.zeros(n, dtype=torch.long)
    if target3d is not None:
        palm_rot, s0 = _palm_alignment(template, target3d)
        rot = palm_rot if start is None else rot
        scale_block = ('log_scale',) if cfg.free_scale else ()
        if cfg.free_scale:
            target3d = target3d * s0[:, None, None]
        else:
            s0 = torch.ones_like(s0)
        if kp2d is None or (cfg.prefit_3d and start is None):
            free = ('rot', 'pose') + shape_block + scale_block + ('offset',)
            problem = _Problem(kin, cfg, free, values, rot, target3d=target3d)
            p, cost, it = _run(problem, _params_from(problem, values), cfg.iterations, cfg)
            values.update(_take(problem, p, ('pose', 'betas', 'log_scale', 'offset')))
            rot, used = problem.root_rot, used + it
    if kp2d is not None and target3d is not None:
        assert K is not None  # K comes with kp2d
        rel, _ = _Problem(kin, cfg, (), values, rot).joints(zeros(0))
        values['root'] = _root_params(_initial_root(rel, kp2d, K))
        free = ('rot', 'pose') + shape_block + (('log_scale',) if cfg.free_scale else ()) + ('offset', 'root')
        problem = _Problem(kin, cfg, free, values, rot, target3d=target3d, kp2d=kp2d, K=K)
        p, cost, it = _run(problem, _params_from(problem, values), cfg.iterations, cfg)
        values.update(_take(problem, p, ('pose', 'betas', 'log_scale', 'offset', 'root')))
        rot, used = problem.root_rot, used + it
    elif kp2d is not None and start is not None:
        assert K is not None  # K comes with kp2d
        rel, _ = _Problem(kin, cfg, (), values, rot).joints(zeros(0))
        values['root'] = _root_params(_initial_root(rel, kp2d, K))
        problem = _Problem(kin, cfg, ('rot', 'pose') + shape_block + ('root',), values, rot, kp2d=kp2d, K=K)
        p, cost, it = _run(problem, _params_from(problem, values), cfg.iterations, cfg)
        values.update(_take(problem, p, ('pose', 'betas', 'root')))
        rot, used = problem.root_rot, used + it
    elif kp2d is not None:
        # every view start: a rigid fit of the mean hand, a short full fit, then the best few in full
        m = min(cfg.rotation_starts, len(_view_directions()))
        rep = lambda x, k=m: x.repeat_interleave(k, 0)  # noqa: E731  hand-major: row = hand * k + start
        rot_s = _view_starts(template, kp2d, m)
        kp_s, K_s = rep(kp2d), rep(K)
        rel = (rot_s @ template[:1].transpose(1, 2)).transpose(1, 2)
        vals = {k: rep(v) for k, v in values.items()}
        vals['root'] = _root_params(_initial_root(rel, kp_s, K_s))
        rigid = _Problem(kin, cfg, ('rot', 'root'), vals, rot_s, kp2d=kp_s, K=K_s)
        p, cost, it = _run(rigid, _params_from(rigid, vals), cfg.init_iterations, cfg)
        vals['root'] = rigid.block(p, 'root')
        free = ('rot', 'pose') + shape_block + ('root',)
        screen = _Problem(kin, cfg, free, vals, rigid.root_rot, kp2d=kp_s, K=K_s)
        p, cost, it2 = _run(screen, _params_from(screen, vals), cfg.screen_iterations, cfg)
        keep = min(cfg.starts_kept, m)
        best = cost.view(n, m).argsort(dim=1, stable=True)[:, :keep]
        rows = (torch.arange(n).unsqueeze(1) * m + best).reshape(-1)
        vals = {k: v[rows] for k, v in _take(screen, p, ('pose', 'betas', 'root')).items()}
        problem = _Problem(kin, cfg, free, vals, screen.root_rot[rows], kp2d=rep(kp2d, keep), K=rep(K, keep))
        p, cost, it3 = _run(problem, _params_from(problem, vals), cfg.iterations, cfg)
        pick = torch.arange(n) * keep + cost.view(n, keep).argmin(dim=1)
        values.update({k: v[pick] for k, v in _take(problem, p, ('pose', 'betas', 'root')).items()})
        rot = problem.root_rot[pick]
        start_row = rows[pick]  # the chosen hand's start row
        used = it[start_row] + it2[start_row] + it3[pick]
    final = _Problem(kin, cfg, (), values, rot, target3d=target3d, kp2d=kp2d, K=K)
    return _result(hand_model, side, kin, final, s0, used, cfg)


def _result(
    hand_model: HandModel, side: str, kin: _Kinematics, problem: _Problem, s0: Tensor, used: Tensor, cfg: FitConfig
) -> FitResult:
    n = problem.root_rot.shape[0]
    p = torch.zeros(n, 0, dtype=DTYPE)
    rel, root = problem.joints(p)
    r = problem.residuals(p)
    cost, _ = problem.cost_and_weights(r)
    nan = torch.full((n, 21), float('nan'), dtype=DTYPE)
    s = problem.block(p, 'log_scale').exp().squeeze(-1)
    res3 = res2 = nan
    if problem.target3d is not None:
        res3 = (rel + problem.block(p, 'offset').unsqueeze(1) - s[:, None, None] * problem.target3d).norm(dim=-1)
    scale = s * s0
    if root is None:
        root = torch.zeros(n, 3, dtype=DTYPE)
    joints = rel + root.unsqueeze(1)
    if problem.kp2d is not None:
        assert problem.K is not None  # K comes with kp2d
        h = joints @ problem.K.transpose(1, 2)
        res2 = (h[..., :2] / h[..., 2:] - problem.kp2d).norm(dim=-1)
    coeffs = problem.coeffs(p)
    full_pose = kin.finger_pose(coeffs)
    hand_pose = coeffs if kin.use_pca else full_pose - kin.model_mean
    betas = problem.block(p, 'betas')
    transl = root - kin.shaped_root(betas)
    global_orient = rotations.matrix_to_axis_angle(problem.root_rot)
    vertices = None
    if cfg.return_vertices:
        with torch.no_grad():
            f32 = lambda x: x.to(hand_model.device, torch.float32)  # noqa: E731
            out = hand_model(side, f32(global_orient), f32(hand_pose), f32(betas), f32(transl))
        vertices = out['vertices'].double().cpu().numpy()
    np_ = lambda x: x.detach().cpu().numpy()  # noqa: E731
    return FitResult(
        side=side,
        joints=np_(joints),
        vertices=vertices,
        global_orient=np_(global_orient),
        hand_pose=np_(hand_pose),
        full_pose=np_(full_pose),
        betas=np_(betas),
        transl=np_(transl),
        root=np_(root),
        scale=np_(scale),
        residual_3d=np_(res3),
        residual_2d=np_(res2),
        cost=np_(cost),
        iterations=np_(used),
        coeffs=np_(coeffs),
    )


def _points(x: ArrayLike | Tensor, name: str, width: int, n: int | None = None) -> Tensor:
    a = np.asarray(x, dtype=np.float64) if not isinstance(x, torch.Tensor) else x.detach().cpu().double().numpy()
    if a.ndim != 3 or a.shape[1:] != (21, width):
        raise ValueError(f'{name} must have shape (N, 21, {width}), got {a.shape}')
    if a.shape[0] == 0:
        raise ValueError(f'{name} holds no hands (N = 0): nothing to fit')
    if n is not None and a.shape[0] != n:
        raise ValueError(f'{name} has {a.shape[0]} hands, the keypoints {n}')
    if not np.isfinite(a).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(a))[:, 0]})
        raise ValueError(f'{name} has non-finite values (NaN/inf) in hand(s) {bad[:10]}')
    return torch.as_tensor(a, dtype=DTYPE)


def _intrinsics(K: ArrayLike | Tensor, n: int) -> Tensor:
    k = np.asarray(K, dtype=np.float64) if not isinstance(K, torch.Tensor) else K.detach().cpu().double().numpy()
    if k.shape == (3, 3):
        k = np.broadcast_to(k, (n, 3, 3))
    if k.shape != (n, 3, 3):
        raise ValueError(f'K must have shape (3, 3) or ({n}, 3, 3), got {k.shape}')
    if (
        not np.isfinite(k).all()
        or not (k[:, 0, 0] > 0).all()
        or not (k[:, 1, 1] > 0).all()
        or not np.allclose(k[:, 2], [0.0, 0.0, 1.0])
        or not np.allclose(k[:, 1, 0], 0.0)
    ):
        raise ValueError('K must be a finite pinhole matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0')
    return torch.tensor(np.array(k, dtype=np.float64))


def _check_spread(target: Tensor, name: str) -> None:
    extent = (target - target[:, :1]).norm(dim=-1).amax(1)
    if not bool((extent > 1e-9).all()):
        raise ValueError(f'{name}: all joints of a hand coincide (no extent to fit)')


def fit_hands(
    hand_model: HandModel, side: str, joints_3d: ArrayLike | Tensor, config: FitConfig | None = None
) -> FitResult:
    """Fit pose, shape and global rotation to root-relative 3D joints (N, 21, 3) in the 21-joint order. With
    ``config.free_scale`` (default) the target's scale is free and the fitted hand has the model's metric size;
    the result is wrist-relative (``root`` = 0, ``scale`` = model metres per target unit)."""
    from .model import _check_side  # noqa: PLC0415

    cfg = config or FitConfig()
    _check_side(side)
    target = _points(joints_3d, 'joints_3d', 3)
    _check_spread(target, 'joints_3d')
    with _torch_threads(cfg.num_threads):
        return _fit(hand_model, side, target - target[:, :1], None, None, cfg)


def fit_keypoints(
    hand_model: HandModel,
    side: str,
    keypoints_2d: ArrayLike | Tensor,
    K: ArrayLike | Tensor,
    world_joints: ArrayLike | Tensor | None = None,
    config: FitConfig | None = None,
    start: FitStart | None = None,
) -> FitResult:
    """Fit the hand to 2D keypoints (N, 21, 2) in pixels seen by a camera with intrinsics K ((3, 3) or (N, 3, 3)),
    optionally helped by root-relative 3D joints (N, 21, 3) whose axes follow the camera's (scale free by
    default). The metric depth comes from the model's hand size: the returned joints/vertices are camera-frame
    metres. ``start``: begin at an earlier fit of the same N hands (one LM stage; no palm alignment, 3D
    pre-fit or view search)."""
    from .model import _check_side  # noqa: PLC0415

    cfg = config or FitConfig()
    _check_side(side)
    kp = _points(keypoints_2d, 'keypoints_2d', 2)
    n = kp.shape[0]
    Kt = _intrinsics(K, n)
    target = None
    if world_joints is not None:
        target = _points(world_joints, 'world_joints', 3, n)
        _check_spread(target, 'world_joints')
        target = target - target[:, :1]
    with _torch_threads(cfg.num_threads):
        return _fit(hand_model, side, target, kp, Kt, cfg, start)
