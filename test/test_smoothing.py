"""One-Euro filtering and hand tracking: noise reduction, bounded lag, stable ids, quaternion signs."""

import math

import numpy as np
import pytest

from hand_recon_ros.results import HandResult
from hand_recon_ros.smoothing import HandTracker, OneEuroFilter, OneEuroParams, QuaternionOneEuroFilter

FPS = 30.0
DT = 1.0 / FPS


def make_hand(side='right', wrist=(0.0, 0.0, 0.5), rng=None, noise=0.0, score=0.9, quat=(0, 0, 0, 1)):
    rng = rng or np.random.default_rng(0)
    base = np.asarray(wrist, np.float64) + np.linspace(0, 0.1, 21)[:, None] * [1.0, 0.5, 0.0]
    joints = (base + rng.normal(0, noise, base.shape)).astype(np.float32)
    verts = (np.tile(np.asarray(wrist), (778, 1)) + rng.normal(0, noise, (778, 3))).astype(np.float32)
    kp = (np.full((21, 2), 300.0) + rng.normal(0, noise * 1000, (21, 2))).astype(np.float32)
    return HandResult(
        handedness=side,
        score=score,
        joints_3d=joints,
        keypoints_2d=kp,
        joint_confidence=np.full(21, 0.8, np.float32),
        wrist_position=joints[0].copy(),
        wrist_orientation=np.asarray(quat, np.float32),
        vertices=verts,
        mano_pose=rng.normal(0, noise, 48).astype(np.float32),
    )


# ---- OneEuroFilter ---------------------------------------------------------------------------------------


def test_noise_on_constant_signal_is_reduced():
    rng = np.random.default_rng(1)
    raw = 1.0 + rng.normal(0, 0.01, (300, 5))
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0))
    out = np.array([f(x, i * DT) for i, x in enumerate(raw)])
    steady_raw, steady_out = raw[60:], out[60:]
    # First-order low-pass at 1 Hz sampled at 30 Hz keeps sqrt(a / (2 - a)) ~= 0.31 of white noise.
    ratio = steady_out.std() / steady_raw.std()
    assert 0.2 < ratio < 0.42, ratio
    assert abs(steady_out.mean() - 1.0) < 0.003


def test_lag_on_ramp_is_bounded_by_beta():
    speed = 1.0  # units per second
    t = np.arange(200) * DT
    lags = {}
    for beta in (0.0, 10.0):
        f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=beta, d_cutoff=1.0))
        out = np.array([f(np.array([speed * ti]), ti)[0] for ti in t])
        lags[beta] = speed * t[-1] - out[-1]
    # Steady-state lag of a first-order low-pass on a ramp is speed * tau = speed / (2 pi fc).
    assert lags[0.0] == pytest.approx(1.0 / (2 * math.pi * 1.0), rel=0.02)
    assert lags[10.0] == pytest.approx(1.0 / (2 * math.pi * 11.0), rel=0.05)
    assert lags[10.0] < lags[0.0] / 5


def test_first_sample_passes_through_and_dt_le_zero_keeps_state():
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0))
    np.testing.assert_array_equal(f([1.0, 2.0], 10.0), [1.0, 2.0])
    out = f([3.0, 2.0], 10.0 + DT)
    a = 1.0 / (1.0 + (1.0 / (2 * math.pi)) / DT)
    np.testing.assert_allclose(out, [1.0 + a * 2.0, 2.0])
    np.testing.assert_allclose(f([100.0, 100.0], 10.0 + DT), out)  # duplicate stamp
    np.testing.assert_allclose(f([100.0, 100.0], 9.0), out)  # out of order
    with pytest.raises(ValueError, match='non-finite'):
        f([np.nan, 0.0], 11.0)
    with pytest.raises(ValueError, match='shape changed'):
        f([1.0, 2.0, 3.0], 11.0)
    with pytest.raises(ValueError, match='timestamp'):
        f([1.0, 2.0], float('inf'))
    f.reset()
    np.testing.assert_array_equal(f([7.0, 7.0], 0.0), [7.0, 7.0])


def test_cutoff_adapts_per_element():
    """A fast element gets a higher cutoff than a still one in the same array (vectorised speed)."""
    params = OneEuroParams(min_cutoff=1.0, beta=5.0)
    vec = OneEuroFilter(params)
    singles = [OneEuroFilter(params), OneEuroFilter(params)]
    for i in range(30):
        x = np.array([0.0, 2.0 * i * DT])
        out = vec(x, i * DT)
        expected = [singles[k](x[k : k + 1], i * DT)[0] for k in range(2)]
        np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_parameters_update_at_runtime():
    params = OneEuroParams(min_cutoff=1.0)
    f = OneEuroFilter(params)
    f([0.0], 0.0)
    params.update(min_cutoff=100.0)
    a = 1.0 / (1.0 + (1.0 / (2 * math.pi * 100.0)) / DT)
    np.testing.assert_allclose(f([1.0], DT), [a])
    with pytest.raises(ValueError, match='min_cutoff > 0'):
        params.update(min_cutoff=0.0)
    assert params.min_cutoff == 100.0
    with pytest.raises(ValueError, match='unknown'):
        params.update(gain=1.0)
    with pytest.raises(ValueError, match='beta >= 0'):
        OneEuroParams(beta=-1.0)


