"""Part labels, ACR's 33-class layout, and the overlay renderer."""

import numpy as np
import pytest
import torch

from hand_recon_ros import conventions
from hand_recon_ros.hand_model import parts
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_ros.hand_model.render import render_mesh_overlay


@pytest.fixture(scope='module')
def model():
    return load_hand_model(flat_hand_mean=True)


def test_vertex_part_labels_cover_all_16_parts(model):
    for side in ('right', 'left'):
        labels = model.part_labels(side)
        counts = parts.part_counts(labels)
        assert counts.sum() == 778 and counts.min() >= 15
        assert counts[0] == counts.max()  # the palm is the largest part
        np.testing.assert_array_equal(labels, parts.vertex_part_labels(model.skinning_weights(side)))
    np.testing.assert_array_equal(model.part_labels('right'), model.part_labels('left'))


def test_tip_vertices_belong_to_the_distal_segments(model):
    labels = model.part_labels('right')
    # thumb, index, middle, ring, pinky tips -> MANO joints 15, 3, 6, 12, 9
    assert [int(labels[v]) for v in conventions.MANO_TIP_VERTICES_RIGHT] == [15, 3, 6, 12, 9]
    # vertices of a segment lie near that segment's bone
    rest = model.rest_joints('right')
    v = model.model_array('right', 'v_template').astype(np.float64)
    for part in (1, 5, 14):
        child = conventions.MANO_PARENTS.index(part) if part in conventions.MANO_PARENTS else None
        centre = rest[part] if child is None else 0.5 * (rest[part] + rest[child])
        d = np.linalg.norm(v[labels == part] - centre, axis=1)
        assert d.max() < 0.035, part


def test_face_labels_majority_vote():
    faces = np.array([[0, 1, 2], [2, 3, 4], [0, 3, 5]])
    vlabels = np.array([1, 1, 2, 3, 3, 7])
    np.testing.assert_array_equal(parts.face_part_labels(faces, vlabels), [1, 3, 1])
    weights = np.zeros((6, 16))
    weights[[0, 3, 5], [1, 3, 7]] = [0.4, 0.9, 0.5]
    # all three differ on face 2: the part with the largest summed weight wins
    np.testing.assert_array_equal(parts.face_part_labels(faces, vlabels, weights), [1, 3, 3])


def test_face_label_counts(model):
    f_labels = parts.face_part_labels(model.faces('right'), model.part_labels('right'), model.skinning_weights('right'))
    counts = parts.part_counts(f_labels)
    assert counts.sum() == 1538 and counts.min() >= 20 and counts[0] == counts.max()


def test_acr_33_class_layout(model):
    assert parts.NUM_CLASSES == 33
    assert parts.class_id('right', 0) == 1 and parts.class_id('right', 15) == 16
    assert parts.class_id('left', 0) == 17 and parts.class_id('left', 15) == 32
    np.testing.assert_array_equal(parts.class_id('left', np.arange(16)), np.arange(17, 33))
    for c in range(1, 33):
        side, part = parts.class_to_side_part(c)
        assert parts.class_id(side, part) == c
    assert parts.class_to_side_part(0) == (None, -1)
    right = parts.model_vertex_classes(model, 'right')
    left = parts.model_face_classes(model, 'left')
    assert set(np.unique(right)) == set(range(1, 17)) and set(np.unique(left)) == set(range(17, 33))
    with pytest.raises(ValueError, match='part must be in'):
        parts.class_id('right', 16)
    with pytest.raises(ValueError, match='side must be'):
        parts.class_id('up', 1)


def _hands_in_front_of_camera(model):
    verts = []
    for side, x in (('right', -0.09), ('left', 0.09)):
        with torch.no_grad():
            v = model(side, torch.tensor([[np.pi / 2, 0, 0]]), torch.zeros(1, 45), torch.zeros(1, 10))
        v = v['vertices'][0].numpy().astype(np.float64)
        verts.append(v - v.mean(0) + np.array([x, 0.0, 0.5]))
    return verts


def test_overlay_paints_the_projected_hands_only(model):
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    image = np.full((480, 640, 3), 30, np.uint8)
    verts = _hands_in_front_of_camera(model)
    out = render_mesh_overlay(
        image, verts, [model.faces('right'), model.faces('left')], K, [(0, 0, 255), (255, 0, 0)], alpha=1.0
    )
    assert out.shape == image.shape and np.array_equal(image, np.full_like(image, 30))  # input untouched
    painted = np.any(out != 30, axis=2)
    uv = np.concatenate(verts) @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    ys, xs = np.nonzero(painted)
    assert xs.min() >= uv[:, 0].min() - 2 and xs.max() <= uv[:, 0].max() + 2
    assert ys.min() >= uv[:, 1].min() - 2 and ys.max() <= uv[:, 1].max() + 2
    assert 3000 < painted.sum() < 0.5 * painted.size
    # right hand (camera-left half) painted red-ish, left hand blue-ish
    left_half, right_half = out[:, :300][painted[:, :300]], out[:, 340:][painted[:, 340:]]
    assert np.all(left_half[:, 2] > left_half[:, 0]) and np.all(right_half[:, 0] > right_half[:, 2])


@pytest.mark.parametrize('right_depth,left_depth,winner', [(0.45, 0.6, 2), (0.6, 0.45, 0)])
def test_overlay_nearer_hand_covers_the_farther_one(model, right_depth, left_depth, winner):
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    image = np.zeros((480, 640, 3), np.uint8)
    right, left = _hands_in_front_of_camera(model)
    palm = model.part_labels('right') == 0  # same vertex labels on both sides
    right = right - right[palm].mean(0) + np.array([0, 0, right_depth])
    left = left - left[palm].mean(0) + np.array([0, 0, left_depth])
    out = render_mesh_overlay(
        image, [right, left], [model.faces('right'), model.faces('left')], K, [(0, 0, 255), (255, 0, 0)], alpha=1.0
    )
    centre = out[235:245, 315:325].reshape(-1, 3)  # both palms cover the image centre
    assert np.all(centre[:, winner] > 0) and np.all(centre[:, 2 - winner] == 0)


def test_overlay_input_errors(model):
    with pytest.raises(ValueError, match='uint8'):
        render_mesh_overlay(np.zeros((4, 4, 3)), np.zeros((3, 3)), np.array([[0, 1, 2]]), np.eye(3))
    with pytest.raises(ValueError, match='K must be 3x3'):
        render_mesh_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 3)), np.array([[0, 1, 2]]), np.eye(2))
