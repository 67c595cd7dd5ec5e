"""The crop stage (hand_recon_ros/landmarks/crop_stage.py): upright crops around found hands, answers mapped back
to image pixels, the side convention of the landmark network."""

import numpy as np
import pytest
import torch
from torch import nn

from hand_recon_ros.landmarks import load_landmark_model
from hand_recon_ros.landmarks.crop_stage import CropStage, crop_affine, crop_from_keypoints, crop_from_landmarks
from hand_recon_ros.landmarks.mediapipe_port import INPUT_SIZE


def upright_hand(seed=0, wrist=(300.0, 360.0), length=90.0):
    """21 keypoints: wrist below the middle finger's base, the rest scattered around that base."""
    rng = np.random.default_rng(seed)
    points = np.zeros((21, 2))
    points[0] = wrist
    base = np.array(wrist) - [0.0, length]
    points[1:] = base + rng.normal(0, length / 3, (20, 2))
    points[9] = base
    return points


def turn(points, degrees, centre=(320.0, 240.0)):
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - centre) @ rot.T + centre


def to_crop(points, affine):
    return points @ affine[:, :2].T + affine[:, 2]


def test_an_upright_hand_gives_an_upright_unmirrored_crop():
    points = upright_hand()
    centre, side, angle = crop_from_keypoints(points, scale=2.0, shift_up=0.1)
    affine = crop_affine(centre, side, angle)
    crop = to_crop(points, affine)
    assert np.linalg.det(affine[:, :2]) > 0  # no mirror: a left hand stays a left hand
    assert crop[0, 1] > crop[9, 1] and crop[0, 0] == pytest.approx(crop[9, 0], abs=1e-6)  # wrist below, in line
    # the keypoints' extent (longer side) fills half the crop
    extent = np.ptp(crop, axis=0).max()
    assert extent == pytest.approx(INPUT_SIZE / 2.0, rel=1e-6)
    assert np.all(crop > 0) and np.all(crop < INPUT_SIZE)


@pytest.mark.parametrize('degrees', [37, 90, 180, 271])
def test_a_rolled_hand_gets_the_same_crop_as_upright(degrees):
    points = upright_hand(seed=1)
    upright = to_crop(points, crop_affine(*crop_from_keypoints(points)))
    turned = turn(points, degrees)
    rolled = to_crop(turned, crop_affine(*crop_from_keypoints(turned)))
    np.testing.assert_allclose(rolled, upright, atol=1e-3)


def test_bad_keypoints_are_refused():
    with pytest.raises(ValueError, match='21, 2'):
        crop_from_keypoints(np.zeros((20, 2)))
    points = upright_hand()
    points[3, 0] = np.nan
    with pytest.raises(ValueError, match='finite'):
        crop_from_keypoints(points)
    with pytest.raises(ValueError, match='scale'):
        crop_from_keypoints(upright_hand(), scale=0.0)
    with pytest.raises(ValueError, match='iterations'):
        CropStage(nn.Identity(), iterations=0)
    with pytest.raises(ValueError, match='turns'):
        CropStage(nn.Identity(), turns=0)
    with pytest.raises(ValueError, match='turn_below'):
        CropStage(nn.Identity(), turn_below=1.5)
    with pytest.raises(ValueError, match='zoom_out'):
        CropStage(nn.Identity(), zoom_out=0.5)
    with pytest.raises(ValueError, match='retry_crops'):
        CropStage(nn.Identity(), retry_crops=-1)


def test_a_tracking_crop_follows_the_palm_not_the_fingertips():
    points = upright_hand(seed=8)
    centre, side, angle = crop_from_landmarks(points)
    moved = points.copy()
    moved[[4, 8, 12, 16, 20]] += [400.0, -300.0]  # fingertips misread far away
    again = crop_from_landmarks(moved)
    np.testing.assert_allclose(again[0], centre)
    assert again[1:] == pytest.approx((side, angle))
    # up: from the wrist towards the finger bases (middle blended with index and ring)
    towards = ((points[5] + points[13]) / 2 + points[9]) / 2 - points[0]
    assert angle == pytest.approx(np.arctan2(towards[1], towards[0]))
    # a turned hand gets the same crop, turned
    rolled = to_crop(turn(points, 90), crop_affine(*crop_from_landmarks(turn(points, 90))))
    np.testing.assert_allclose(rolled, to_crop(points, crop_affine(centre, side, angle)), atol=1e-3)


