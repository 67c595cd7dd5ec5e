"""The ROS-free pipeline: image in, metric hands out (real network forward, real smplx)."""

import numpy as np
import pytest
import torch

from hand_recon_ros.acr.params import params_to_mano
from hand_recon_ros.geometry import rotations
from hand_recon_ros.geometry.camera import LetterboxTransform, project_points, weak_perspective_project
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
from hand_recon_ros.runtime import resolve_device


@pytest.fixture(scope='module')
def reconstructor():
    torch.set_num_threads(1)
    return create_reconstructor(PipelineConfig(weights='untrained', device='cpu', backbone='resnet18', input_size=128))


def make_params(rng, s=1.4, tx=0.1, ty=-0.2):
    """A plausible 109-vector: camera, small finger rotations (as interleaved 6D), betas."""
    aa = torch.tensor(rng.normal(0, 0.2, (16, 3)), dtype=torch.float32)
    aa[0] = torch.tensor([np.pi * 0.9, 0.1, 0.2])
    rot6d = rotations.matrix_to_rot6d(rotations.axis_angle_to_matrix(aa), layout='interleaved')
    betas = torch.tensor(rng.normal(0, 0.5, 10), dtype=torch.float32)
    return torch.cat([torch.tensor([s, tx, ty]), rot6d.reshape(-1), betas])


def test_params_round_trip_through_6d():
    rng = np.random.default_rng(0)
    p = make_params(rng)[None]
    mano = params_to_mano(p)
    assert mano['global_orient'].shape == (1, 3) and mano['hand_pose'].shape == (1, 45)
    R = rotations.axis_angle_to_matrix(mano['global_orient'])
    assert torch.allclose(R, mano['root_rotation'], atol=1e-5)


@pytest.mark.parametrize('size', [(480, 640), (640, 480), (333, 517)])
def test_returned_3d_projects_onto_returned_2d_and_depth_is_metric(reconstructor, size):
    rng = np.random.default_rng(1)
    h, w = size
    K = np.array([[700.0, 0, w / 2 + 7], [0, 690.0, h / 2 - 5], [0, 0, 1]])
    params = torch.stack([make_params(rng, s=1.2, tx=0.15, ty=0.1), make_params(rng, s=1.6, tx=-0.2, ty=0.05)])
    hands = reconstructor.hands_from_params(params, ['right', 'left'], [0.9, 0.8], (h, w), K)
    assert [hd.handedness for hd in hands] == ['right', 'left']
    transform = LetterboxTransform(h, w, reconstructor.input_size)
    for hand, p in zip(hands, params):
        proj = project_points(hand.joints_3d.astype(np.float64), K)
        assert np.abs(proj - hand.keypoints_2d).max() < 1.0
        # The weak-perspective 2D of the network lands near the same pixels (perspective vs orthographic).
        rel = hand.joints_3d - hand.joints_3d[9]
        weak = transform.normalized_to_original(weak_perspective_project(rel, *p[:3].numpy()))
        hand_px = np.ptp(weak, axis=0).max()
        assert np.abs(weak - hand.keypoints_2d).max() < 0.1 * hand_px
        # Depth is metric from the focal length: the closed form 2 f / (s * S_pad) within a few percent.
        f = np.sqrt(K[0, 0] * K[1, 1])
        tz_expected = 2 * f / (float(p[0]) * max(h, w))
        assert hand.joints_3d[9, 2] == pytest.approx(tz_expected, rel=0.05)
        assert hand.vertices.shape == (778, 3) and np.isfinite(hand.vertices).all()
        assert np.allclose(hand.wrist_position, hand.joints_3d[0])
        assert np.linalg.norm(hand.wrist_orientation) == pytest.approx(1.0, abs=1e-5)


