"""Hands redrawn from crop answers (hand_recon_ros/landmarks/hand_update.py): the real stand-in hand model fitted to
the answers' keypoints and 3D, published 2D = projection of the published 3D, dropped and kept hands."""

import dataclasses

import numpy as np
import pytest
import torch

from hand_recon_ros.detection_metrics import keypoint_box
from hand_recon_ros.geometry.camera import project_points
from hand_recon_ros.hand_model import load_hand_model
from hand_recon_ros.landmarks.crop_stage import LandmarkAnswer
from hand_recon_ros.landmarks.hand_update import (
    LANDMARK_FACTOR,
    MIN_PRESENCE,
    crop_sides,
    landmark_hands,
    same_hand_answers,
)
from hand_recon_ros.landmarks.palm_detection import PalmDetection
from hand_recon_ros.results import HandResult

K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope='module')
def hand_model():
    torch.set_num_threads(1)
    return load_hand_model()


def true_hand(hand_model, side, transl, seed):
    rng = np.random.default_rng(seed)
    out = hand_model(
        side,
        torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float32),
        torch.tensor(rng.normal(0, 0.05, (1, 45)), dtype=torch.float32),  # near the model's mean pose
        torch.zeros(1, 10),
        torch.tensor([transl], dtype=torch.float32),
    )
    return out['joints'][0].numpy().astype(np.float64)


def acr_hand(side, joints):
    """What ACR would have published: here a flat guess 3 cm off, with the wrong fingers."""
    guess = joints[[0]] + (joints - joints[[0]]) * np.array([1.0, 0.2, 1.0]) + [0.03, 0.0, 0.0]
    keypoints = project_points(guess, K)
    return HandResult(
        handedness=side,
        score=0.9,
        joints_3d=guess.astype(np.float32),
        keypoints_2d=keypoints.astype(np.float32),
        joint_confidence=np.full(21, 0.9, np.float32),
        wrist_position=guess[0].astype(np.float32),
        wrist_orientation=np.array([0, 0, 0, 1], np.float32),
    )


class KnownAnswers:
    """Stands in for the crop stage: answers the true hands' projections and root-relative 3D."""

    def __init__(self, truths, presences, right_probabilities=None, from_palm=None, follows=None):
        self.truths, self.presences = truths, presences
        self.right = right_probabilities or [0.5] * len(truths)  # 0.5: the crop cannot tell the side
        self.from_palm = from_palm or [False] * len(truths)
        self.follows = follows or [-1] * len(truths)  # the remembered hand each answer's crop followed
        self.calls = 0
        self.remembered = []  # (answer, note) pairs the last frame left to follow
        self.carried = []  # followed hands no found hand overlaps (CropStage.carried)
        self.unused_palms = []

    def run(self, image_bgr, keypoints, free_palms=True):
        self.calls += 1
        assert len(keypoints) == len(self.truths)
        return [
            LandmarkAnswer(project_points(t, K), p, r, t - t[0], 100.0, from_palm=f, follows=j)
            for t, p, r, f, j in zip(self.truths, self.presences, self.right, self.from_palm, self.follows)
        ]

    def remember(self, answers, image_size, notes=None):
        self.remembered = list(zip(answers, notes or [None] * len(answers)))

    def note(self, answer):
        return self.remembered[answer.follows][1] if 0 <= answer.follows < len(self.remembered) else None


def test_hands_are_redrawn_from_the_answers_and_stay_one_hand(hand_model):
    truths = [true_hand(hand_model, 'left', (-0.12, 0.02, 0.55), 1), true_hand(hand_model, 'right', (0.1, 0.0, 0.6), 2)]
    hands = [acr_hand('left', truths[0]), acr_hand('right', truths[1])]
    image = np.zeros((480, 640, 3), np.uint8)
    out, answers = landmark_hands(image, hands, K, KnownAnswers(truths, [0.9, 0.9]), hand_model)
    assert [h.handedness for h in out] == ['left', 'right'] and len(answers) == 2
    for hand, truth, before in zip(out, truths, hands):
        assert LANDMARK_FACTOR in hand.refined_factors
        # the fitted hand: fingers and placement from the answers (ACR's guess was 3 cm off, fingers flattened)
        error = np.linalg.norm(hand.joints_3d - truth, axis=1)
        # (depth from a 2D fit: within ~3 % here)
        assert error.mean() < 0.02 and error.mean() < np.linalg.norm(before.joints_3d - truth, axis=1).mean() / 2
        np.testing.assert_allclose(hand.keypoints_2d, project_points(hand.joints_3d.astype(np.float64), K), atol=1e-3)
        np.testing.assert_allclose(hand.wrist_position, hand.joints_3d[0])
        assert hand.vertices.shape[1] == 3 and hand.mano_pose.shape == (48,)
        assert hand.score == before.score and hand.handedness_score == before.handedness_score
        hand.validate()