# ---- quaternions -----------------------------------------------------------------------------------------


def _quat_about_z(angle):
    return np.array([0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2)])


def test_quaternion_sign_flips_are_absorbed():
    rng = np.random.default_rng(3)
    qf = QuaternionOneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.5))
    naive = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.5))
    prev = None
    naive_norms = []
    for i in range(60):
        q = _quat_about_z(0.3 + 0.01 * i)
        sign = -1.0 if rng.random() < 0.5 else 1.0
        out = qf(sign * q, i * DT)
        naive_norms.append(np.linalg.norm(naive(sign * q, i * DT)))
        assert np.linalg.norm(out) == pytest.approx(1.0)
        if prev is not None:
            assert np.dot(out, prev) > 0.99  # no jump to the other hemisphere
        prev = out
        # Same rotation as the input up to the filter lag (angle between rotations < 0.05 rad).
        angle = 2 * math.acos(min(1.0, abs(float(np.dot(out, q)))))
        assert angle < 0.05
    assert min(naive_norms) < 0.5  # what happens without the sign alignment


def test_quaternion_bad_input():
    qf = QuaternionOneEuroFilter()
    with pytest.raises(ValueError, match='shape'):
        qf([0, 0, 1], 0.0)
    with pytest.raises(ValueError, match='non-zero'):
        qf([0, 0, 0, 0], 0.0)
    np.testing.assert_allclose(qf([0, 0, 0, 2.0], 0.0), [0, 0, 0, 1])  # normalised


# ---- HandTracker -----------------------------------------------------------------------------------------


def test_ids_are_stable_per_side_and_distinct():
    tracker = HandTracker()
    ids = []
    for i in range(10):
        out = tracker.update([make_hand('left', (-0.1, 0, 0.5)), make_hand('right', (0.1, 0, 0.5))], i * DT)
        ids.append({h.handedness: h.track_id for h in out})
    assert all(d == ids[0] for d in ids)
    assert ids[0]['left'] != ids[0]['right'] and min(ids[0].values()) >= 1


def test_new_id_only_after_a_gap_longer_than_max_missing():
    tracker = HandTracker(max_missing_s=0.5)
    first = tracker.update([make_hand('right')], 0.0)[0].track_id
    assert tracker.update([], 0.1) == []
    assert tracker.update([make_hand('right')], 0.4)[0].track_id == first  # 0.4 s gap: same track
    assert tracker.update([make_hand('right')], 1.2)[0].track_id != first  # 0.8 s gap: new track


def test_jump_beyond_gate_starts_a_new_track():
    tracker = HandTracker(gate_m=0.2)
    a = tracker.update([make_hand('right', (0, 0, 0.5))], 0.0)[0]
    b = tracker.update([make_hand('right', (0.05, 0, 0.5))], DT)[0]
    c = tracker.update([make_hand('right', (0.6, 0, 0.5))], 2 * DT)[0]
    assert a.track_id == b.track_id != c.track_id
    # The new track starts unsmoothed: no blending with the other hand's position.
    np.testing.assert_allclose(c.wrist_position, [0.6, 0, 0.5], atol=1e-6)
    assert len(tracker.tracks) == 1


def test_multi_mode_greedy_association_by_wrist():
    tracker = HandTracker(mode='multi', gate_m=0.15)
    ids_by_x = {}
    for i in range(6):
        hands = [make_hand('right', (-0.2 + 0.01 * i, 0, 0.6)), make_hand('right', (0.2 - 0.01 * i, 0, 0.6))]
        if i % 2:
            hands.reverse()  # input order must not matter
        for h in tracker.update(hands, i * DT):
            key = 'a' if h.wrist_position[0] < 0 else 'b'
            ids_by_x.setdefault(key, set()).add(h.track_id)
    assert len(ids_by_x['a']) == 1 and len(ids_by_x['b']) == 1 and ids_by_x['a'] != ids_by_x['b']
    # A third right hand far away is a new track; the unmatched one survives a short absence.
    out = tracker.update([make_hand('right', (-0.15, 0, 0.6)), make_hand('right', (0.0, 0.5, 0.6))], 6 * DT)
    assert out[0].track_id in ids_by_x['a']
    assert out[1].track_id not in ids_by_x['a'] | ids_by_x['b']
    assert len(tracker.tracks) == 3
    out = tracker.update([make_hand('right', (0.15, 0, 0.6))], 7 * DT)
    assert out[0].track_id in ids_by_x['b']


def test_per_side_mode_keeps_the_best_scoring_hand():
    tracker = HandTracker()
    out = tracker.update([make_hand('right', score=0.4), make_hand('right', (0.05, 0, 0.5), score=0.9)], 0.0)
    assert len(out) == 1 and out[0].score == pytest.approx(0.9)


