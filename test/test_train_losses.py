"""Training losses: focal loss in logit form, parameter selection with the prior gate, geometric terms."""

import math

import numpy as np
import pytest
import torch

from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.geometry import rotations
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_train.losses import ACRLoss, LossConfig, center_focal_loss, select_hand_params, side_exclusion_loss
from hand_recon_train.synth import SynthConfig, SynthDataset, SynthGenerator


@pytest.fixture(scope='module')
def hand_model():
    return load_hand_model()


@pytest.fixture(scope='module')
def batch(hand_model):
    config = SynthConfig(image_size=128, supersample=1, scene_weights={'interacting': 0.5, 'single': 0.5})
    data = SynthDataset(config, seed=11, length=4)
    data._generator = SynthGenerator(config, seed=11, hand_model=hand_model)
    items = [data[i] for i in range(4)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _gt_outputs(batch):
    """Network-shaped outputs whose parameters are the ground truth (6D from the GT rotations)."""
    b = batch['valid'].shape[0]
    aa = torch.cat([batch['global_orient'], batch['hand_pose']], dim=-1).reshape(b, 2, 16, 3)
    rot6d = rotations.matrix_to_rot6d(rotations.axis_angle_to_matrix(aa)).reshape(b, 2, 96)
    params = torch.cat([batch['cam'], rot6d, batch['betas']], dim=-1)
    return {
        'params': params,
        'prior': torch.zeros(b, 2, 106),
        'center_maps': torch.where(batch['center_maps'] >= 0.999, 12.0, -12.0),
        'segmentation': torch.nn.functional.one_hot(batch['seg'], 33).permute(0, 3, 1, 2).float() * 30.0,
    }


def test_focal_loss_matches_the_cornernet_formula_on_sigmoid_probabilities():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 5)
    target = torch.rand(2, 2, 5, 5) * 0.9
    target[0, 1, 2, 3] = 1.0
    target[1, 0, 0, 0] = 1.0
    p = torch.sigmoid(logits).double()
    t = target.double()
    pos = (t == 1.0).double()
    ref = -(pos * (1 - p) ** 2 * torch.log(p) + (1 - pos) * (1 - t) ** 4 * p**2 * torch.log(1 - p))
    ref = (ref.sum((-2, -1)) / pos.sum((-2, -1)).clamp_min(1)).mean()
    assert math.isclose(float(center_focal_loss(logits, target)), float(ref), rel_tol=1e-5)


def test_focal_loss_is_small_for_confident_correct_logits_and_pushes_peaks_up():
    target = torch.zeros(1, 2, 8, 8)
    target[0, 0, 3, 4] = 1.0
    good = torch.where(target == 1, 10.0, -10.0)
    assert float(center_focal_loss(good, target)) < 1e-3
    logits = torch.zeros(1, 2, 8, 8, requires_grad=True)
    loss = center_focal_loss(logits, target)
    assert float(loss.detach()) > 1.0
    loss.backward()
    assert logits.grad[0, 0, 3, 4] < 0 and logits.grad[0, 0, 0, 0] > 0  # raise the peak, lower the rest
    with pytest.raises(ValueError, match='B, 2, h, w'):
        center_focal_loss(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8))


def test_prior_is_added_only_within_the_gate():
    maps = torch.zeros(2, 2, 16, 16)
    maps[0, 0, 5, 5] = maps[0, 1, 5, 9] = 1.0  # 4 px apart: inside the default radius 8
    maps[1, 0, 0, 0] = maps[1, 1, 15, 15] = 1.0  # 21 px apart: outside
    params, prior = torch.randn(2, 2, 109), torch.randn(2, 2, 106)
    valid = torch.ones(2, 2, dtype=torch.bool)
    fused, coeff = select_hand_params({'params': params, 'prior': prior}, maps, valid)
    assert coeff.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    torch.testing.assert_close(fused[0, :, 3:], params[0, :, 3:] + prior[0])
    torch.testing.assert_close(fused[1], params[1])
    torch.testing.assert_close(fused[:, :, :3], params[:, :, :3])
    one_hand = valid.clone()
    one_hand[0, 1] = False
    _, coeff = select_hand_params({'params': params, 'prior': prior}, maps, one_hand)
    assert float(coeff[0].abs().sum()) == 0.0
    _, coeff = select_hand_params({'params': params, 'prior': prior}, maps, valid, DecodeConfig(prior_gate='off'))
    assert float(coeff.abs().sum()) == 0.0
    scaled = params.clone()
    scaled[:, :, 0] = 4.0  # hands ~0.8 of the [-1, 1] frame: k ~ 3.5 map px
    _, coeff = select_hand_params(
        {'params': scaled.requires_grad_(True), 'prior': prior}, maps, valid, DecodeConfig(prior_gate='soft')
    )
    assert 0.0 < float(coeff[0, 0]) < 1.0 and float(coeff[1].abs().sum()) == 0.0