class CropReader(nn.Module):
    """Stands in for the landmark network: reports where the brightest pixel of the crop is as every landmark,
    presence 0.8 and handedness 0.9 (the port's output: P(MediaPipe says 'Right'), which MediaPipe means for a
    mirrored image, so in a camera image the person's left hand)."""

    def forward(self, images):
        batch = images.shape[0]
        gray = images.sum(dim=-1)  # (B, 224, 224)
        flat = gray.reshape(batch, -1).argmax(dim=1)
        y, x = (flat // INPUT_SIZE).float() + 0.5, (flat % INPUT_SIZE).float() + 0.5
        landmarks = torch.stack([x, y, torch.zeros_like(x)], dim=1)[:, None].repeat(1, 21, 1)
        return {
            'landmarks': landmarks,
            'presence': torch.full((batch,), 0.8),
            'handedness': torch.full((batch,), 0.9),
            'world_landmarks': torch.zeros(batch, 21, 3),
        }


def test_answers_come_back_in_image_pixels_for_each_hand():
    image = np.zeros((480, 640, 3), np.uint8)
    second = turn(upright_hand(seed=3, wrist=(500.0, 380.0), length=40.0), 120, centre=(500.0, 380.0))
    hands = [upright_hand(seed=2, wrist=(150.0, 400.0), length=40.0), second]
    spots = [(150, 350), (530, 398)]  # a bright pixel inside each hand's crop (and only in that one)
    for x, y in spots:
        image[y, x] = 255
    answers = CropStage(CropReader()).run(image, hands)
    assert len(answers) == 2
    for answer, (x, y) in zip(answers, spots):
        # crops are sampled bilinearly at ~1.5x: the spot comes back within about one image pixel
        assert np.abs(answer.keypoints_2d - [x + 0.5, y + 0.5]).max() < 1.5
        assert answer.presence == pytest.approx(0.8)
        assert answer.right_probability == pytest.approx(0.1)  # the person's right = 1 - MediaPipe's 'Right'
        assert answer.keypoints_2d.shape == (21, 2) and answer.world_landmarks.shape == (21, 3)
    assert CropStage(CropReader()).run(image, []) == []


def test_a_second_pass_crops_around_the_first_answer():
    image = np.zeros((480, 640, 3), np.uint8)
    image[300, 260] = 255
    hand = upright_hand(seed=4, wrist=(250.0, 420.0))
    one = CropStage(CropReader(), iterations=1).run(image, [hand])[0]
    two = CropStage(CropReader(), iterations=2).run(image, [hand])[0]
    # all landmarks of the first answer sit on one point: the second crop is the minimum size around it
    assert two.crop_side_px == pytest.approx(8.0)
    assert np.abs(two.keypoints_2d - one.keypoints_2d).max() < 1.0


class UprightReader(CropReader):
    """Sees a hand only when the crop's bright spot is in its upper half (a hand read upright), like the landmark
    network whose presence drops on a hand turned upside down."""

    def forward(self, images):
        out = super().forward(images)
        out['presence'] = torch.where(out['landmarks'][:, 0, 1] < INPUT_SIZE / 2, 0.9, 0.1)
        return out


def test_a_crop_that_sees_no_hand_is_tried_turned_and_the_best_kept():
    image = np.zeros((480, 640, 3), np.uint8)
    hand = upright_hand(seed=9, wrist=(300.0, 300.0), length=60.0)
    image[290, 300] = 255  # the 'hand' is low in the crop: ACR's keypoints point the wrong way
    stage = CropStage(UprightReader(), iterations=1)
    answer = stage.run(image, [hand])[0]
    assert answer.presence == pytest.approx(0.9) and answer.turn == pytest.approx(np.pi)
    assert stage.crops_run == 4  # the crop as given, then the three other quarter turns
    assert np.abs(answer.keypoints_2d - [300.5, 290.5]).max() < 1.5
    unturned = CropStage(UprightReader(), iterations=1, turns=1, zoom_out=1.0)
    assert unturned.run(image, [hand])[0].presence == pytest.approx(0.1) and unturned.crops_run == 1
    # a crop that sees its hand as given is not turned
    image[:] = 0
    image[200, 300] = 255
    sure = CropStage(UprightReader(), iterations=1)
    answer = sure.run(image, [hand])[0]
    assert answer.turn == 0.0 and answer.presence == pytest.approx(0.9) and sure.crops_run == 1


class SpotReader(CropReader):
    """Sees a hand only when the crop holds the bright spot."""

    def forward(self, images):
        out = super().forward(images)
        out['presence'] = torch.where(images.amax(dim=(1, 2, 3)) > 0.5, 0.9, 0.1)
        return out


def test_a_hand_outside_every_turned_crop_is_found_zoomed_out():
    image = np.zeros((480, 640, 3), np.uint8)
    hand = upright_hand(seed=9, wrist=(300.0, 300.0), length=60.0)
    centre, side, _ = crop_from_keypoints(hand)
    spot = (int(centre[0] + 0.75 * side), int(centre[1]))  # beyond every same-size crop, inside one twice as big
    image[spot[1], spot[0]] = 255
    stage = CropStage(SpotReader(), iterations=1)
    answer = stage.run(image, [hand])[0]
    assert answer.presence == pytest.approx(0.9) and answer.crop_side_px == pytest.approx(2 * side)
    assert np.abs(answer.keypoints_2d - [spot[0] + 0.5, spot[1] + 0.5]).max() < 2.5
    assert stage.crops_run == 1 + 3 + 4  # as given, three turns, then zoomed out in four orientations
    unzoomed = CropStage(SpotReader(), iterations=1, zoom_out=1.0)
    assert unzoomed.run(image, [hand])[0].presence == pytest.approx(0.1) and unzoomed.crops_run == 4
    # tries are bounded per frame: two hands that see nothing cost at most retry_crops more crops
    bounded = CropStage(SpotReader(), iterations=1, retry_crops=5)
    bounded.run(np.zeros_like(image), [hand, hand + 5.0])
    assert bounded.crops_run == 2 + 5


def test_the_shipped_landmark_network_runs_on_crops():
    stage = CropStage(load_landmark_model())
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    answers = stage.run(image, [upright_hand(seed=6, wrist=(160.0, 200.0), length=40.0)])
    assert len(answers) == 1
    a = answers[0]
    assert np.isfinite(a.keypoints_2d).all() and 0.0 <= a.presence <= 1.0 and 0.0 <= a.right_probability <= 1.0
    assert a.presence < 0.5  # noise is not a hand


class SpreadSpotReader(SpotReader):
    """SpotReader whose 21 landmarks spread around the spot (a hand's extent, centred on it), so its answers have a
    keypoint box the next frame's hand can overlap."""

    OFFSETS = torch.from_numpy(np.random.default_rng(7).uniform(-40.0, 40.0, (21, 2))).float()

    def forward(self, images):
        out = super().forward(images)
        out['landmarks'][..., :2] += self.OFFSETS - self.OFFSETS.mean(0)
        return out


class CountingPalms:
    """A palm detector that finds nothing and counts the frames it ran on."""

    def __init__(self):
        self.runs = 0

    def detect(self, image_bgr):
        self.runs += 1
        return []


def test_tracking_follows_the_remembered_hands_and_skips_the_palm_detector():
    image = np.zeros((480, 640, 3), np.uint8)
    hands = [
        upright_hand(seed=2, wrist=(150.0, 400.0), length=40.0),
        upright_hand(seed=3, wrist=(500.0, 400.0), length=40.0),
    ]
    spots = [(150, 350), (500, 350)]
    for x, y in spots:
        image[y, x] = 255
    palms = CountingPalms()
    stage = CropStage(SpreadSpotReader(), iterations=2, palms=palms, tracking=True)
    first = stage.run(image, hands)
    assert not any(a.tracked for a in first) and palms.runs == 1 and stage.crops_run == 4  # two passes each
    stage.remember(first, image.shape[:2], notes=['left one', 'right one'])
    # the next frame: each hand's first crop follows its remembered answer, reads it, and is its only crop
    second = stage.run(image, hands, free_palms=False)
    assert [a.follows for a in second] == [0, 1] and [stage.note(a) for a in second] == ['left one', 'right one']
    assert palms.runs == 1 and stage.crops_run == 6 and stage.tracked_crops == 2
    for answer, before in zip(second, first):
        assert answer.presence == pytest.approx(0.9)
        assert np.abs(answer.keypoints_2d.mean(0) - before.keypoints_2d.mean(0)).max() < 1.5  # on the same spot
    # two followed hands leave no side for a new one: no palm detection even when new hands are wanted
    stage.run(image, hands, free_palms=True)
    assert palms.runs == 1
    # one followed hand while new hands are wanted: the palm detector runs every palm_every-th frame (3 by default;
    # it ran 3 frames ago), the followed hand keeps its answer
    stage.remember(first[:1], image.shape[:2])
    runs = []
    for _ in range(4):
        alone = stage.run(image, hands[:1], free_palms=True)
        assert alone[0].follows == 0 and stage.note(alone[0]) is None
        stage.remember(first[:1], image.shape[:2])  # (the fake reader's answers shrink from crop to crop)
        runs.append(palms.runs)
    assert stage.palm_every == 3 and runs == [2, 2, 2, 3]
    with pytest.raises(ValueError, match='palm_every'):
        CropStage(SpotReader(), palm_every=0)


def test_tracking_falls_back_to_the_still_image_path():
    image = np.zeros((480, 640, 3), np.uint8)
    hand = upright_hand(seed=2, wrist=(150.0, 400.0), length=40.0)
    image[350, 150] = 255
    palms = CountingPalms()
    stage = CropStage(SpreadSpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=palms, tracking=True)
    stage.remember(stage.run(image, [hand]), image.shape[:2])
    # a hand elsewhere (no overlap with the remembered one) is read from its own keypoints
    far = upright_hand(seed=2, wrist=(450.0, 200.0), length=40.0)
    assert not stage.run(image, [far], free_palms=False)[0].tracked
    # a frame of another size, a stage told to forget, or tracking off: nothing is followed
    assert not stage.run(np.zeros((240, 640, 3), np.uint8), [hand], free_palms=False)[0].tracked
    stage.forget()
    assert not stage.run(image, [hand], free_palms=False)[0].tracked
    stage.remember(stage.run(image, [hand]), image.shape[:2])
    stage.tracking = False
    assert not stage.run(image, [hand], free_palms=False)[0].tracked
    # a followed crop that no longer sees the hand sends it through the palm detector and its own crop
    stage.tracking = True
    runs = palms.runs
    answer = stage.run(np.zeros_like(image), [hand], free_palms=False)[0]
    assert not answer.tracked and answer.presence == pytest.approx(0.1) and palms.runs == runs + 1
    with pytest.raises(ValueError, match='one note per answer'):
        stage.remember([answer], image.shape[:2], notes=[1, 2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
def test_the_crop_networks_give_the_cpus_answers_on_a_gpu():
    from hand_recon_ros.landmarks import load_palm_model
    from hand_recon_ros.landmarks.palm_detection import PalmDetector

    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    hands = [upright_hand(seed=2, wrist=(150.0, 400.0), length=60.0)]
    cpu = CropStage(load_landmark_model()).run(image, hands)[0]
    gpu_stage = CropStage(load_landmark_model(), device='cuda')
    gpu = gpu_stage.run(image, hands)[0]
    assert next(gpu_stage.model.parameters(), next(gpu_stage.model.buffers())).device.type == 'cuda'
    assert abs(gpu.presence - cpu.presence) < 1e-3
    np.testing.assert_allclose(gpu.keypoints_2d, cpu.keypoints_2d, atol=0.5)
    palms_cpu = PalmDetector(load_palm_model()).detect(image)
    palms_gpu = PalmDetector(load_palm_model(), device='cuda').detect(image)
    assert len(palms_gpu) == len(palms_cpu)


def test_tracking_carries_a_hand_no_found_hand_overlaps():
    image = np.zeros((480, 640, 3), np.uint8)
    hands = [
        upright_hand(seed=2, wrist=(150.0, 400.0), length=40.0),
        upright_hand(seed=3, wrist=(500.0, 400.0), length=40.0),
    ]
    for x, y in [(150, 350), (500, 350)]:
        image[y, x] = 255
    palms = CountingPalms()
    stage = CropStage(SpreadSpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=palms, tracking=True)
    both = stage.run(image, hands)
    stage.remember(both, image.shape[:2], notes=['a', 'b'])
    # ACR found only the first hand: the second is followed where it was and handed over as carried; with two hands
    # the palm detector rests
    runs = palms.runs
    one = stage.run(image, hands[:1], free_palms=True)
    assert one[0].follows == 0 and [(a.follows, stage.note(a)) for a in stage.carried] == [(1, 'b')]
    assert np.abs(stage.carried[0].keypoints_2d.mean(0) - both[1].keypoints_2d.mean(0)).max() < 1.5
    assert palms.runs == runs
    # no new hands wanted: nothing carried; no found hand at all: both carried
    stage.run(image, hands[:1], free_palms=False)
    assert stage.carried == []
    assert stage.run(image, [], free_palms=True) == [] and [a.follows for a in stage.carried] == [0, 1]
    # a remembered hand whose crop no longer reads a hand is not carried
    gone = image.copy()
    gone[350, 500] = 0
    stage.run(gone, hands[:1], free_palms=True)
    assert stage.carried == []


def test_a_palm_on_a_carried_hand_is_still_offered_but_never_a_new_hand():
    from hand_recon_ros.landmarks.palm_detection import PalmDetection

    image = np.zeros((480, 640, 3), np.uint8)
    image[350, 500] = 255
    hand = upright_hand(seed=3, wrist=(500.0, 400.0), length=40.0)
    centre = np.array([500.0, 350.0])
    palm = PalmDetection(box=np.concatenate([centre - 25, centre + 25]), keypoints=np.tile(centre, (7, 1)), score=0.9)

    class OnePalm:
        def detect(self, image_bgr):
            return [palm]

    stage = CropStage(SpreadSpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=OnePalm(), tracking=True)
    stage.remember(stage.run(image, [hand]), image.shape[:2])
    # ACR drew the hand 90 px off (its own crop sees nothing there): the remembered hand is carried, and the palm
    # they share is offered to ACR's hand, whose crop then reads the hand; the palm is no new hand
    beside = hand + [0.0, 90.0]
    answer = stage.run(image, [beside], free_palms=True)[0]
    assert [a.follows for a in stage.carried] == [0]
    assert answer.from_palm and answer.presence == pytest.approx(0.9) and stage.unused_palms == []