def test_reconstruct_runs_on_any_image_size(reconstructor):
    rng = np.random.default_rng(2)
    for shape in [(240, 320, 3), (97, 301, 3), (512, 200, 3)]:
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        frame = reconstructor.reconstruct(image, None)
        assert frame.image_size == shape[:2]
        assert set(frame.timings_ms) >= {'preprocess', 'network', 'decode', 'mano_and_camera'}
        for hand in frame.hands:
            hand.validate()
            assert hand.depth_source == 'fallback_fov'
        assert len({h.handedness for h in frame.hands}) == len(frame.hands)  # at most one per side


def test_detection_threshold_controls_output(reconstructor):
    image = np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    reconstructor.set_runtime(detection_threshold=0.999)
    assert reconstructor.reconstruct(image).hands == []
    reconstructor.set_runtime(detection_threshold=0.35)


def test_min_side_share_drops_exactly_the_peaks_the_other_side_claims_more(reconstructor):
    image = np.random.default_rng(5).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    # the share filter alone: no separated-pair search (its pairs are exempt from the filter)
    reconstructor.set_runtime(detection_threshold=0.0, refine=False, side_separation=0.0)
    try:
        every = reconstructor.reconstruct(image).hands
        assert len(every) == 2  # threshold 0: the best peak of each side
        shares = sorted(h.handedness_score for h in every)
        reconstructor.set_runtime(min_side_share=0.5)
        kept = reconstructor.reconstruct(image).hands
        expected = [h for h in every if h.handedness_score >= 0.5]
        assert [h.handedness for h in kept] == [h.handedness for h in expected]
        for a, b in zip(kept, expected):
            np.testing.assert_array_equal(a.keypoints_2d, b.keypoints_2d)
        # two peaks on one pixel share it: their shares add to 1, so at most one survives 0.5
        if abs(shares[0] + shares[1] - 1.0) < 1e-6:
            assert len(kept) == 1
    finally:
        reconstructor.set_runtime(detection_threshold=0.35, min_side_share=0.0, refine=True, side_separation=2.0)


def test_device_resolution_fails_loudly_without_cuda():
    assert resolve_device('cpu').type == 'cpu'
    if not torch.cuda.is_available():
        assert resolve_device('auto').type == 'cpu'
        with pytest.raises(RuntimeError, match='CUDA is not available'):
            resolve_device('cuda')
    with pytest.raises(ValueError):
        resolve_device('tpu')


def test_missing_weights_file_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match='weights file not found'):
        create_reconstructor(PipelineConfig(weights='/nonexistent/w.safetensors', device='cpu'))


def test_refinement_keeps_valid_hands_and_reports_only_known_factors(reconstructor):
    from hand_recon_ros.results import REFINE_FACTORS

    rng = np.random.default_rng(4)
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    # Two hands with nearly the same camera: overlapping in the image and in depth (a close pair).
    params = torch.stack([make_params(rng, s=1.3, tx=0.02, ty=0.0), make_params(rng, s=1.3, tx=-0.02, ty=0.0)])
    hands = reconstructor.hands_from_params(params, ['right', 'left'], [0.9, 0.9], (480, 640), K)
    before = [h.joints_3d.copy() for h in hands]
    feature = torch.randn(1, reconstructor.network.config.feature_dim)
    refined = reconstructor.refine_hands(hands, feature, K)
    assert [h.handedness for h in refined] == ['right', 'left']
    for hand, old in zip(refined, before):
        hand.validate()
        assert set(hand.refined_factors) <= set(REFINE_FACTORS)
        if not hand.refined_factors:
            assert np.array_equal(hand.joints_3d, old)
        proj = project_points(hand.joints_3d.astype(np.float64), K)
        assert np.abs(proj - hand.keypoints_2d).max() < 1.0