def test_peak_mode_reads_the_maps_at_the_ground_truth_centres():
    maps = torch.zeros(1, 2, 16, 16)
    maps[0, 0, 2, 3] = maps[0, 1, 10, 12] = 1.0
    params = torch.randn(1, 2, 109, 16, 16)
    prior = torch.randn(1, 2, 106, 16, 16)
    fused, coeff = select_hand_params(
        {'params': params, 'prior': prior}, maps, torch.ones(1, 2, dtype=torch.bool), DecodeConfig(prior_radius=20.0)
    )
    assert coeff.tolist() == [[1.0, 1.0]]
    torch.testing.assert_close(fused[0, 0, :3], params[0, 0, :3, 2, 3])
    torch.testing.assert_close(fused[0, 0, 3:], params[0, 0, 3:, 2, 3] + prior[0, 0, :, 10, 12])
    torch.testing.assert_close(fused[0, 1, 3:], params[0, 1, 3:, 10, 12] + prior[0, 1, :, 2, 3])


def test_ground_truth_parameters_give_near_zero_geometric_losses(hand_model, batch):
    assert batch['valid'].sum() >= 4
    loss = ACRLoss(hand_model)
    outputs = _gt_outputs(batch)
    _, terms = loss(outputs, batch, epoch=0)
    for name in ('pose', 'shape', 'j3d', 'paj3d', 'bone'):
        assert terms[name] < 1e-3, (name, terms)
    # weak perspective vs the true perspective projection: a few percent of the hand size in [-1, 1] units
    assert terms['pj2d'] < 400 * 0.03, terms
    assert terms['center'] < 0.1 and terms['seg'] < 1e-3

    noisy = {k: v.clone() for k, v in outputs.items()}
    noisy['params'][..., 3:99] += 0.3 * torch.randn(
        noisy['params'][..., 3:99].shape, generator=torch.Generator().manual_seed(0)
    )
    _, worse = loss(noisy, batch, epoch=0)
    for name in ('pose', 'j3d', 'paj3d'):
        assert worse[name] > 10 * max(terms[name], 1e-4), (name, terms[name], worse[name])
    assert worse['pj2d'] > 3 * terms['pj2d']


def test_segmentation_term_only_in_the_first_epochs_and_gradients_flow(hand_model, batch):
    loss = ACRLoss(hand_model, LossConfig(seg_epochs=2))
    outputs = {k: v.clone().requires_grad_(True) for k, v in _gt_outputs(batch).items()}
    outputs['params'].data[..., 3:99] += 0.2
    total, terms = loss(outputs, batch, epoch=1)
    assert 'seg' in terms
    total.backward()
    assert outputs['params'].grad.abs().sum() > 0 and torch.isfinite(outputs['params'].grad).all()
    _, later = loss(outputs, batch, epoch=2)
    assert 'seg' not in later
    assert math.isclose(later['total'], sum(v for k, v in later.items() if k != 'total'), rel_tol=1e-5)


def test_smooth_l1_option_changes_the_point_terms(hand_model, batch):
    outputs = _gt_outputs(batch)
    outputs['params'][..., 3:99] += 0.3
    _, l2 = ACRLoss(hand_model)(outputs, batch)
    _, smooth = ACRLoss(hand_model, LossConfig(smooth_l1=True))(outputs, batch)
    assert smooth['j3d'] != pytest.approx(l2['j3d'])
    assert np.isfinite(list(smooth.values())).all()


def test_loss_config_validation():
    with pytest.raises(ValueError, match='unknown loss weights'):
        LossConfig(weights={'j2d': 1.0})
    with pytest.raises(ValueError, match='>= 0'):
        LossConfig(weights={'j3d': -1.0})
    with pytest.raises(ValueError, match='unknown loss config keys'):
        LossConfig.from_dict({'epochs': 3})
    assert LossConfig(weights={'j3d': 5}).weights['paj3d'] == 360.0