def a_read_pair(hand_model, seeds):
    """(true joints, ACR's rough hands, a blank image, a stage whose crops read both hands surely, sides clear)."""
    truths = [
        true_hand(hand_model, 'left', (-0.12, 0.02, 0.55), seeds[0]),
        true_hand(hand_model, 'right', (0.1, 0.0, 0.6), seeds[1]),
    ]
    hands = [acr_hand('left', truths[0]), acr_hand('right', truths[1])]
    stage = KnownAnswers(truths, [0.9, 0.9], right_probabilities=[0.1, 0.9])
    return truths, hands, np.zeros((480, 640, 3), np.uint8), stage


@pytest.fixture
def fit_calls(monkeypatch):
    """(started from a previous fit, LM iterations) of every fit landmark_hands runs in the test."""
    from hand_recon_ros.landmarks import hand_update

    calls = []
    fit_keypoints = hand_update.fit_keypoints

    def recording_fit(*args, **kwargs):
        result = fit_keypoints(*args, **kwargs)
        calls.append((kwargs.get('start') is not None, int(result.iterations.max())))
        return result

    monkeypatch.setattr(hand_update, 'fit_keypoints', recording_fit)
    return calls


def test_a_followed_hand_starts_its_fit_from_the_previous_frames(hand_model, monkeypatch, fit_calls):
    from hand_recon_ros.hand_model.fit import FitStart
    from hand_recon_ros.landmarks import hand_update

    calls = fit_calls
    truths, hands, image, stage = a_read_pair(hand_model, seeds=(21, 22))
    first, _ = landmark_hands(image, hands, K, stage, hand_model)
    # the redrawn hands are remembered, each with its side and the start that continues its fit
    assert [(a.follows, n[0], type(n[1])) for a, n in stage.remembered] == [
        (-1, 'left', FitStart),
        (-1, 'right', FitStart),
    ]
    assert calls == [(False, calls[0][1]), (False, calls[1][1])]
    # the next frame: the hands moved 1 cm, each crop followed its hand: each fit starts from that hand's
    moved = [t + [0.01, 0.0, 0.0] for t in truths]
    calls.clear()
    follow = KnownAnswers(moved, [0.9, 0.9], right_probabilities=[0.1, 0.9], follows=[0, 1])
    follow.remembered = stage.remembered
    second, _ = landmark_hands(image, hands, K, follow, hand_model)
    assert [c[0] for c in calls] == [True, True] and all(c[1] < 6 for c in calls), calls
    for hand, truth in zip(second, moved):
        assert np.linalg.norm(hand.joints_3d - truth, axis=1).mean() < 0.02
    # a note of the other side is no start; a start that misses is done again from scratch (the closer kept)
    calls.clear()
    crossed = KnownAnswers(moved, [0.9, 0.9], right_probabilities=[0.1, 0.9], follows=[1, 0])
    crossed.remembered = stage.remembered
    landmark_hands(image, hands, K, crossed, hand_model)
    assert [c[0] for c in calls] == [False, False]
    calls.clear()
    monkeypatch.setattr(hand_update, 'WARM_MISS', -1.0)
    follow.remembered = stage.remembered
    again, _ = landmark_hands(image, hands, K, follow, hand_model)
    assert [c[0] for c in calls] == [True, False, True, False]
    for hand, before in zip(again, second):
        np.testing.assert_allclose(hand.joints_3d, before.joints_3d, atol=0.01)


