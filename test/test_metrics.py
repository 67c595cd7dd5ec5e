"""Metrics (mm) and the Procrustes alignments they rely on, with known answers."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hand_recon_ros import metrics as M
from hand_recon_ros.geometry import procrustes as P


def _hands(seed, batch=4, n=21):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.04, size=(batch, n, 3))


def _similarity(x, seed):
    rng = np.random.default_rng(seed)
    R = Rotation.random(len(x), random_state=seed).as_matrix()
    s = rng.uniform(0.5, 2.0, len(x))
    t = rng.normal(scale=0.3, size=(len(x), 3))
    return s[:, None, None] * x @ R.transpose(0, 2, 1) + t[:, None], (s, R, t)


# --- Procrustes ---------------------------------------------------------------------------------


def test_similarity_procrustes_recovers_transform_numpy_and_torch():
    x = _hands(0)
    y, (s, R, t) = _similarity(x, 1)
    s2, R2, t2 = P.similarity_procrustes(x, y)
    np.testing.assert_allclose(s2, s, atol=1e-12)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(t2, t, atol=1e-12)
    xt = torch.tensor(x, requires_grad=True)
    aligned = P.procrustes_align(xt, torch.tensor(y))
    np.testing.assert_allclose(aligned.detach().numpy(), y, atol=1e-12)
    (aligned**2).sum().backward()
    assert torch.isfinite(xt.grad).all()


def test_procrustes_never_returns_a_reflection():
    x = _hands(2, batch=1)
    mirrored = x * [-1.0, 1.0, 1.0]
    s, R, _ = P.similarity_procrustes(x, mirrored)
    assert np.linalg.det(R[0]) == pytest.approx(1.0)
    assert np.abs(P.procrustes_align(x, mirrored) - mirrored).max() > 1e-3


def test_procrustes_weights_ignore_outliers():
    x = _hands(3, batch=1)
    y, _ = _similarity(x, 4)
    y[0, 5] += 1.0
    w = np.ones((1, 21))
    w[0, 5] = 0.0
    aligned = P.procrustes_align(x, y, w)
    np.testing.assert_allclose(np.delete(aligned[0], 5, 0), np.delete(y[0], 5, 0), atol=1e-12)


def test_scale_translation_and_per_axis_alignments():
    x = _hands(5)
    np.testing.assert_allclose(
        P.scale_translation_align(x, 1.7 * x + [0.1, -0.2, 0.3]), 1.7 * x + [0.1, -0.2, 0.3], atol=1e-12
    )
    stretched = x * [1.0, 2.0, 0.5] + [0.1, 0.0, -0.1]
    np.testing.assert_allclose(P.per_axis_align(x, stretched), stretched, atol=1e-12)
    # A rotation is not removed by either.
    rotated = x @ Rotation.from_euler('z', 90, degrees=True).as_matrix().T
    assert np.abs(P.scale_translation_align(x, rotated) - rotated).max() > 1e-2
    # No spread in source -> zero scale, not NaN.
    assert np.isfinite(P.scale_translation_align(np.zeros((5, 3)), x[0, :5])).all()
    assert np.isfinite(P.per_axis_align(np.zeros((5, 3)), x[0, :5])).all()
    with pytest.raises(ValueError, match='same|both'):
        P.procrustes_align(x, x[:, :20])


# --- Per-hand metrics ---------------------------------------------------------------------------


def test_mpjpe_known_values():
    gt = _hands(6)
    pred = gt + [0.05, -0.02, 0.01]  # global offset only
    np.testing.assert_allclose(M.mpjpe(pred, gt), 0.0, atol=1e-9)
    np.testing.assert_allclose(M.mpjpe(pred, gt, root=None), 1000 * np.linalg.norm([0.05, -0.02, 0.01]))
    moved = gt.copy()
    moved[:, 7] += [0.0, 0.021, 0.0]  # one non-root joint off by 21 mm -> mean 1 mm over 21 joints
    np.testing.assert_allclose(M.mpjpe(moved, gt), 1.0, atol=1e-9)
    # Moving the root instead shifts every other joint by 21 mm after root alignment.
    moved_root = gt.copy()
    moved_root[:, 0] += [0.0, 0.021, 0.0]
    np.testing.assert_allclose(M.mpjpe(moved_root, gt), 20.0, atol=1e-9)
    assert isinstance(M.mpjpe(pred[0], gt[0]), float)


def test_mpjpe_intaghand_protocol_removes_global_scale():
    gt = _hands(7)
    pred = 1.3 * gt + 0.2
    np.testing.assert_allclose(M.mpjpe(pred, gt, **M.INTAGHAND_PROTOCOL), 0.0, atol=1e-9)
    assert np.all(M.mpjpe(pred, gt, root=9) > 1.0)
    verts_gt = np.random.default_rng(8).normal(scale=0.04, size=(4, 778, 3))
    np.testing.assert_allclose(
        M.mpvpe(1.3 * verts_gt + 0.2, verts_gt, pred, gt, **M.INTAGHAND_PROTOCOL), 0.0, atol=1e-9
    )
    with pytest.raises(ValueError, match='joints'):
        M.mpvpe(verts_gt, verts_gt)
    np.testing.assert_allclose(M.mpvpe(verts_gt + 0.001, verts_gt, root=None), 1000 * np.sqrt(3e-6))


def test_pa_metrics_remove_similarity_and_bound_mpjpe():
    gt = _hands(9)
    pred, _ = _similarity(gt, 10)
    np.testing.assert_allclose(M.pa_mpjpe(pred, gt), 0.0, atol=1e-9)
    np.testing.assert_allclose(M.pa_mpvpe(pred, gt), 0.0, atol=1e-9)
    noisy = gt + np.random.default_rng(11).normal(scale=0.005, size=gt.shape)
    assert np.all(M.pa_mpjpe(noisy, gt) <= M.mpjpe(noisy, gt) + 1e-9)
    assert np.all(M.pa_mpjpe(noisy, gt) > 1.0)


def test_valid_mask_ignores_joints_even_if_nan():
    gt = _hands(12)
    pred = gt.copy()
    pred[:, 4] = np.nan
    valid = np.ones((4, 21))
    valid[:, 4] = 0
    np.testing.assert_allclose(M.mpjpe(pred, gt, valid=valid), 0.0, atol=1e-12)
    np.testing.assert_allclose(M.pa_mpjpe(pred, gt, valid=valid), 0.0, atol=1e-9)
    none_valid = M.mpjpe(gt, gt, valid=np.zeros((4, 21)))
    assert np.isnan(none_valid).all()


def test_torch_inputs_accepted():
    gt = _hands(13)
    pred = gt + 0.001
    expected = M.mpjpe(pred, gt, root=None)
    np.testing.assert_allclose(M.mpjpe(torch.tensor(pred, requires_grad=True), torch.tensor(gt), root=None), expected)


# --- Two-hand metrics ---------------------------------------------------------------------------


def _two_hands(seed):
    rng = np.random.default_rng(seed)
    left = rng.normal(scale=0.04, size=(21, 3))
    right = rng.normal(scale=0.04, size=(21, 3)) + [0.12, 0.0, 0.03]
    return left, right


def test_i_mpjpe_zero_for_joint_similarity_without_rotation():
    gl, gr = _two_hands(14)
    for alignment in M.I_MPJPE_ALIGNMENTS:
        err = M.i_mpjpe(2.0 * gl + 0.3, 2.0 * gr + 0.3, gl, gr, alignment=alignment)
        assert err == pytest.approx(0.0, abs=1e-9)
    # Anisotropic stretch: only the per-axis (IHMR) variant absorbs it.
    stretch = np.array([1.0, 1.5, 0.7])
    assert M.i_mpjpe(gl * stretch, gr * stretch, gl, gr) == pytest.approx(0.0, abs=1e-9)
    assert M.i_mpjpe(gl * stretch, gr * stretch, gl, gr, alignment='isotropic') > 1.0
    with pytest.raises(ValueError, match='alignment'):
        M.i_mpjpe(gl, gr, gl, gr, alignment='procrustes')


def test_i_mpjpe_matches_independent_implementations():
    gl, gr = _two_hands(15)
    rng = np.random.default_rng(16)
    pl = gl + rng.normal(scale=0.004, size=gl.shape)
    pr = gr + [0.015, -0.01, 0.0] + rng.normal(scale=0.004, size=gr.shape)  # right hand misplaced
    pred, gt = np.concatenate([pl, pr]), np.concatenate([gl, gr])
    # Per-axis standardisation as IHMR writes it.
    ref = (pred - pred.mean(0)) / pred.std(0) * gt.std(0) + gt.mean(0)
    expected = 1000 * np.linalg.norm(ref - gt, axis=1).mean()
    assert M.i_mpjpe(pl, pr, gl, gr) == pytest.approx(expected, rel=1e-10)
    # Isotropic: one scale and translation from an ordinary least-squares solve.
    A = np.zeros((126, 4))
    A[:, 0] = pred.reshape(-1)
    A[np.arange(126), 1 + np.arange(126) % 3] = 1.0
    s, tx, ty, tz = np.linalg.lstsq(A, gt.reshape(-1), rcond=None)[0]
    expected_iso = 1000 * np.linalg.norm(s * pred + [tx, ty, tz] - gt, axis=1).mean()
    assert M.i_mpjpe(pl, pr, gl, gr, alignment='isotropic') == pytest.approx(expected_iso, rel=1e-10)
    # Both hands individually fine, jointly misplaced: I-MPJPE sees what per-hand MPJPE cannot.
    assert M.i_mpjpe(gl, gr + [0.02, 0, 0], gl, gr, alignment='isotropic') > 3.0
    assert M.mpjpe(gr + [0.02, 0, 0], gr) == pytest.approx(0.0, abs=1e-9)


def test_mrrpe_known_value():
    gl_root, gr_root = np.array([0.0, 0.0, 0.5]), np.array([0.1, 0.0, 0.5])
    # Both predicted roots shifted by 0.2 m (irrelevant), right one off by (0, 3, 4) mm -> 5 mm.
    err = M.mrrpe(gl_root + 0.2, gr_root + 0.2 + [0.0, 0.003, 0.004], gl_root, gr_root)
    assert err == pytest.approx(5.0)
    batch = M.mrrpe(np.zeros((3, 3)), np.ones((3, 3)) * [0.03, 0, 0.04], np.zeros((3, 3)), np.zeros((3, 3)))
    np.testing.assert_allclose(batch, [50.0] * 3)


def test_penetration_from_depths():
    m = M.penetration_from_depths([0.0, 0.002, 0.0, 0.004], [0.001, 0, 0, 0, 0, 0])
    assert m == pytest.approx({'ave_p_mm': 0.7, 'max_p_mm': 4.0, 'n_inside': 3})
    with pytest.raises(ValueError):
        M.penetration_from_depths([-0.001], [0.0])
    with pytest.raises(ValueError):
        M.penetration_from_depths([np.nan], [0.0])


def test_summarize_skips_missing_values():
    rows = [
        {'mpjpe': 1.0, 'mrrpe': None, 'seq': 'a'},
        {'mpjpe': 3.0, 'mrrpe': 2.0},
        {'mpjpe': float('nan'), 'mrrpe': np.float64(4.0)},
    ]
    out = M.summarize(rows, counts=True)
    assert out == {'num_samples': 3, 'mpjpe': 2.0, 'n_mpjpe': 2, 'mrrpe': 3.0, 'n_mrrpe': 2}
    # A metric missing from every sample stays visible as NaN.
    assert np.isnan(M.summarize([{'max_p_mm': None}])['max_p_mm'])
    assert M.summarize([]) == {'num_samples': 0}
    with pytest.raises(TypeError):
        M.summarize([1.0])
