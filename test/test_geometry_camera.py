"""Camera models: letterbox, weak perspective, metric translation, CameraInfo intrinsics."""

import numpy as np
import pytest

from hand_recon_ros.geometry import camera as cam


def _hand_like_joints(rng):
    """21 root-relative joints (metres) in a hand-sized cloud: wrist at 0, fingers up to ~18 cm."""
    base = np.zeros((21, 3))
    dirs = rng.normal(size=(5, 3)) * [1.0, 1.0, 0.4] + [0.0, -1.0, 0.0]
    for f in range(5):
        d = dirs[f] / np.linalg.norm(dirs[f])
        for k in range(4):
            base[1 + 4 * f + k] = d * 0.045 * (k + 1) + rng.normal(scale=0.01, size=3)
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    return base @ R.T


def _random_camera(rng):
    width, height = int(rng.choice([640, 1280, 848])), int(rng.choice([480, 720]))
    fx = rng.uniform(400, 1500)
    K = np.array(
        [
            [fx, 0.0, width / 2 + rng.uniform(-20, 20)],
            [0.0, fx * rng.uniform(0.98, 1.02), height / 2 + rng.uniform(-20, 20)],
            [0.0, 0.0, 1.0],
        ]
    )
    return K, width, height


def _random_translation(rng):
    tz = rng.uniform(0.3, 1.5)
    return np.array([rng.uniform(-0.2, 0.2) * tz, rng.uniform(-0.15, 0.15) * tz, tz])


@pytest.mark.parametrize('height,width', [(480, 640), (720, 1280), (1280, 720), (481, 333), (512, 512)])
def test_letterbox_round_trip_and_geometry(height, width):
    lb = cam.LetterboxTransform(height, width, 512)
    side = max(height, width)
    assert lb.padded_side == side
    assert lb.pad_left + lb.pad_right == side - width and lb.pad_top + lb.pad_bottom == side - height
    assert 0 <= lb.pad_right - lb.pad_left <= 1 and 0 <= lb.pad_bottom - lb.pad_top <= 1
    rng = np.random.default_rng(height * width)
    uv = rng.uniform([0, 0], [width, height], size=(50, 2))
    np.testing.assert_allclose(lb.to_original(lb.to_input(uv)), uv, atol=1e-9)
    np.testing.assert_allclose(lb.normalized_to_original(lb.original_to_normalized(uv)), uv, atol=1e-9)
    # The image centre maps to the input centre; original corners land inside the padding box.
    np.testing.assert_allclose(
        lb.to_input([width / 2, height / 2]),
        [256 + 0.5 * (lb.pad_left - lb.pad_right) * lb.scale, 256 + 0.5 * (lb.pad_top - lb.pad_bottom) * lb.scale],
    )
    np.testing.assert_allclose(lb.to_input([0, 0]), [lb.pad_left * lb.scale, lb.pad_top * lb.scale])
    # Normalised [-1, 1] <-> input pixels: p = -1 is input pixel 0, p = 1 is input pixel 512.
    np.testing.assert_allclose(
        lb.to_input(lb.normalized_to_original([[-1, -1], [1, 1]])), [[0, 0], [512, 512]], atol=1e-9
    )


def test_letterbox_landscape_known_values():
    lb = cam.LetterboxTransform(480, 640, 512)
    assert (lb.pad_left, lb.pad_top, lb.pad_bottom, lb.scale) == (0, 80, 80, 0.8)
    np.testing.assert_allclose(lb.to_input([100.0, 0.0]), [80.0, 64.0])
    np.testing.assert_allclose(lb.to_original([256.0, 256.0]), [320.0, 240.0])


def test_letterbox_apply_pads_black_and_centres():
    img = np.full((40, 80, 3), 200, np.uint8)
    out = cam.LetterboxTransform(40, 80, 64).apply(img)
    assert out.shape == (64, 64, 3)
    assert out[:8].max() == 0 and out[-8:].max() == 0  # 20 px bands top/bottom -> 16 px at 0.8 scale
    assert out[20:44].min() == 200


def test_letterbox_rejects_bad_sizes():
    with pytest.raises(ValueError):
        cam.LetterboxTransform(0, 640)
    with pytest.raises(ValueError):
        cam.LetterboxTransform(480, 640.5)


def test_weak_perspective_acr_closed_form():
    # ACR's own camera: 512 input, f = 1265 input pixels, no padding -> t = (tx/s, ty/s, f/(256 s)).
    lb = cam.LetterboxTransform(512, 512, 512)
    K = np.array([[1265.0, 0, 256], [0, 1265.0, 256], [0, 0, 1]])
    s, tx, ty = 2.1, 0.12, -0.3
    np.testing.assert_allclose(cam.weak_to_translation(s, tx, ty, K, lb), [tx / s, ty / s, 1265 / (256 * s)])
    X = np.array([[0.0, 0.0, 0.0], [0.05, -0.02, 0.01]])
    p = cam.weak_perspective_project(X, s, tx, ty)
    np.testing.assert_allclose(p, [[tx, ty], [tx + s * 0.05, ty - s * 0.02]])