def test_a_carried_hand_is_published_with_its_side_score_and_fit(hand_model, fit_calls):
    truths, hands, image, stage = a_read_pair(hand_model, seeds=(31, 32))
    first, _ = landmark_hands(image, hands, K, stage, hand_model, new_hands=True)
    right_note = stage.remembered[1][1]
    assert right_note[0] == 'right' and right_note[2] == pytest.approx(first[1].score)
    # the next frame: ACR found the left hand only; the right one is carried (its crop still reads it)
    follow = KnownAnswers(truths[:1], [0.9], right_probabilities=[0.1], follows=[0])
    follow.remembered = stage.remembered
    carried = LandmarkAnswer(project_points(truths[1], K), 0.95, 0.5, truths[1] - truths[1][0], 100.0, follows=1)
    follow.carried = [carried]
    fit_calls.clear()
    out, answers = landmark_hands(image, hands[:1], K, follow, hand_model, new_hands=True)
    assert [h.handedness for h in out] == ['left', 'right'] and len(answers) == 1
    assert [started for started, _ in fit_calls] == [True, True]
    new = out[1]
    # the side it was published with (its crop here cannot tell: 0.5), its score times the crop's presence
    assert new.handedness_score == pytest.approx(right_note[3]) and new.score == pytest.approx(right_note[2] * 0.95)
    assert LANDMARK_FACTOR in new.refined_factors and np.linalg.norm(new.joints_3d - truths[1], axis=1).mean() < 0.02
    assert [a.follows for a, _ in follow.remembered] == [0, 1]  # both followed on into the frame after
    # not carried: without new hands; onto a hand already read; of a side a found hand has
    assert len(landmark_hands(image, hands[:1], K, follow, hand_model)[0]) == 1
    follow.remembered = stage.remembered
    follow.carried = [dataclasses.replace(carried, keypoints_2d=project_points(truths[0], K))]
    assert len(landmark_hands(image, hands[:1], K, follow, hand_model, new_hands=True)[0]) == 1
    follow.remembered = stage.remembered
    follow.carried = [dataclasses.replace(carried, follows=0)]  # the note of the left hand
    assert [h.handedness for h in landmark_hands(image, hands[:1], K, follow, hand_model, new_hands=True)[0]] == [
        'left'
    ]


def test_low_presence_drops_the_hand_and_bad_settings_are_refused(hand_model):
    truths = [true_hand(hand_model, 'left', (-0.12, 0.02, 0.55), 3), true_hand(hand_model, 'right', (0.1, 0.0, 0.6), 4)]
    hands = [acr_hand('left', truths[0]), acr_hand('right', truths[1])]
    image = np.zeros((480, 640, 3), np.uint8)
    out, _ = landmark_hands(image, hands, K, KnownAnswers(truths, [0.05, 0.9]), hand_model, min_presence=0.5)
    assert [h.handedness for h in out] == ['right']
    # the default floor drops a hand its crop barely calls a hand, unless a palm detection lies on it
    out, _ = landmark_hands(image, hands, K, KnownAnswers(truths, [0.3, 0.9]), hand_model)
    assert [h.handedness for h in out] == ['right'] and MIN_PRESENCE == 0.5
    on_palm = KnownAnswers(truths, [0.3, 0.9], from_palm=[True, False])
    out, _ = landmark_hands(image, hands, K, on_palm, hand_model)
    assert [h.handedness for h in out] == ['left', 'right'] and LANDMARK_FACTOR in out[0].refined_factors
    out, _ = landmark_hands(image, hands, K, KnownAnswers(truths, [0.3, 0.9]), hand_model, min_presence=0.0)
    assert len(out) == 2
    with pytest.raises(ValueError, match='min_presence'):
        landmark_hands(image, hands, K, KnownAnswers(truths, [0.9, 0.9]), hand_model, min_presence=1.5)


def test_a_degenerate_answer_keeps_acrs_hand(hand_model):
    truth = true_hand(hand_model, 'right', (0.0, 0.0, 0.5), 5)
    hand = acr_hand('right', truth)

    class OneSpot(KnownAnswers):
        def run(self, image_bgr, keypoints, free_palms=True):
            return [LandmarkAnswer(np.full((21, 2), 100.0), 0.9, 0.5, np.zeros((21, 3)), 8.0)]

    out, _ = landmark_hands(np.zeros((480, 640, 3), np.uint8), [hand], K, OneSpot([truth], [0.9]), hand_model)
    assert len(out) == 1 and out[0] is hand and LANDMARK_FACTOR not in out[0].refined_factors


