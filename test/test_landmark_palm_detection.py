"""Palm detections (hand_recon_ros/landmarks/palm_detection.py): anchors, decoding, merging, the letterbox and the
crop MediaPipe places on a palm; the crop stage's first crop from a matched palm."""

import numpy as np
import pytest
import torch
from torch import nn

from hand_recon_ros.landmarks.crop_stage import CropStage, crop_affine, match_palms
from hand_recon_ros.landmarks.mediapipe_port import INPUT_SIZE
from hand_recon_ros.landmarks.palm_detection import (
    PALM_INPUT,
    PalmDetection,
    PalmDetector,
    decode_palms,
    letterbox,
    palm_crop,
    ssd_anchor_centres,
    weighted_nms,
)


def test_anchor_grid_matches_the_detector_outputs():
    anchors = ssd_anchor_centres()
    assert anchors.shape == (2016, 2)
    # stride 8: 24 x 24 cells, two anchors each, row by row
    np.testing.assert_allclose(anchors[0], [0.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(anchors[2 * 24], [0.5 / 24, 1.5 / 24])
    # the three stride-16 maps share one 12 x 12 grid: six anchors per cell
    np.testing.assert_allclose(anchors[1152 : 1152 + 6], np.tile([0.5 / 12, 0.5 / 12], (6, 1)))
    np.testing.assert_allclose(anchors[1158], [1.5 / 12, 0.5 / 12])
    np.testing.assert_allclose(anchors[-1], [11.5 / 12, 11.5 / 12])


def raw_detection(anchor, box_centre, box_size, points, logit=4.0):
    """Detector outputs with one anchor firing: a box and 7 points in [0, 1] detector-input units."""
    anchors = ssd_anchor_centres()
    regressors = np.zeros((len(anchors), 18))
    logits = np.full(len(anchors), -8.0)
    regressors[anchor, :2] = (np.asarray(box_centre) - anchors[anchor]) * PALM_INPUT
    regressors[anchor, 2:4] = np.asarray(box_size) * PALM_INPUT
    regressors[anchor, 4:] = ((np.asarray(points) - anchors[anchor]) * PALM_INPUT).reshape(-1)
    logits[anchor] = logit
    return regressors, logits


def test_decoding_gives_the_box_points_and_score_of_the_firing_anchor():
    points = np.random.default_rng(0).uniform(0.3, 0.5, (7, 2))
    regressors, logits = raw_detection(1200, (0.4, 0.45), (0.2, 0.1), points)
    boxes, keypoints, scores = decode_palms(regressors, logits)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], [0.3, 0.4, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(keypoints[0], points, atol=1e-12)
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-4.0)))
    assert len(decode_palms(regressors, logits, min_score=0.99)[0]) == 0  # under the threshold: nothing
    with pytest.raises(ValueError, match='2016'):
        decode_palms(regressors[:10], logits)