def test_weak_to_translation_is_a_good_initial_guess():
    rng = np.random.default_rng(1)
    for _ in range(20):
        K, width, height = _random_camera(rng)
        lb = cam.LetterboxTransform(height, width, 512)
        X = _hand_like_joints(rng) * [1, 1, 0.2]  # flat hand facing the camera: weak perspective ~ exact
        t = _random_translation(rng)
        uv = cam.project_points(X + t, K)
        p = lb.original_to_normalized(uv)
        # Fit the weak camera p = s X[:, :2] + (tx, ty) to the exact projections.
        A = np.zeros((42, 3))
        A[0::2, 0], A[1::2, 0] = X[:, 0], X[:, 1]
        A[0::2, 1], A[1::2, 2] = 1, 1
        s, tx, ty = np.linalg.lstsq(A, p.reshape(-1), rcond=None)[0]
        t0 = cam.weak_to_translation(s, tx, ty, K, lb)
        assert abs(t0[2] - t[2]) / t[2] < 0.05
        assert np.linalg.norm(t0[:2] - t[:2]) < 0.05 * t[2]
    with pytest.raises(cam.DegenerateTranslationError):
        cam.weak_to_translation(-1.0, 0, 0, K, lb)


def test_solve_translation_recovers_t_noise_free_and_noisy():
    rng = np.random.default_rng(2)
    errors_clean, errors_noisy = [], []
    for _ in range(40):
        K, _, _ = _random_camera(rng)
        X = _hand_like_joints(rng)
        t = _random_translation(rng)
        uv = cam.project_points(X + t, K)
        errors_clean.append(np.linalg.norm(cam.solve_translation(X, uv, K) - t))
        noisy = uv + rng.normal(scale=1.0, size=uv.shape)
        errors_noisy.append(np.linalg.norm(cam.solve_translation(X, noisy, K) - t))
    assert max(errors_clean) < 1e-6
    # 1 px noise: depth error ~ t_z^2 * sigma / (f * hand size) / sqrt(N), i.e. a few mm at most.
    assert np.median(errors_noisy) < 0.003 and max(errors_noisy) < 0.015


def test_gauss_newton_refinement_lowers_reprojection_error():
    rng = np.random.default_rng(3)
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    X = _hand_like_joints(rng) * [1, 1, 2]  # strong depth extent: algebraic LSQ is biased
    t = np.array([0.05, -0.02, 0.45])
    assert np.all(X[:, 2] + t[2] > 0.05)
    uv = cam.project_points(X + t, K) + rng.normal(scale=3.0, size=(21, 2))
    t_lin = cam.solve_translation(X, uv, K, refine_iters=0)
    t_gn = cam.solve_translation(X, uv, K)
    rms = lambda tt: np.sqrt(np.mean(cam.reprojection_errors(X, tt, uv, K) ** 2))  # noqa: E731
    assert rms(t_gn) < rms(t_lin) - 1e-3


def test_solve_translation_weights_and_nan_joints():
    rng = np.random.default_rng(4)
    K = np.array([[700.0, 0, 320], [0, 700, 240], [0, 0, 1]])
    X = _hand_like_joints(rng)
    t = np.array([0.1, 0.05, 0.8])
    uv = cam.project_points(X + t, K)
    corrupted = uv.copy()
    corrupted[3] += 80.0  # outlier
    corrupted[7] = np.nan  # missing keypoint
    weights = np.ones(21)
    weights[3] = 0.0
    np.testing.assert_allclose(cam.solve_translation(X, corrupted, K, weights), t, atol=1e-6)
    assert np.linalg.norm(cam.solve_translation(X, corrupted, K) - t) > 1e-3


def test_batched_translations_equal_the_per_hand_solver():
    rng = np.random.default_rng(6)
    for trial in range(10):
        K, _, _ = _random_camera(rng)
        if trial % 2:
            K[0, 1] = rng.uniform(-2, 2)  # skew too
        H = 1 + trial % 5
        X = np.stack([_hand_like_joints(rng) * [1, 1, 1 + trial % 3] for _ in range(H)])
        t = np.stack([_random_translation(rng) for _ in range(H)])
        uv = cam.project_points(X + t[:, None], K) + rng.normal(scale=2.0, size=(H, 21, 2))
        for iters in (0, 5):
            t_batch, ok = cam.solve_translations(X, uv, K, refine_iters=iters)
            t_single = np.stack([cam.solve_translation(X[h], uv[h], K, refine_iters=iters) for h in range(H)])
            assert ok.all()
            np.testing.assert_allclose(t_batch, t_single, atol=1e-8)