def test_the_pipeline_redraws_its_hands_when_asked():
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
    from hand_recon_train.synth import SynthConfig, SynthDataset

    # the shipped model on a synthetic two-hand frame whose hands the crop network reads (seed 4242, frame 1)
    reconstructor = create_reconstructor(PipelineConfig(device='cpu', refine=False, landmarks=True))
    assert reconstructor.info()['landmarks'] is True
    # landmark_runtime auto: onnxruntime where the crop network runs fp32 on the CPU (onnx_runner.resolve_runtime)
    expected = 'torch' if reconstructor._landmark_dtype() is not None else 'onnxruntime'
    assert reconstructor.info()['landmark_runner'] == expected
    raw = SynthDataset(SynthConfig(image_size=640, supersample=1), seed=4242, length=2).raw(1)
    image = np.ascontiguousarray(raw['image'][80:560])
    K = raw['K'].astype(np.float64).copy()
    K[1, 2] -= 80.0
    result = reconstructor.reconstruct(image, K)
    assert 'landmarks' in result.timings_ms and len(result.hands) == 2
    for hand in result.hands:
        hand.validate()
        assert LANDMARK_FACTOR in hand.refined_factors
        np.testing.assert_allclose(hand.keypoints_2d, project_points(hand.joints_3d.astype(np.float64), K), atol=0.05)
    # the palm detector ran on the frame (on by default with landmarks); without it the hands are still redrawn
    info = reconstructor.info()
    assert info['landmark_palms'] is True and info['landmark_new_hands'] is True
    assert reconstructor.landmark_stage().palms is reconstructor.palm_detector()
    reconstructor.set_runtime(landmark_palms=False)
    no_palms = reconstructor.reconstruct(image, K)
    assert reconstructor.landmark_stage().palms is None and reconstructor.info()['landmark_new_hands'] is False
    assert len(no_palms.hands) == 2 and all(LANDMARK_FACTOR in h.refined_factors for h in no_palms.hands)
    reconstructor.set_runtime(landmark_palms=True)
    # video (landmark_tracking): the next frame's crops follow this frame's hands, the palm detector rests
    stage, palms = reconstructor.landmark_stage(), reconstructor.palm_detector()
    runs = stage.palm_runs
    reconstructor.set_runtime(landmark_tracking=True)
    tracked_before = stage.tracked_crops
    first = reconstructor.reconstruct(image, K)
    assert stage.palm_runs == runs + 1 and stage.tracked_crops == tracked_before
    crops = stage.crops_run
    second = reconstructor.reconstruct(image, K)
    assert stage.tracked_crops == tracked_before + 2 and stage.crops_run == crops + 2 and stage.palm_runs == runs + 1
    assert [h.handedness for h in second.hands] == [h.handedness for h in first.hands]
    for hand, before in zip(second.hands, first.hands):
        assert LANDMARK_FACTOR in hand.refined_factors
        # the same hands, read from crops placed a little differently (the stand-in's renders read unsteadily)
        shift = np.abs(hand.keypoints_2d - before.keypoints_2d)
        assert np.median(shift) < 0.03 * np.ptp(before.keypoints_2d, axis=0).max()
    # a settings change starts over: nothing followed, the palm detector runs again
    reconstructor.set_runtime(landmark_tracking=False)
    reconstructor.set_runtime(landmark_tracking=True)
    reconstructor.reconstruct(image, K)
    assert stage.tracked_crops == tracked_before + 2 and stage.palm_runs == runs + 2 and palms is stage.palms
    reconstructor.set_runtime(landmark_tracking=False)
    # no crop finds a hand on noise: the untrained network's hands are published as ACR drew them, with no fit
    noise_pipeline = create_reconstructor(
        PipelineConfig(
            weights='untrained',
            device='cpu',
            backbone='efficientnet_lite0',
            input_size=128,
            detection_threshold=0.0,
            landmarks=True,
            landmark_min_presence=0.0,  # (the default drops hands whose crops see none: below)
        )
    )
    noise = np.random.default_rng(7).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    K_noise = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
    found = noise_pipeline.reconstruct(noise, K_noise)
    assert 'landmarks' in found.timings_ms and found.hands
    assert all(LANDMARK_FACTOR not in h.refined_factors for h in found.hands)
    noise_pipeline.set_runtime(landmark_min_presence=MIN_PRESENCE)
    assert noise_pipeline.reconstruct(noise, K_noise).hands == []
    # a presence floor of 1 drops every hand
    reconstructor.set_runtime(landmark_min_presence=1.0)
    assert reconstructor.reconstruct(image, K).hands == []
    reconstructor.set_runtime(landmarks=False, landmark_min_presence=0.0)
    plain = reconstructor.reconstruct(image, K)
    assert 'landmarks' not in plain.timings_ms and all(LANDMARK_FACTOR not in h.refined_factors for h in plain.hands)
    for bad in ({'landmark_passes': 0}, {'landmark_passes': 4}, {'landmark_min_presence': -0.1}):
        with pytest.raises(ValueError):
            reconstructor.set_runtime(landmarks=True, **bad)
    assert reconstructor.landmarks_enabled is False  # a refused change changes nothing