def test_tracker_smooths_jitter_and_raw_stays_available():
    rng = np.random.default_rng(5)
    tracker = HandTracker()
    raw_err, smooth_err, quats = [], [], []
    truth = make_hand('right')
    for i in range(90):
        hand = make_hand('right', rng=rng, noise=0.005, quat=-_quat_about_z(0.2) if i % 2 else _quat_about_z(0.2))
        original = hand.joints_3d.copy()
        raw, smooth = tracker.update_with_raw([hand], i * DT)
        np.testing.assert_array_equal(hand.joints_3d, original)  # input untouched
        assert hand.track_id == 0
        assert raw[0].track_id == smooth[0].track_id >= 1
        np.testing.assert_array_equal(raw[0].joints_3d, hand.joints_3d)
        assert raw[0].joints_3d is not hand.joints_3d
        if i >= 30:
            raw_err.append(np.abs(raw[0].vertices - truth.vertices).mean())
            smooth_err.append(np.abs(smooth[0].vertices - truth.vertices).mean())
            quats.append(smooth[0].wrist_orientation)
        out = smooth[0]
        assert out.joints_3d.dtype == np.float32 and out.vertices.shape == (778, 3)
        out.validate()
    assert np.mean(smooth_err) < 0.5 * np.mean(raw_err)
    # Alternating input signs give a steady, unit-norm, same-hemisphere output.
    quats = np.array(quats)
    assert np.all(quats @ quats[0] > 0.999)


def test_set_params_retunes_live_tracks_and_disable_passes_through():
    tracker = HandTracker(min_cutoff=0.01, beta=0.0)
    tracker.update([make_hand('right', (0, 0, 0.5))], 0.0)
    slow = tracker.update([make_hand('right', (0.1, 0, 0.5))], DT)[0].wrist_position[0]
    assert slow < 0.001
    tracker.set_params(min_cutoff=1000.0)
    fast = tracker.update([make_hand('right', (0.1, 0, 0.5))], 2 * DT)[0].wrist_position[0]
    assert fast > 0.095
    tracker.enabled = False
    out = tracker.update([make_hand('right', (0.2, 0, 0.5))], 3 * DT)[0]
    assert out.wrist_position[0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match='d_cutoff > 0'):
        tracker.set_params(d_cutoff=-1.0)
    with pytest.raises(ValueError, match='unknown'):
        tracker.set_params(gain=1.0)
    assert tracker.params.d_cutoff == 1.0  # nothing half-applied
    tracker.set_params(beta=0.25, d_cutoff=2.0)
    assert (tracker.params.beta, tracker.params.d_cutoff) == (0.25, 2.0)


def test_one_beta_serves_metres_and_pixels_through_speed_scales():
    """A hand moving 0.5 m/s and its 2D keypoints moving 500 px/s get the same adaptive cutoff."""
    tracker = HandTracker(min_cutoff=1.0, beta=10.0)
    lag_m, lag_px = [], []
    for i in range(120):
        t = i * DT
        hand = make_hand('right', (0.5 * t, 0, 0.5))
        hand.keypoints_2d[:] = 500.0 * t
        out = tracker.update([hand], t)[0]
        lag_m.append(hand.wrist_position[0] - out.wrist_position[0])
        lag_px.append(hand.keypoints_2d[0, 0] - out.keypoints_2d[0, 0])
    # Steady state: lag = speed / (2 pi (min_cutoff + beta * scale * speed)) = 0.5 / (2 pi 6) m.
    assert lag_m[-1] == pytest.approx(0.5 / (2 * math.pi * 6.0), rel=0.05)
    assert lag_px[-1] / 1000.0 == pytest.approx(lag_m[-1], rel=0.05)
    with pytest.raises(ValueError, match='unknown field'):
        HandTracker(speed_scales={'score': 1.0})
    with pytest.raises(ValueError, match='speed scale of vertices'):
        HandTracker(speed_scales={'vertices': 0.0})


def test_time_going_backwards_resets_tracks_and_invalid_hands_are_skipped():
    tracker = HandTracker()
    first = tracker.update([make_hand('right')], 100.0)[0].track_id
    again = tracker.update([make_hand('right')], 5.0)[0]  # bag restarted
    assert again.track_id != first
    bad = make_hand('left')
    bad.joints_3d[0, 0] = np.nan
    out = tracker.update([bad, make_hand('right')], 5.1)
    assert [h.handedness for h in out] == ['right'] and tracker.skipped_invalid == 1


def test_missing_vertices_and_bad_arguments():
    tracker = HandTracker()
    hand = make_hand('right')
    hand.vertices = None
    out = tracker.update([hand], 0.0)[0]
    assert out.vertices is None
    assert tracker.update([make_hand('right')], DT)[0].vertices.shape == (778, 3)
    with pytest.raises(ValueError, match='mode'):
        HandTracker(mode='nearest')
    with pytest.raises(ValueError, match='gate_m'):
        HandTracker(gate_m=0.0)
    with pytest.raises(ValueError, match='max_missing_s'):
        HandTracker(max_missing_s=-1)
    with pytest.raises(ValueError, match='stamp_s'):
        tracker.update([], float('nan'))
