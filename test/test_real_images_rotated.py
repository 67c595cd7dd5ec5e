"""The benchmark's turned validation frames: labels turn with the pixels, sides stay."""

import cv2
import numpy as np
import pytest

from hand_recon_ros.detection_metrics import LabelledHand
from hand_recon_train.evaluation.real_images import Frame, _group_of, rotate_frame


@pytest.fixture
def marked_frame(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 48, 80  # not square: the turned image swaps its sides
    image = np.zeros((h, w, 3), np.uint8)
    kps = np.stack([rng.integers(2, w - 2, 21), rng.integers(2, h - 2, 21)], axis=1) + 0.5  # pixel centres
    for x, y in kps:
        image[int(y), int(x)] = (255, 255, 255)
    path = tmp_path / 'upright.png'
    cv2.imwrite(str(path), image)
    box = np.concatenate([kps.min(axis=0) - 2, kps.max(axis=0) + 2])
    hand = LabelledHand(box=box, side='left', keypoints=kps, visible=np.ones(21, bool))
    return Frame(path, 'realval/x', [hand], teacher_labels=True), (h, w)


@pytest.mark.parametrize('angle', [90, 180, 270])
def test_keypoints_and_boxes_turn_with_the_pixels(marked_frame, tmp_path, angle):
    frame, (h, w) = marked_frame
    turned = rotate_frame(frame, angle, tmp_path / f'turned{angle}.png')
    image = cv2.imread(str(turned.path))
    assert image.shape[:2] == ((w, h) if angle in (90, 270) else (h, w))
    hand = turned.hands[0]
    assert hand.side == 'left' and turned.teacher_labels and turned.extra['angle'] == angle
    for x, y in hand.keypoints:  # every turned label lands on its marker
        assert image[int(y), int(x)].min() == 255
    assert len(np.argwhere(image[..., 0] == 255)) == len({(int(x), int(y)) for x, y in frame.hands[0].keypoints})
    lo, hi = hand.box[:2], hand.box[2:]
    assert (hand.keypoints >= lo).all() and (hand.keypoints <= hi).all()
    assert np.allclose(np.sort(hi - lo), np.sort(frame.hands[0].box[2:] - frame.hands[0].box[:2]))


def test_four_quarter_turns_are_the_identity_and_bad_angles_are_refused(marked_frame, tmp_path):
    frame, _ = marked_frame
    turned = frame
    for n in range(4):
        turned = rotate_frame(turned, 90, tmp_path / f'q{n}.png')
    assert np.allclose(turned.hands[0].keypoints, frame.hands[0].keypoints)
    assert np.allclose(turned.hands[0].box, frame.hands[0].box)
    assert np.array_equal(cv2.imread(str(turned.path)), cv2.imread(str(frame.path)))
    with pytest.raises(ValueError, match='90, 180, 270'):
        rotate_frame(frame, 45, tmp_path / 'bad.png')
    assert _group_of('rotated/90') == 'rotated (all)'