def test_a_redrawn_hand_is_flagged_in_the_message(hand_model):
    msg_module = pytest.importorskip('hand_recon_ros.msg')
    from hand_recon_ros.ros.conversions import hand_msg

    truth = true_hand(hand_model, 'right', (0.0, 0.0, 0.5), 6)
    hand = acr_hand('right', truth)
    hand.refined_factors = ('fingers', LANDMARK_FACTOR)
    msg = hand_msg(hand)
    assert msg.refined_factors == msg_module.Hand.REFINED_FINGERS | msg_module.Hand.REFINED_LANDMARKS == 40


def test_two_crops_that_read_the_same_hand_leave_the_misread_one_to_acr(hand_model):
    truths = [
        true_hand(hand_model, 'left', (-0.02, 0.0, 0.55), 8),
        true_hand(hand_model, 'right', (0.03, 0.0, 0.55), 9),
    ]
    hands = [acr_hand('left', truths[0]), acr_hand('right', truths[1])]
    # both crops answer the right hand: the left hand's answer moved far from its own keypoints
    answers = KnownAnswers([truths[1], truths[1]], [0.9, 0.9])
    assert same_hand_answers(hands, answers.run(None, [h.keypoints_2d for h in hands])) == {0}
    out, _ = landmark_hands(np.zeros((480, 640, 3), np.uint8), hands, K, answers, hand_model)
    assert out[0] is hands[0] and LANDMARK_FACTOR not in out[0].refined_factors
    assert LANDMARK_FACTOR in out[1].refined_factors
    # apart, nobody is misread
    apart = KnownAnswers(truths, [0.9, 0.9])
    assert same_hand_answers(hands, apart.run(None, [h.keypoints_2d for h in hands])) == set()
    # a crop placed on a detected palm wins over one placed around ACR's keypoints, however far either moved
    read = answers.run(None, [h.keypoints_2d for h in hands])
    on_palm = [dataclasses.replace(read[0], from_palm=True), read[1]]
    assert same_hand_answers(hands, on_palm) == {1}


def test_a_clear_crop_side_replaces_acrs_and_the_fit_uses_it(hand_model):
    truth = true_hand(hand_model, 'right', (0.05, 0.0, 0.5), 7)
    wrong = acr_hand('left', truth)  # ACR called a right hand left
    image = np.zeros((480, 640, 3), np.uint8)
    out, _ = landmark_hands(image, [wrong], K, KnownAnswers([truth], [0.95], [0.9]), hand_model)
    assert out[0].handedness == 'right' and out[0].handedness_score == pytest.approx(0.9)
    assert np.linalg.norm(out[0].joints_3d - truth, axis=1).mean() < 0.02  # fitted as a right hand
    kept, _ = landmark_hands(
        image, [wrong], K, KnownAnswers([truth], [0.95], [0.9]), hand_model, sides_from_crops=False
    )
    assert kept[0].handedness == 'left'