def test_refinement_is_skipped_for_distant_hands(reconstructor, monkeypatch):
    rng = np.random.default_rng(5)
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    params = torch.stack([make_params(rng, s=1.3, tx=0.6, ty=0.0), make_params(rng, s=1.3, tx=-0.6, ty=0.0)])
    hands = reconstructor.hands_from_params(params, ['right', 'left'], [0.9, 0.9], (480, 640), K)
    assert np.linalg.norm(hands[0].wrist_position - hands[1].wrist_position) > reconstructor.refine_gate_m

    def fail(*args, **kwargs):
        raise AssertionError('the refiner must not run for distant hands')

    monkeypatch.setattr(reconstructor.refiner, 'refine', fail)
    assert reconstructor.refine_hands(hands, torch.zeros(1, 1024), K) is hands


def test_bf16_precision_on_cpu_and_fp16_refused():
    rec = create_reconstructor(
        PipelineConfig(
            weights='untrained',
            device='cpu',
            backbone='resnet18',
            input_size=128,
            precision='bf16',
            detection_threshold=0.0,
        )
    )
    image = np.random.default_rng(6).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frame = rec.reconstruct(image)
    assert len(frame.hands) == 2  # threshold 0: the top peak of each side is taken
    for hand in frame.hands:
        hand.validate()
        assert hand.joints_3d.dtype == np.float32
    with pytest.raises(ValueError, match='fp16 needs CUDA'):
        create_reconstructor(PipelineConfig(device='cpu', precision='fp16'))


@pytest.mark.parametrize(('default', 'requested', 'expected'), [(2, 0, 1), (8, 0, 7), (1, 0, 1), (2, 3, 3), (8, 1, 1)])
def test_auto_threads_leave_one_core_to_the_ros_side(monkeypatch, default, requested, expected):
    from hand_recon_ros import runtime

    monkeypatch.setattr(runtime, 'DEFAULT_TORCH_THREADS', default)
    assert runtime.resolve_num_threads(requested) == expected
    for bad in (-1, 1.5, True, '2'):
        with pytest.raises(ValueError, match='num_threads'):
            runtime.resolve_num_threads(bad)


def test_model_info_names_the_torch_threads():
    previous = torch.get_num_threads()
    try:
        rec = create_reconstructor(PipelineConfig(weights='untrained', device='cpu', input_size=64, num_threads=1))
        assert rec.info()['num_threads'] == 1
    finally:
        torch.set_num_threads(previous)


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from hand_recon_ros import runtime

    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    monkeypatch.setattr(runtime, 'cpu_has_native_bf16', lambda: True)
    assert runtime.resolve_precision('auto', cpu) == 'bf16'
    assert runtime.resolve_precision('auto', cuda) == 'fp32'  # fp16 on a GPU is asked for, never automatic
    monkeypatch.setattr(runtime, 'cpu_has_native_bf16', lambda: False)
    assert runtime.resolve_precision('auto', cpu) == 'fp32'
    assert runtime.resolve_precision('bf16', cpu) == 'bf16'
    with pytest.raises(ValueError, match='fp16 needs CUDA'):
        runtime.resolve_precision('fp16', cpu)
    with pytest.raises(ValueError, match='precision must be'):
        runtime.resolve_precision('fp8', cpu)
    # the model info names the precision that runs, never 'auto'
    rec = create_reconstructor(PipelineConfig(weights='untrained', device='cpu', input_size=64))
    assert PipelineConfig().precision == 'auto' and rec.info()['precision'] == 'fp32'