def test_batched_translations_flag_bad_hands_and_keep_the_others():
    K = np.array([[700.0, 0, 320], [0, 700, 240], [0, 0, 1]])
    X = _hand_like_joints(np.random.default_rng(7))
    t = np.array([0.05, 0.0, 0.6])
    uv = cam.project_points(X + t, K)
    rays_coincide = np.broadcast_to(uv[:1], uv.shape)  # every keypoint on one pixel: depth undetermined
    with_nan = uv.copy()
    with_nan[4] = np.nan
    behind = 2 * K[:2, 2] - uv  # best explained by a hand behind the camera
    t_all, ok = cam.solve_translations(np.stack([X] * 5), np.stack([uv, rays_coincide, with_nan, behind, uv]), K)
    assert ok.tolist() == [True, False, False, False, True]
    np.testing.assert_allclose(t_all[[0, 4]], [t, t], atol=1e-9)
    assert np.isnan(t_all[1:4]).all()
    with pytest.raises(cam.DegenerateTranslationError):
        cam.solve_translation(X, rays_coincide, K)
    with pytest.raises(ValueError, match='must match'):
        cam.solve_translations(X[None], uv[None, :20], K)


def test_solve_translation_degenerate_inputs():
    K = np.array([[700.0, 0, 320], [0, 700, 240], [0, 0, 1]])
    X = _hand_like_joints(np.random.default_rng(5))
    uv = cam.project_points(X + [0, 0, 0.5], K)
    with pytest.raises(cam.DegenerateTranslationError, match='>= 2 joints'):
        cam.solve_translation(X, uv, K, weights=np.zeros(21))
    with pytest.raises(cam.DegenerateTranslationError):
        cam.solve_translation(X, np.full((21, 2), np.nan), K)
    # Keypoints point-mirrored about the principal point are best explained by a hand behind the camera.
    with pytest.raises(cam.DegenerateTranslationError, match='behind'):
        cam.solve_translation(X, 2 * K[:2, 2] - uv, K)
    with pytest.raises(ValueError, match='must match'):
        cam.solve_translation(X, uv[:20], K)
    with pytest.raises(ValueError, match='focal'):
        cam.solve_translation(X, uv, np.zeros((3, 3)))


def test_project_points_known_values_and_behind_camera():
    K = np.array([[500.0, 0, 320], [0, 400, 240], [0, 0, 1]])
    uv = cam.project_points(np.array([[0.1, -0.2, 2.0], [0.0, 0.0, -1.0]]), K)
    np.testing.assert_allclose(uv[0], [345.0, 200.0])
    assert np.isnan(uv[1]).all()


def test_intrinsics_from_camera_info():
    k = [615.0, 0, 322.0, 0, 615.5, 241.0, 0, 0, 1]
    p = [600.0, 0, 320.0, 0, 0, 601.0, 240.0, 0, 0, 0, 1, 0]
    K, src = cam.intrinsics_from_camera_info(k, p, 640, 480)
    assert src == 'camera_info' and K[0, 0] == 615.0 and K[1, 2] == 241.0
    K, src = cam.intrinsics_from_camera_info(k, p, 640, 480, use_rectified=True)
    assert src == 'camera_info' and K[0, 0] == 600.0 and K[1, 1] == 601.0
    # Broken CameraInfo: all zeros (uncalibrated driver), NaN, absurd principal point.
    for bad in ([0.0] * 9, [np.nan] + k[1:], [615.0, 0, 5000.0, 0, 615.0, 240.0, 0, 0, 1], [615.0] * 3):
        K, src = cam.intrinsics_from_camera_info(bad, [0.0] * 12, 640, 480, fallback_fov_deg=90.0)
        assert src == 'fallback_fov'
        np.testing.assert_allclose(K, [[320.0, 0, 320], [0, 320.0, 240], [0, 0, 1]])
    # Rectified requested but P empty: k is the next best source.
    K, src = cam.intrinsics_from_camera_info(k, [0.0] * 12, 640, 480, use_rectified=True)
    assert src == 'camera_info' and K[0, 0] == 615.0
    with pytest.raises(ValueError):
        cam.intrinsics_from_camera_info(k, p, 0, 480)


def test_fallback_intrinsics_fov():
    K = cam.fallback_intrinsics(1280, 720)
    hfov = 2 * np.degrees(np.arctan(640 / K[0, 0]))
    assert hfov == pytest.approx(cam.DEFAULT_FALLBACK_FOV_DEG)
    assert K[0, 0] == K[1, 1] and tuple(K[:2, 2]) == (640.0, 360.0)
    with pytest.raises(ValueError):
        cam.fallback_intrinsics(640, 480, fov_deg=180.0)