def test_crop_sides_keep_acrs_where_the_crop_is_unsure_or_a_pair_would_get_one_side():
    truth = np.zeros((21, 3))
    left, right = acr_hand('left', truth + [0.0, 0.0, 0.5]), acr_hand('right', truth + [0.1, 0.0, 0.5])
    left.handedness_score = right.handedness_score = 0.6

    def answers(*pairs):  # (presence, right probability) per hand
        return [LandmarkAnswer(np.zeros((21, 2)), p, r, np.zeros((21, 3)), 50.0) for p, r in pairs]

    # a clear crop turns the side; an unsure one (near 0.5) or one with no hand in it (low presence) does not
    assert crop_sides([left], answers((0.9, 0.95)), [0]) == [('right', 0.95)]
    assert crop_sides([left], answers((0.9, 0.6)), [0]) == [('left', 0.6)]
    assert crop_sides([left], answers((0.2, 0.95)), [0]) == [('left', 0.6)]
    assert crop_sides([left], answers((0.9, 0.95)), []) == [('left', 0.6)]  # not usable (e.g. a misread crop)
    # a pair whose sides both turn is swapped; one where both crops say 'right' keeps ACR's left and right
    swapped = crop_sides([left, right], answers((0.9, 0.9), (0.9, 0.1)), [0, 1])
    assert swapped == [('right', 0.9), ('left', pytest.approx(0.9))]
    assert crop_sides([left, right], answers((0.9, 0.9), (0.9, 0.9)), [0, 1]) == [('left', 0.6), ('right', 0.6)]
    # only one crop reads its hand clearly: it decides, and the pair stays a left and a right
    one = crop_sides([left, right], answers((0.9, 0.95), (0.2, 0.9)), [0, 1])
    assert one == [('right', 0.95), ('left', 0.95)]
    assert crop_sides([left, right], answers((0.9, 0.95), (0.9, 0.95)), [0]) == [('right', 0.95), ('left', 0.95)]
    # two hands ACR called the same side (two people's right hands): each crop decides for its own hand
    other_right = acr_hand('right', truth + [0.3, 0.0, 0.5])
    assert crop_sides([right, other_right], answers((0.9, 0.1), (0.9, 0.5)), [0, 1]) == [
        ('left', pytest.approx(0.9)),
        ('right', 0.5),  # ACR's own score
    ]


class PalmAnswers(KnownAnswers):
    """KnownAnswers plus palm detections no hand took, each read as the given true hand."""

    def __init__(self, truths, presences, right_probabilities, palm_truths, palm_right):
        super().__init__(truths, presences, right_probabilities)
        self.palm_truths, self.palm_right = palm_truths, palm_right
        self.unused_palms = [
            PalmDetection(box=keypoint_box(project_points(t, K)), keypoints=project_points(t, K)[:7], score=0.9)
            for t in palm_truths
        ]

    def read_palms(self, image_bgr, palms):
        assert len(palms) == len(self.palm_truths)
        return [
            LandmarkAnswer(project_points(t, K), 0.95, r, t - t[0], 100.0, from_palm=True)
            for t, r in zip(self.palm_truths, self.palm_right)
        ]


def test_a_free_palm_read_as_a_hand_of_a_free_side_becomes_a_new_hand(hand_model):
    found = true_hand(hand_model, 'right', (0.1, 0.0, 0.6), 11)
    missed = true_hand(hand_model, 'left', (-0.15, 0.05, 0.7), 12)  # a hand ACR did not find
    hands = [acr_hand('right', found)]
    image = np.zeros((480, 640, 3), np.uint8)
    stage = PalmAnswers([found], [0.9], [0.9], [missed], [0.05])  # the palm's crop: clearly a left hand
    out, answers = landmark_hands(image, hands, K, stage, hand_model, new_hands=True)
    assert [h.handedness for h in out] == ['right', 'left'] and len(answers) == 1
    new = out[1]
    assert new.refined_factors == (LANDMARK_FACTOR,) and new.score == pytest.approx(0.9 * 0.95)
    assert np.linalg.norm(new.joints_3d - missed, axis=1).mean() < 0.02  # placed and posed by its fit
    new.validate()
    # off by default; a side already taken, an unsure side, or a palm on a hand already read: no new hand
    assert len(landmark_hands(image, hands, K, stage, hand_model)[0]) == 1
    same_side = PalmAnswers([found], [0.9], [0.9], [missed], [0.95])
    assert len(landmark_hands(image, hands, K, same_side, hand_model, new_hands=True)[0]) == 1
    unsure = PalmAnswers([found], [0.9], [0.9], [missed], [0.6])
    assert len(landmark_hands(image, hands, K, unsure, hand_model, new_hands=True)[0]) == 1
    twice = PalmAnswers([found], [0.9], [0.9], [found], [0.05])
    assert len(landmark_hands(image, hands, K, twice, hand_model, new_hands=True)[0]) == 1
    # a presence floor applies to new hands too (the palm crop's 0.95 is under 0.96)
    sure = PalmAnswers([found], [0.97], [0.9], [missed], [0.05])
    assert len(landmark_hands(image, hands, K, sure, hand_model, min_presence=0.96, new_hands=True)[0]) == 1
    assert len(landmark_hands(image, hands, K, sure, hand_model, min_presence=0.9, new_hands=True)[0]) == 2