def test_real_data_masks_missing_mano_joints_and_part_labels(hand_model, batch):
    """Real datasets lack MANO fits, some joints and all part labels: those terms must drop out, not go NaN."""
    loss = ACRLoss(hand_model, LossConfig(seg_epochs=2))
    outputs = {k: v.clone().requires_grad_(True) for k, v in _gt_outputs(batch).items()}
    outputs['params'].data[..., 3:99] += 0.2
    real = dict(batch)
    real['seg'] = torch.full_like(batch['seg'], -100)
    real['has_mano'] = torch.zeros_like(batch['valid'])
    joints_valid = torch.ones(*batch['valid'].shape, 21, dtype=torch.bool)
    joints_valid[..., 4] = False  # a missing thumb tip everywhere
    real['joints_valid'] = joints_valid
    total, terms = loss(outputs, real, epoch=0)
    assert 'seg' not in terms and 'pose' not in terms and 'shape' not in terms
    assert 'paj3d' not in terms  # Procrustes needs complete hands
    assert {'j3d', 'bone', 'pj2d', 'center'} <= set(terms)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(outputs['params'].grad).all()
    # Corrupting the masked joint's ground truth changes nothing; an unmasked joint does.
    moved = dict(real, joints_3d=real['joints_3d'].clone())
    moved['joints_3d'][..., 4, :] += 0.05
    assert loss(outputs, moved, epoch=0)[1]['j3d'] == pytest.approx(terms['j3d'], rel=1e-6)
    moved['joints_3d'][..., 8, :] += 0.05
    assert loss(outputs, moved, epoch=0)[1]['j3d'] > terms['j3d'] * 1.01


def test_pa_joint_term_has_finite_gradients_for_degenerate_hands():
    from hand_recon_ros.geometry.procrustes import procrustes_align
    from hand_recon_train.losses import _aligned_fixed

    torch.manual_seed(0)
    j = torch.arange(21.0)
    gt = torch.stack([0.01 * j - 0.1, 0.005 * j - 0.05, torch.full((21,), 0.5)], -1)[None]  # joints on a line
    gt = gt - gt[:, 9:10]
    pred = (0.05 * torch.randn(1, 21, 3)).requires_grad_(True)
    aligned = _aligned_fixed(pred, gt)
    torch.testing.assert_close(aligned.detach(), procrustes_align(pred.detach(), gt), atol=1e-6, rtol=0)
    (aligned - gt).norm(dim=-1).mean().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # the SVD's own backward is not finite here: the reason the alignment is held fixed
    pred2 = pred.detach().clone().requires_grad_(True)
    (procrustes_align(pred2, gt) - gt).norm(dim=-1).mean().backward()
    assert not torch.isfinite(pred2.grad).all()


def test_mesh_smoothness_terms_are_zero_for_the_true_mesh_and_grow_with_noise(hand_model):
    loss = ACRLoss(hand_model, LossConfig(weights={'edge': 1.0, 'normal': 1.0}))
    torch.manual_seed(1)
    out = hand_model('right', 0.3 * torch.randn(2, 3), 0.3 * torch.randn(2, 45), torch.randn(2, 10))
    gt = out['vertices']
    exact = loss._mesh_terms(gt, gt, 'right')
    assert float(exact['edge']) < 1e-7 and float(exact['normal']) < 1e-4
    noisy = loss._mesh_terms(gt + 0.002 * torch.randn_like(gt), gt, 'right')
    assert float(noisy['edge']) > 1e-3 and float(noisy['normal']) > 0.1
    # a rigidly moved mesh keeps its edge lengths (translation-free term)
    assert float(loss._mesh_terms(gt + torch.tensor([0.1, 0.0, 0.0]), gt, 'right')['edge']) < 1e-6
    with pytest.raises(ValueError, match='unknown loss weights'):
        LossConfig(weights={'laplacian': 1.0})


def _gaussian_map(h, w, cy, cx, sigma=1.5):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))


def _logit(p):
    p = torch.as_tensor(p, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def test_side_exclusion_is_zero_on_the_targets_and_charges_one_hand_seen_as_both_sides():
    h = w = 16
    one = np.zeros((1, 2, h, w), np.float32)
    one[0, 0] = _gaussian_map(h, w, 8, 8)  # a left hand only
    target = torch.from_numpy(one)
    assert float(side_exclusion_loss(_logit(target), target)) < 1e-4
    ghost = target.clone()
    ghost[0, 1] = ghost[0, 0]  # the right map fires on the left hand too
    logits = _logit(ghost).requires_grad_(True)
    loss = side_exclusion_loss(logits, target)
    assert float(loss.detach()) > 1.0
    loss.backward()
    assert float(logits.grad[0, 1, 8, 8]) > 0  # descent lowers the wrong side at the hand
    # an overlapping pair: both targets share pixels, and predicting them exactly costs nothing
    pair = np.zeros((1, 2, h, w), np.float32)
    pair[0, 0] = _gaussian_map(h, w, 8, 7)
    pair[0, 1] = _gaussian_map(h, w, 8, 10)
    pair_t = torch.from_numpy(pair)
    assert float(side_exclusion_loss(_logit(pair_t), pair_t)) < 1e-4
    with pytest.raises(ValueError):
        side_exclusion_loss(torch.zeros(1, 3, h, w), torch.zeros(1, 3, h, w))


def test_side_exclusion_is_off_unless_weighted():
    config = LossConfig.from_dict({'weights': {'side_excl': 80}})
    assert config.weights['side_excl'] == 80.0 and LossConfig().weights['side_excl'] == 0.0