def test_bf16_keeps_the_shipped_models_answers():
    """precision bf16 (autocast over the network only) against fp32 with the shipped trained model on synthetic
    hand frames: same detections and scores, hand shape and 2D keypoints within fractions of a mm / px."""
    from hand_recon_train.synth import SynthConfig, SynthDataset

    data = SynthDataset(SynthConfig(image_size=640, supersample=1), seed=4242, length=4)
    recs = {p: create_reconstructor(PipelineConfig(device='cpu', precision=p, refine=False)) for p in ('fp32', 'bf16')}
    assert recs['fp32'].weights_sha256 and recs['fp32'].weights_sha256 == recs['bf16'].weights_sha256
    compared = 0
    for i in range(4):
        raw = data.raw(i)
        image = np.ascontiguousarray(raw['image'][80:560])
        K = raw['K'].astype(np.float64).copy()
        K[1, 2] -= 80.0
        out = {p: {h.handedness: h for h in r.reconstruct(image, K).hands} for p, r in recs.items()}
        for side in set(out['fp32']) & set(out['bf16']):
            a, b = out['fp32'][side], out['bf16'][side]
            root_relative = (a.joints_3d - a.joints_3d[9]) - (b.joints_3d - b.joints_3d[9])
            assert np.abs(root_relative).max() < 0.002  # m
            assert np.abs(a.keypoints_2d - b.keypoints_2d).max() < 3.0  # px
            assert np.abs(a.joints_3d - b.joints_3d).max() < 0.02  # m (depth is the sensitive part)
            assert abs(a.score - b.score) < 0.01
            compared += 1
    assert compared >= 4


def test_batch_of_cameras_equals_one_by_one():
    rec = create_reconstructor(
        PipelineConfig(
            weights='untrained',
            device='cpu',
            backbone='resnet18',
            input_size=128,
            detection_threshold=0.0,
            refine=False,
        )
    )
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in [(120, 160, 3), (200, 100, 3), (90, 90, 3)]]
    Ks = [
        np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]]),
        None,
        np.array([[100.0, 0, 45], [0, 100.0, 45], [0, 0, 1]]),
    ]
    batched = rec.reconstruct_batch(images, Ks)
    for image, K, frame in zip(images, Ks, batched):
        single = rec.reconstruct(image, K)
        assert frame.image_size == single.image_size
        assert [h.handedness for h in frame.hands] == [h.handedness for h in single.hands]
        for a, b in zip(frame.hands, single.hands):
            np.testing.assert_allclose(a.joints_3d, b.joints_3d, atol=1e-3)
    assert batched[1].hands[0].depth_source == 'fallback_fov'
    with pytest.raises(ValueError):
        rec.reconstruct_batch(images, Ks[:2])


def test_network_and_finish_on_two_threads_give_the_one_thread_answers():
    """The node's pipelined mode: finish() of frame n on one thread while run_network() of frame n+1 runs on
    another, with a runtime change in between, publishes exactly what reconstruct() does frame by frame."""
    import queue
    import threading

    rec = create_reconstructor(
        PipelineConfig(weights='untrained', device='cpu', input_size=128, detection_threshold=0.0, refine=True)
    )
    rng = np.random.default_rng(11)
    images = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(6)]
    K = np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    rotations = [0, 0, 0, 90, 90, 0]  # image_rotation changed between frames, as a parameter update does

    expected = []
    for image, degrees in zip(images, rotations):
        rec.set_runtime(image_rotation=degrees)
        expected.append(rec.reconstruct(image, K))
    assert any('refine' in frame.timings_ms for frame in expected), 'the refinement never ran: test is void'

    handoff: queue.Queue = queue.Queue(maxsize=1)
    finished = []

    def finisher():
        while (item := handoff.get()) is not None:
            finished.append(rec.finish(item))

    thread = threading.Thread(target=finisher)
    thread.start()
    for image, degrees in zip(images, rotations):
        rec.set_runtime(image_rotation=degrees)
        handoff.put(rec.run_network([image], [K])[0])
    handoff.put(None)
    thread.join(60)
    assert not thread.is_alive()
    assert len(finished) == len(expected)
    for got, want in zip(finished, expected):
        assert got.image_size == want.image_size
        assert [h.handedness for h in got.hands] == [h.handedness for h in want.hands]
        for a, b in zip(got.hands, want.hands):
            assert a.refined_factors == b.refined_factors
            np.testing.assert_allclose(a.joints_3d, b.joints_3d, atol=1e-5)
            np.testing.assert_allclose(a.keypoints_2d, b.keypoints_2d, atol=1e-3)