def test_overlapping_detections_merge_by_score_and_distant_ones_stay():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]])
    points = np.stack([np.full((7, 2), v) for v in (0.2, 0.22, 0.7)])
    scores = np.array([0.9, 0.6, 0.8])
    merged = weighted_nms(boxes, points, scores, iou=0.3)
    assert [m[2] for m in merged] == pytest.approx([0.9, 0.8])  # best first; a group keeps its best score
    np.testing.assert_allclose(merged[0][0], (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5)
    np.testing.assert_allclose(merged[0][1], np.full((7, 2), (0.9 * 0.2 + 0.6 * 0.22) / 1.5))
    np.testing.assert_allclose(merged[1][0], boxes[2])


def test_letterbox_keeps_the_aspect_and_centres_the_image():
    image = np.full((100, 300, 3), 200, np.uint8)
    square, scale, offset = letterbox(image)
    assert square.shape == (PALM_INPUT, PALM_INPUT, 3)
    assert scale == pytest.approx(PALM_INPUT / 300) and offset == pytest.approx([0.0, (PALM_INPUT - 64) / 2])
    assert square[0, 0].max() == 0 and square[PALM_INPUT // 2, PALM_INPUT // 2].min() == 200


def test_an_upright_palm_gives_an_upright_crop_reaching_towards_the_fingers():
    points = np.zeros((7, 2))
    points[0] = (100.0, 200.0)  # wrist
    points[2] = (100.0, 140.0)  # middle finger's base, straight above
    palm = PalmDetection(box=np.array([70.0, 130.0, 130.0, 210.0]), keypoints=points, score=0.9)
    centre, side, angle = palm_crop(palm)
    assert angle == pytest.approx(-np.pi / 2)  # up in the image
    np.testing.assert_allclose(centre, [100.0, 170.0 - 0.5 * 80.0])
    assert side == pytest.approx(2.6 * 80.0)
    # turned a quarter (fingers pointing right): the crop turns with it, its centre moves right
    turned_points = np.tile([100.0, 200.0], (7, 1))
    turned_points[2] = (160.0, 200.0)
    turned = PalmDetection(box=np.array([60.0, 170.0, 140.0, 230.0]), keypoints=turned_points, score=0.9)
    centre, side, angle = palm_crop(turned)
    assert angle == pytest.approx(0.0) and centre == pytest.approx([100.0 + 0.5 * 60.0, 200.0])
    assert side == pytest.approx(2.6 * 80.0)


class FiringPalmNet(nn.Module):
    """Stands in for the palm network: one anchor fires with a fixed box and points (detector-input units)."""

    def __init__(self, box_centre, box_size, points):
        super().__init__()
        regressors, logits = raw_detection(700, box_centre, box_size, points)
        self.regressors = torch.as_tensor(regressors, dtype=torch.float32)
        self.logits = torch.as_tensor(logits, dtype=torch.float32)
        self.seen = None

    def forward(self, images):
        self.seen = images
        return {'regressors': self.regressors[None], 'scores': self.logits[None]}


def test_detections_come_back_in_image_pixels():
    image = np.zeros((240, 480, 3), np.uint8)  # letterboxed: scale 0.4, 48 px bands above and below
    points = np.tile([0.5, 0.5], (7, 1))
    points[0] = (0.5, 0.55)
    net = FiringPalmNet((0.5, 0.5), (0.1, 0.1), points)
    palms = PalmDetector(net).detect(image)
    assert len(palms) == 1
    # detector pixel 96 -> image (96 - offset) / 0.4
    np.testing.assert_allclose(
        palms[0].box, [(96 - 9.6) / 0.4, (96 - 9.6 - 48) / 0.4, (96 + 9.6) / 0.4, (96 + 9.6 - 48) / 0.4]
    )
    np.testing.assert_allclose(palms[0].keypoints[0], [240.0, (0.55 * 192 - 48) / 0.4])
    assert net.seen.shape == (1, PALM_INPUT, PALM_INPUT, 3) and float(net.seen.max()) <= 1.0
    with pytest.raises(ValueError, match='min_score'):
        PalmDetector(net, min_score=1.0)


def palm_at(centre, size=40.0, score=0.9):
    points = np.tile(np.asarray(centre, float), (7, 1))
    points[0] += (0.0, size / 2)
    box = np.array([centre[0] - size / 2, centre[1] - size / 2, centre[0] + size / 2, centre[1] + size / 2])
    return PalmDetection(box=box, keypoints=points, score=score)


def test_each_hand_takes_the_nearest_palm_inside_its_box():
    left = np.random.default_rng(1).uniform([100, 100], [200, 200], (21, 2))
    right = left + [60.0, 0.0]  # overlapping boxes: both hold both palms
    palms = [palm_at((215.0, 150.0)), palm_at((150.0, 150.0)), palm_at((600.0, 400.0))]
    assert match_palms([left, right], palms) == [(0, 1), (1, 0)]
    assert match_palms([left], [palms[2]]) == []  # far outside the hand's box
    assert match_palms([], palms) == [] and match_palms([left], []) == []


class SpotReader(nn.Module):
    """Landmark-network stand-in: every landmark at the crop's brightest pixel; a hand only where the spot is."""

    def forward(self, images):
        batch = images.shape[0]
        flat = images.sum(dim=-1).reshape(batch, -1).argmax(dim=1)
        y, x = (flat // INPUT_SIZE).float() + 0.5, (flat % INPUT_SIZE).float() + 0.5
        return {
            'landmarks': torch.stack([x, y, torch.zeros_like(x)], dim=1)[:, None].repeat(1, 21, 1),
            'presence': torch.where(images.amax(dim=(1, 2, 3)) > 0.5, 0.9, 0.1),
            'handedness': torch.full((batch,), 0.5),
            'world_landmarks': torch.zeros(batch, 21, 3),
        }


class FixedPalms:
    def __init__(self, palms):
        self.palms = palms

    def detect(self, image_bgr):
        return list(self.palms)


def test_a_matched_palm_places_the_first_crop():
    image = np.zeros((480, 640, 3), np.uint8)
    hand = np.random.default_rng(2).uniform([280, 280], [320, 320], (21, 2))
    palm = palm_at((300.0, 315.0), size=50.0)
    image[235, 300] = 255  # inside the palm's crop (y 225..355), outside the one around the keypoints (~254..330)
    stage = CropStage(SpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=FixedPalms([palm]))
    answer = stage.run(image, [hand])[0]
    assert answer.from_palm and answer.presence == pytest.approx(0.9) and stage.palm_crops == 1
    assert answer.crop_side_px == pytest.approx(2.6 * 50.0)
    assert np.abs(answer.keypoints_2d - [300.5, 235.5]).max() < 1.5
    # without the palm, ACR's crop misses the spot
    plain = CropStage(SpotReader(), iterations=1, turns=1, zoom_out=1.0).run(image, [hand])[0]
    assert not plain.from_palm and plain.presence == pytest.approx(0.1)
    # a palm far away is not used: the hand keeps its own crop
    far = CropStage(SpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=FixedPalms([palm_at((600.0, 60.0))]))
    assert not far.run(image, [hand])[0].from_palm and far.palm_crops == 0
    # the crop really is the palm's: the spot sits where the palm crop's affine puts it
    affine = crop_affine(*palm_crop(palm))
    spot_in_crop = affine[:, :2] @ [300.5, 235.5] + affine[:, 2]
    assert 0 < spot_in_crop[1] < INPUT_SIZE / 2  # above the crop's middle: towards the fingers


def test_a_hand_whose_crop_sees_nothing_tries_the_nearest_free_palm():
    image = np.zeros((480, 640, 3), np.uint8)
    hand = np.random.default_rng(3).uniform([280, 200], [320, 240], (21, 2))  # on the fingers, the palm below
    palm = palm_at((300.0, 270.0), size=50.0)  # outside the keypoint box: not matched, but within reach
    image[290, 300] = 255  # inside the palm's crop (y 180..310) only
    stage = CropStage(SpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=FixedPalms([palm]))
    answer = stage.run(image, [hand])[0]
    assert answer.from_palm and answer.presence == pytest.approx(0.9)
    assert stage.crops_run == 2 and stage.palm_crops == 0  # the first crop, then the palm offered
    # one palm is offered to one hand only; a palm beyond reach to none
    two = CropStage(SpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=FixedPalms([palm]))
    answers = two.run(image, [hand, hand + [10.0, 0.0]])
    assert sum(a.from_palm for a in answers) == 1 and two.crops_run == 3
    short = CropStage(SpotReader(), iterations=1, turns=1, zoom_out=1.0, palms=FixedPalms([palm]), palm_reach=0.5)
    assert not short.run(image, [hand])[0].from_palm and short.crops_run == 1
    with pytest.raises(ValueError, match='palm_reach'):
        CropStage(SpotReader(), palm_reach=-1.0)