def test_a_found_hand_whose_crops_saw_nothing_gives_its_side_to_a_palm_hand(hand_model):
    found = true_hand(hand_model, 'right', (0.1, 0.0, 0.6), 13)
    face = true_hand(hand_model, 'left', (-0.05, -0.1, 0.6), 14)  # ACR's 'left hand' on a face
    missed = true_hand(hand_model, 'left', (-0.15, 0.05, 0.7), 15)
    hands = [acr_hand('right', found), acr_hand('left', face)]
    image = np.zeros((480, 640, 3), np.uint8)
    stage = PalmAnswers([found, face], [0.9, 0.05], [0.9, 0.5], [missed], [0.05])
    out, _ = landmark_hands(image, hands, K, stage, hand_model, new_hands=True)
    assert [h.handedness for h in out] == ['right', 'left'] and hands[1] not in out
    assert np.linalg.norm(out[1].joints_3d - missed, axis=1).mean() < 0.02
    # with no presence floor, a left hand the crop saw (presence 0.3, not sure of the side) keeps its side
    seen = PalmAnswers([found, face], [0.9, 0.3], [0.9, 0.5], [missed], [0.05])
    out, _ = landmark_hands(image, hands, K, seen, hand_model, min_presence=0.0, new_hands=True)
    assert len(out) == 2 and all(np.linalg.norm(h.joints_3d - missed, axis=1).mean() > 0.02 for h in out)
    # the default floor (0.5) drops it, and the palm's sure left hand takes the side
    out, _ = landmark_hands(image, hands, K, seen, hand_model, new_hands=True)
    assert [h.handedness for h in out] == ['right', 'left'] and hands[1] not in out
    assert np.linalg.norm(out[1].joints_3d - missed, axis=1).mean() < 0.02


def test_a_depth_image_gives_the_fit_the_hands_measured_3d(hand_model):
    """With an RGB-D camera the fit follows the depth image's 3D where it reads the hand, not the crop network's
    own 3D: here the crop answers a flattened hand (every joint at the wrist's depth) and the depth image reads
    each joint's skin 8 mm in front of it."""
    truths, hands, image, _ = a_read_pair(hand_model, seeds=(41, 42))

    class FlatAnswers(KnownAnswers):
        def run(self, image_bgr, keypoints, free_palms=True):
            answers = super().run(image_bgr, keypoints, free_palms)
            return [dataclasses.replace(a, world_landmarks=a.world_landmarks * [1.0, 1.0, 0.0]) for a in answers]

    depth = np.zeros((480, 640), np.float32)
    for truth in truths:
        for (u, v), z in zip(project_points(truth, K), truth[:, 2]):
            depth[int(v) - 1 : int(v) + 2, int(u) - 1 : int(u) + 2] = z - 0.008
    errors = {}
    for name, depth_m in (('crop 3D', None), ('depth 3D', depth)):
        stage = FlatAnswers(truths, [0.9, 0.9], right_probabilities=[0.1, 0.9])
        out, _ = landmark_hands(image, hands, K, stage, hand_model, depth_m=depth_m)
        errors[name] = np.mean(
            [np.linalg.norm((h.joints_3d - h.joints_3d[0]) - (t - t[0]), axis=1).mean() for h, t in zip(out, truths)]
        )
    # wrist-relative error: the flattened crop 3D bends the fitted fingers; the measured depth straightens them
    assert errors['depth 3D'] < 0.6 * errors['crop 3D'] and errors['depth 3D'] < 0.01, errors
