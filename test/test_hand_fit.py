"""Hand-model fit to 21 keypoints (hand_recon_ros.hand_model.fit) on synthetic hands with known parameters."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hand_recon_ros.hand_model import fit, fit_check, mano_loader
from hand_recon_ros.hand_model.model import HandModel, load_hand_model
from tools.standin import generator as standin

N = 10
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN_DIR = os.path.join(REPO, 'models', 'standin')


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Small batched ops: a second thread only waits on a shared, loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='module')
def model():
    return load_hand_model()


@pytest.fixture(scope='module')
def hands(model):
    """Per side: synthetic hands, their 3D joints with 5 mm noise, 2D keypoints with 2 px noise."""
    out = {}
    for i, side in enumerate(('right', 'left')):
        rng = np.random.default_rng(1400 + i)
        h = fit_check.sample_hands(model, side, N, rng)
        h['noisy_3d'] = h['joints_rel'] + rng.normal(0.0, 0.005, h['joints_rel'].shape)
        h['noisy_2d'] = h['keypoints_2d'] + rng.normal(0.0, 2.0, h['keypoints_2d'].shape)
        out[side] = h
    return out


def _mean_pose_error_mm(model, side, h):
    """What a fit that learnt nothing (mean pose, mean shape, true rotation) scores: the bar to beat."""
    kin = fit._kinematics(model, side)
    rel = kin.joints_rel(
        torch.as_tensor(h['rotation']),
        kin.finger_pose(kin.bank_mean).expand(N, -1),
        torch.zeros(N, 10, dtype=torch.float64),
    ).numpy()
    return fit_check.joint_error_mm(rel, h['joints_rel']).mean()


def test_joints_only_forward_matches_the_model(model):
    """The fit's compact forward (16 joints + 5 tip vertices) equals the smplx forward for every load option,
    also with non-zero pose correctives (MANO has them, the stand-in not)."""
    rng = np.random.default_rng(3)
    arrays = {s: dict(model._data[s]) for s in ('right', 'left')}
    for s in arrays:
        arrays[s]['posedirs'] = rng.normal(0.0, 0.003, arrays[s]['posedirs'].shape).astype(np.float32)
    variants = [
        model,
        load_hand_model(use_pca=True, num_pca_comps=12),
        load_hand_model(flat_hand_mean=True),
        HandModel(arrays, False, 'random posedirs'),
    ]
    for m in variants:
        for side in ('right', 'left'):
            kin = fit._kinematics(m, side)
            g = torch.Generator().manual_seed(0)
            orient = torch.randn(4, 3, generator=g, dtype=torch.float64)
            coeffs = kin.bank_mean + torch.randn(4, kin.pose_dim, generator=g, dtype=torch.float64) * 0.3
            betas = torch.randn(4, 10, generator=g, dtype=torch.float64)
            from hand_recon_ros.geometry import rotations

            ours = kin.joints_rel(rotations.axis_angle_to_matrix(orient), kin.finger_pose(coeffs), betas)
            hand_pose = coeffs if kin.use_pca else kin.finger_pose(coeffs) - kin.model_mean
            with torch.no_grad():
                ref = m(side, orient.float(), hand_pose.float(), betas.float())['joints'].double()
            assert torch.allclose(ours, ref - ref[:, :1], atol=2e-6), (m.identity, side)


def test_analytic_jacobian_matches_finite_differences(model, hands):
    rng = np.random.default_rng(5)
    arrays = {s: dict(model._data[s]) for s in ('right', 'left')}
    for s in arrays:
        arrays[s]['posedirs'] = rng.normal(0.0, 0.003, arrays[s]['posedirs'].shape).astype(np.float32)
    h = hands['right']
    for m in (model, HandModel(arrays, False, 'random posedirs')):
        kin = fit._kinematics(m, 'right')
        b = 3
        vals = dict(
            pose=torch.as_tensor(rng.normal(0, 0.7, (b, kin.pose_dim))),
            betas=torch.as_tensor(rng.normal(0, 1, (b, 10))),
            log_scale=torch.full((b, 1), 0.1, dtype=torch.float64),
            offset=torch.as_tensor(rng.normal(0, 0.01, (b, 3))),
            root=fit._root_params(torch.as_tensor(h['root'][:b])),
        )
        problem = fit._Problem(
            kin,
            fit.FitConfig(),
            ('rot', 'pose', 'betas', 'log_scale', 'offset', 'root'),
            vals,
            torch.as_tensor(h['rotation'][:b]),
            target3d=torch.as_tensor(h['joints_rel'][:b]),
            kp2d=torch.as_tensor(h['keypoints_2d'][:b]),
            K=torch.as_tensor(h['K']).expand(b, 3, 3),
        )
        p = fit._params_from(problem, vals)
        analytic = problem.jacobian(p)
        numeric = fit._jacobian(problem, p, problem.residuals(p))
        scale = numeric.abs().amax()
        assert float((analytic - numeric).abs().amax() / scale) < 1e-5


@pytest.mark.parametrize('side', ['right', 'left'])
def test_3d_fit_recovers_pose_and_joints(model, hands, side):
    h = hands[side]
    res = fit.fit_hands(model, side, h['noisy_3d'], fit.FitConfig(free_scale=False))
    joint_err = fit_check.joint_error_mm(res.joints, h['joints_rel'])
    pose_err = fit_check.pose_error_deg(res.full_pose, h['full_pose'])
    rot_err = fit_check.rotation_error_deg(res.global_orient, h['global_orient'])
    # 5 mm noise per axis is 8 mm per joint; the mean hand with the true rotation is 17-27 mm off
    assert _mean_pose_error_mm(model, side, h) > 15.0
    assert joint_err.mean() < 7.5 and joint_err.max() < 15.0, joint_err
    assert pose_err.mean() < 6.5 and pose_err.max() < 11.0, pose_err
    assert rot_err.max() < 9.0, rot_err
    assert np.isfinite(res.residual_3d).all() and np.isnan(res.residual_2d).all()
    assert np.allclose(res.root, 0.0) and np.allclose(res.joints[:, 0], 0.0)
    assert res['joints'] is res.joints and len(res) == N


def test_3d_fit_without_noise_is_close_to_exact(model, hands):
    h = hands['right']
    res = fit.fit_hands(model, 'right', h['joints_rel'], fit.FitConfig(free_scale=False))
    assert fit_check.joint_error_mm(res.joints, h['joints_rel']).mean() < 3.0  # the priors' pull alone


def test_free_scale_recovers_a_scaled_target(model, hands):
    h = hands['left']
    res = fit.fit_hands(model, 'left', h['noisy_3d'] * 1.25)
    # the fitted hand keeps the model's metric size; its shape matches the unscaled truth
    assert fit_check.joint_error_mm(res.joints, h['joints_rel']).mean() < 7.5
    # scale = model metres per target unit; the true hands differ in size from the mean by their betas
    assert np.all(np.abs(res.scale * 1.25 - 1.0) < 0.15), res.scale
    fixed = fit.fit_hands(model, 'left', h['noisy_3d'] * 1.25, fit.FitConfig(free_scale=False))
    assert np.allclose(fixed.scale, 1.0)
    assert fit_check.joint_error_mm(fixed.joints, h['joints_rel']).mean() > 10.0  # no free scale: it cannot


@pytest.mark.parametrize('side', ['right', 'left'])
def test_2d_fit_with_K_gives_metric_depth(model, hands, side):
    h = hands[side]
    res = fit.fit_keypoints(model, side, h['noisy_2d'], h['K'])
    depth_err = np.abs(res.root[:, 2] - h['root'][:, 2]) / h['root'][:, 2]
    joint_err = fit_check.joint_error_mm(res.joints, h['joints'])
    # depth comes from the model's mean hand size: the true hands' betas make a few % of difference
    assert np.median(depth_err) < 0.06 and np.mean(depth_err < 0.12) >= 0.8, depth_err
    assert np.median(joint_err) < 9.0 and np.mean(joint_err < 20.0) >= 0.8, joint_err
    assert np.median(res.residual_2d) < 3.5
    assert np.isnan(res.residual_3d).all()


@pytest.mark.parametrize('prefit_3d', [True, False])
@pytest.mark.parametrize('side', ['right', 'left'])
def test_2d_with_world_joints(model, hands, side, prefit_3d):
    """The benchmark's use: 2D keypoints + K + root-relative 3D of unknown scale -> metric camera-frame hand
    (with and without fitting the 3D alone first)."""
    h = hands[side]
    cfg = fit.FitConfig(prefit_3d=prefit_3d)
    res = fit.fit_keypoints(model, side, h['noisy_2d'], h['K'], world_joints=h['noisy_3d'] * 0.9, config=cfg)
    root_err = 1000 * np.linalg.norm(res.root - h['root'], axis=1)
    joint_err = 1000 * np.linalg.norm(res.joints - h['joints'], axis=-1).mean(1)  # camera frame, absolute
    assert root_err.mean() < 30.0 and root_err.max() < 60.0, root_err
    assert joint_err.mean() < 30.0, joint_err
    assert fit_check.joint_error_mm(res.joints, h['joints']).mean() < 6.5
    assert np.median(res.residual_2d) < 3.5


def test_traced_kinematics_give_the_eager_values(model, monkeypatch):
    """Kinematics.fast (TorchScript traced per input shape, the LM's hot path) = the eager methods, per shape;
    past MAX_TRACED shapes it stays eager."""
    kin = fit._Kinematics(model, 'left')  # a fresh one: no traces yet
    problem = fit._Problem(kin, fit.FitConfig(), ('rot', 'pose', 'betas'), {}, torch.eye(3, dtype=torch.float64)[None])
    rng = np.random.default_rng(5)
    for b in (1, 3):
        rot = torch.as_tensor(fit_check.random_rotations(rng, b), dtype=torch.float64)
        pose = kin.finger_pose(kin.bank_mean + torch.as_tensor(rng.normal(0, 0.5, (b, kin.pose_dim))))
        betas = torch.as_tensor(rng.normal(0, 0.5, (b, 10)))
        for name, args in (
            ('joints_rel', (rot, pose, betas)),
            ('joints_rel_jac', (rot, pose, betas, problem.pose_map)),
        ):
            eager = getattr(kin, name)(*args)
            for _ in range(2):  # the first call traces, the second runs the stored graph
                fast = kin.fast(name, *args)
                for e, f in zip(
                    eager if isinstance(eager, tuple) else (eager,), fast if isinstance(fast, tuple) else (fast,)
                ):
                    torch.testing.assert_close(f, e, rtol=0, atol=1e-12)
    assert len(kin._traced) == 4 and all(hasattr(f, 'graph') for f in kin._traced.values())  # traced graphs
    monkeypatch.setattr(fit, 'MAX_TRACED', 4)
    assert kin.fast('joints_rel', rot[:1].expand(2, 3, 3), pose[:1].expand(2, -1), betas[:1].expand(2, -1)).shape == (
        2,
        21,
        3,
    )
    assert len(kin._traced) == 4  # full: the new shape ran eager, nothing stored


def test_one_stage_fit_matches_two_stages_in_fewer_iterations(model, hands):
    """prefit_3d=False (the crop stage's fit) skips the 3D-only stage: same hands, fewer LM iterations."""
    h = hands['right']
    args = (model, 'right', h['noisy_2d'], h['K'])
    two = fit.fit_keypoints(*args, world_joints=h['noisy_3d'], config=fit.FitConfig(prefit_3d=True))
    one = fit.fit_keypoints(*args, world_joints=h['noisy_3d'], config=fit.FitConfig(prefit_3d=False))
    apart = 1000 * np.linalg.norm(one.joints - two.joints, axis=-1).mean(1)
    assert np.median(apart) < 3.0 and apart.max() < 15.0, apart
    assert one.iterations.mean() < 0.8 * two.iterations.mean(), (one.iterations, two.iterations)


@pytest.mark.parametrize('with_3d', [True, False])
def test_a_fit_started_from_the_previous_frames_fit(model, hands, with_3d):
    """Video: the next frame's hands moved a little; starting from the last fit gives the same hands as a fit
    from scratch in fewer LM iterations."""
    h = hands['right']
    rng = np.random.default_rng(1500)
    world = (lambda x: {'world_joints': x}) if with_3d else (lambda x: {})  # noqa: E731
    config = fit.FitConfig(prefit_3d=False)
    before = fit.fit_keypoints(model, 'right', h['noisy_2d'], h['K'], config=config, **world(h['noisy_3d']))
    moved_2d = h['noisy_2d'] + [4.0, -3.0] + rng.normal(0.0, 1.0, h['noisy_2d'].shape)
    moved_3d = h['noisy_3d'] + rng.normal(0.0, 0.002, h['noisy_3d'].shape)
    cold = fit.fit_keypoints(model, 'right', moved_2d, h['K'], config=config, **world(moved_3d))
    start = fit.FitStart.of(before)
    warm = fit.fit_keypoints(model, 'right', moved_2d, h['K'], config=config, start=start, **world(moved_3d))
    apart = 1000 * np.linalg.norm(warm.joints - cold.joints, axis=-1).mean(1)
    assert np.median(apart) < 2.0, apart
    assert np.median(warm.residual_2d) <= 1.05 * np.median(cold.residual_2d)
    assert warm.iterations.mean() < 0.7 * cold.iterations.mean(), (warm.iterations, cold.iterations)
    # the start of some hands only; a start that does not fit the hands is refused
    assert len(fit.FitStart.of(before, [0, 2])) == 2
    with pytest.raises(ValueError, match=r'start.global_orient must be finite \(10, 3\)'):
        fit.fit_keypoints(model, 'right', moved_2d, h['K'], start=fit.FitStart.of(before, [0, 1]))
    bad = dataclasses.replace(start, betas=np.full_like(start.betas, np.nan))
    with pytest.raises(ValueError, match='start.betas'):
        fit.fit_keypoints(model, 'right', moved_2d, h['K'], start=bad)


def test_result_reproduces_through_the_model(model, hands):
    h = hands['right']
    res = fit.fit_keypoints(model, 'right', h['noisy_2d'][:3], h['K'])
    with torch.no_grad():
        out = model(
            'right',
            torch.tensor(res.global_orient, dtype=torch.float32),
            torch.tensor(res.hand_pose, dtype=torch.float32),
            torch.tensor(res.betas, dtype=torch.float32),
            torch.tensor(res.transl, dtype=torch.float32),
        )
    assert np.allclose(out['joints'].numpy(), res.joints, atol=1e-5)
    assert np.allclose(out['vertices'].numpy(), res.vertices, atol=1e-5)
    assert res.vertices.shape == (3, model.num_vertices, 3)
    assert set(res.keys()) >= {
        'joints',
        'vertices',
        'global_orient',
        'hand_pose',
        'betas',
        'transl',
        'scale',
        'residual_2d',
        'residual_3d',
        'cost',
    }


@pytest.mark.parametrize('mode', ['3d', '2d'])
def test_batch_and_single_give_the_same_result(model, hands, mode):
    h = hands['left']
    if mode == '3d':
        run = lambda idx: fit.fit_hands(model, 'left', h['noisy_3d'][idx])  # noqa: E731
    else:
        run = lambda idx: fit.fit_keypoints(model, 'left', h['noisy_2d'][idx], h['K'])  # noqa: E731
    batch = run(slice(0, 4))
    again = run(slice(0, 4))
    assert np.array_equal(batch.joints, again.joints)  # deterministic
    for i in range(4):
        single = run(slice(i, i + 1))
        assert np.allclose(single.joints[0], batch.joints[i], atol=1e-6), i
        assert np.allclose(single.betas[0], batch.betas[i], atol=1e-4), i


def test_an_outlier_keypoint_is_down_weighted(model, hands):
    h = hands['right']
    target = h['noisy_3d'].copy()
    target[:, 8] += np.array([0.05, -0.03, 0.02])  # index tip 6 cm off
    inliers = [j for j in range(21) if j != 8]

    def inlier_error(cfg, tgt):
        res = fit.fit_hands(model, 'right', tgt, cfg)
        return 1000 * np.linalg.norm(res.joints[:, inliers] - h['joints_rel'][:, inliers], axis=-1).mean()

    clean = inlier_error(fit.FitConfig(free_scale=False), h['noisy_3d'])
    plain = inlier_error(fit.FitConfig(free_scale=False, robust='none'), target)
    huber = inlier_error(fit.FitConfig(free_scale=False), target)
    gm = inlier_error(fit.FitConfig(free_scale=False, robust='geman-mcclure'), target)
    # Huber (the default) bounds the outlier's pull, Geman-McClure all but ignores it
    assert gm < clean + 0.5 < huber + 0.5 < plain, (clean, gm, huber, plain)


def test_bad_input_is_refused_clearly(model, hands):
    h = hands['right']
    kp, K, j3 = h['noisy_2d'][:2], h['K'], h['noisy_3d'][:2]
    nan_kp = kp.copy()
    nan_kp[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r'non-finite.*\[1\]'):
        fit.fit_keypoints(model, 'right', nan_kp, K)
    with pytest.raises(ValueError, match='no hands'):
        fit.fit_keypoints(model, 'right', np.zeros((0, 21, 2)), K)
    with pytest.raises(ValueError, match='no hands'):
        fit.fit_hands(model, 'right', np.zeros((0, 21, 3)))
    with pytest.raises(ValueError, match=r'\(N, 21, 2\)'):
        fit.fit_keypoints(model, 'right', kp[:, :20], K)
    with pytest.raises(ValueError, match=r'\(N, 21, 3\)'):
        fit.fit_hands(model, 'right', j3[0])
    with pytest.raises(ValueError, match='K must'):
        fit.fit_keypoints(model, 'right', kp, np.eye(4))
    with pytest.raises(ValueError, match='K must'):
        fit.fit_keypoints(model, 'right', kp, np.diag([-600.0, 600.0, 1.0]))
    with pytest.raises(ValueError, match='world_joints has 1 hands'):
        fit.fit_keypoints(model, 'right', kp, K, world_joints=j3[:1])
    with pytest.raises(ValueError, match='coincide'):
        fit.fit_hands(model, 'right', np.zeros((1, 21, 3)))
    with pytest.raises(ValueError, match='side'):
        fit.fit_hands(model, 'both', j3)
    with pytest.raises(ValueError, match='robust'):
        fit.FitConfig(robust='cauchy')
    with pytest.raises(ValueError, match='sigma_2d'):
        fit.FitConfig(sigma_2d=0)
    with pytest.raises(ValueError, match='num_threads'):
        fit.FitConfig(num_threads=0)


def test_mano_format_files_and_pca_models(tmp_path, model, hands):
    """MANO-layout pickles (chumpy structure, loaded by the same loader) with pose correctives, and a model
    loaded with a 12-component pose PCA: the fit runs on both and its output reproduces through the model."""
    rng = np.random.default_rng(7)
    for side in ('right', 'left'):
        arrays, _ = mano_loader.load_model_file(os.path.join(STANDIN_DIR, f'STANDIN_{side.upper()}.npz'))
        arrays = dict(arrays)
        arrays['posedirs'] = rng.normal(0.0, 0.002, arrays['posedirs'].shape).astype(np.float32)
        standin.write_chumpy_style_pickle(tmp_path / f'MANO_{side.upper()}.pkl', model=arrays)
    mano = load_hand_model(tmp_path, use_cache=False)
    pca = load_hand_model(use_pca=True, num_pca_comps=12)
    assert not mano.is_standin and pca.pose_dim == 12
    h = hands['left']
    for m in (mano, pca):
        res = fit.fit_keypoints(m, 'left', h['noisy_2d'][:4], h['K'], world_joints=h['noisy_3d'][:4])
        assert res.hand_pose.shape == (4, m.pose_dim)
        assert fit_check.joint_error_mm(res.joints, h['joints'][:4]).mean() < 8.0
        with torch.no_grad():
            out = m(
                'left',
                *(
                    torch.tensor(x, dtype=torch.float32)
                    for x in (res.global_orient, res.hand_pose, res.betas, res.transl)
                ),
            )
        assert np.allclose(out['joints'].numpy(), res.joints, atol=1e-5)


def test_num_threads_applies_during_the_fit_only(model, hands, monkeypatch):
    h = hands['right']
    before = torch.get_num_threads()
    seen = []
    original = fit._fit

    def spy(*args):
        seen.append(torch.get_num_threads())
        return original(*args)

    monkeypatch.setattr(fit, '_fit', spy)
    res = fit.fit_hands(model, 'right', h['noisy_3d'][:2], fit.FitConfig(num_threads=before + 1))
    assert seen == [before + 1] and torch.get_num_threads() == before and len(res) == 2


def test_config_is_a_frozen_dataclass():
    cfg = fit.FitConfig()
    assert cfg.free_scale and cfg.robust in fit.ROBUST_KERNELS
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.iterations = 3


@pytest.mark.slow
def test_bench_fit_quick_prints_its_tables():
    script = os.path.join(REPO, 'benchmarks', 'bench_fit.py')
    proc = subprocess.run(
        [sys.executable, script, '--quick', '--threads', '1'], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    body = [line for line in lines if line.startswith('| ') and not line.startswith(('| input', '| mode'))]
    rows = {line.split('|')[1].strip(): [c.strip() for c in line.strip('|').split('|')] for line in body}
    assert any(k.startswith('3D root-relative') for k in rows) and '2D + K' in rows
    joint = float(rows['2D + K + 3D x0.9 (free scale)'][2].split(' / ')[0])
    assert 0 < joint < float(rows['none: mean hand, true rotation'][2].split(' / ')[0])
    times = [r for r in rows.values() if r[1] == '1' and len(r) == 4]
    assert {r[0] for r in times} == {'3D', '2D + 3D', '2D only'}
    assert all(float(v) > 0 for r in times for v in r[2:])
