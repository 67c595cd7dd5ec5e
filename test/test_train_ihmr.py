"""IHMR-MLP training (hand_recon_train.train_ihmr): data preparation, staged training, weights round trip,
evaluation. Tiny: an untrained light ACR at 128 px for the features, a dozen close pairs."""

import copy
import json

import numpy as np
import pytest
import torch

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.refine.factors import REFINE_FACTORS, forward_hands
from hand_recon_train import train_ihmr as ti

OVERRIDES = ['train.threads=1']


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    cfg = ti.load_ihmr_config('ihmr_tiny', OVERRIDES)
    cfg['train']['out_dir'] = str(tmp_path_factory.mktemp('ihmr') / 'run')
    return cfg


@pytest.fixture(scope='module')
def setup(config):
    from hand_recon_ros.hand_model.model import load_hand_model

    hand_model = load_hand_model()
    network = ti.build_acr_for_features(config, torch.device('cpu'))
    split = ti.prepare_split(config, 1, 12, network, hand_model, torch.device('cpu'))
    return hand_model, network, split


@pytest.fixture(scope='module')
def run(config):
    return ti.train_ihmr(config)


def test_config_validation():
    with pytest.raises(ValueError, match='init.source'):
        ti.load_ihmr_config('ihmr_tiny', ['init.source=magic'])
    with pytest.raises(ValueError, match='targets.source'):
        ti.load_ihmr_config('ihmr_tiny', ['targets.source=teacher'])
    with pytest.raises(ValueError, match='val_seed'):
        ti.load_ihmr_config('ihmr_tiny', ['data.val_seed=1'])
    with pytest.raises(FileNotFoundError):
        ti.load_ihmr_config('no_such_config')
    cfg = ti.load_ihmr_config('ihmr_synthetic')
    assert cfg['init']['source'] == 'acr' and cfg['refiner']['lr'] == 1e-4


def test_split_holds_close_pairs_with_exact_ground_truth(setup):
    hand_model, network, split = setup
    n = len(split['index'])
    assert 6 <= n <= 12  # both hands valid in most interacting scenes
    assert split['num_rendered'] == 12 and n + split['num_penetrating_gt'] <= 12
    assert split['feature'].shape == (n, network.config.feature_dim)
    assert split['side_params'].shape == (n, 2, 109)
    # the ground-truth vector reproduces the generator's joints (camera frame) through forward_hands
    meshes = forward_hands(hand_model, split['gt_vec'])
    for k, side in enumerate(SIDES):
        err = (meshes[side][1] - split['joints_3d'][:, k]).norm(dim=-1).max()
        assert float(err) < 1e-4, side
    # close interaction: wrists within the refiner's gate; perturbed init pulled the wrists together
    gap_gt = split['gt_vec'][:, :3].norm(dim=-1)
    gap_init = split['init_vec'][:, :3].norm(dim=-1)
    assert float(gap_gt.max()) < 0.3
    assert float(gap_init.mean()) < float(gap_gt.mean())
    # deterministic per sample index: the same init again
    again = ti._perturbed(split['gt_vec'][:2], split['index'][:2].tolist(), ti.load_ihmr_config('ihmr_tiny')['init'])
    torch.testing.assert_close(again, split['init_vec'][:2])


def test_evaluation_metrics_on_ground_truth_and_perturbed(setup):
    from hand_recon_ros.refine.joint_head import JointHead, joint_template
    from hand_recon_ros.refine.refiner import build_refiner

    hand_model, network, split = setup
    torch.manual_seed(0)
    refiner = build_refiner(network.config.feature_dim, hand_model=hand_model)
    head = JointHead(network.config.feature_dim, template=joint_template(hand_model))
    gt_split = dict(split, init_vec=split['gt_vec'])
    res = ti.evaluate_refiner(refiner, head, gt_split)
    assert res['num_pairs'] == len(split['index'])
    # the generator never lets the hands touch: zero penetration and zero joint error at the ground truth
    assert res['before']['mpjpe_mm'] < 0.1 and res['before']['i_mpjpe_mm'] < 0.1
    assert res['before']['ave_p_mm'] == 0.0 and res['num_colliding_before'] == 0
    assert res['after'] == res['before']  # nothing to refine without collisions
    pert = ti.evaluate_refiner(refiner, head, split)
    b = pert['before']
    assert set(b) == set(ti.EVAL_KEYS) and all(np.isfinite(v) for v in b.values())
    assert b['mpjpe_mm'] > 5.0 and pert['num_colliding_before'] >= 1 and b['max_p_mm'] > b['ave_p_mm'] > 0
    # verification: the refinement never adds penetration
    assert pert['after']['ave_p_mm'] <= b['ave_p_mm'] + 1e-9
    assert set(pert['accept_rate']) == set(REFINE_FACTORS)


def test_stage_training_lowers_the_stage_loss(setup, config):
    from hand_recon_ros.refine.refiner import build_refiner

    hand_model, network, split = setup
    torch.manual_seed(0)
    refiner = build_refiner(network.config.feature_dim, hand_model=hand_model)
    target_head = ti._head_from_vec(split['gt_vec'], hand_model)
    cfg = copy.deepcopy(config)
    cfg.refiner.max_steps_per_stage, cfg.refiner.epochs_per_stage, cfg.refiner.batch_size = 6, 6, 6
    before = {k: v.clone() for k, v in refiner.mlps['fingers'].state_dict().items()}
    record = ti.train_stage(
        refiner, 'translation', split['init_vec'], split['feature'], split['gt_vec'], target_head, cfg
    )
    assert record['steps'] == 6
    assert record['loss_after'] < 0.995 * record['loss_before']  # lr 1e-4 (IHMR), 6 steps: ~0.7 %
    # only the stage's own MLP is trained
    for k, v in refiner.mlps['fingers'].state_dict().items():
        assert torch.equal(v, before[k])


def test_tiny_run_weights_round_trip(run, setup):
    from hand_recon_ros.refine.weights import build_from_weights, load_refiner_weights, read_refiner_document

    hand_model, network, split = setup
    for factor, record in run['stages'].items():
        assert record['loss_after'] < record['loss_before'], factor
    assert run['joint_head']['loss_after'] < run['joint_head']['loss_before']
    manifest = json.loads((ti.Path(run['out_dir']) / 'manifest.json').read_text())
    from hand_recon_ros.runtime import sha256_of

    assert manifest['sha256'] == sha256_of(run['weights'])
    assert manifest['config']['init']['source'] == 'perturbed'
    assert set(manifest['metrics']['before']) == set(ti.EVAL_KEYS)
    assert read_refiner_document(run['weights'])['config']['factors'] == list(REFINE_FACTORS)

    refiner, head, document = build_from_weights(run['weights'], hand_model)
    assert document['config']['joint_head_side_params'] is False
    # the saved weights reproduce the run's evaluation exactly
    val = ti.prepare_split(ti.load_ihmr_config('ihmr_tiny'), 100001, 8, network, hand_model, torch.device('cpu'))
    again = ti.evaluate_refiner(refiner, head, val)
    assert again['after'] == pytest.approx(run['metrics']['after'], rel=1e-9, abs=1e-12)
    assert again['accept_rate'] == run['metrics']['accept_rate']
    # and the loaded modules differ from fresh ones (something was trained and loaded)
    from hand_recon_ros.refine.joint_head import JointHead, joint_template
    from hand_recon_ros.refine.refiner import build_refiner

    torch.manual_seed(123)
    fresh_r = build_refiner(network.config.feature_dim, hand_model=hand_model)
    fresh_h = JointHead(network.config.feature_dim, template=joint_template(hand_model))
    with torch.no_grad():
        out_fresh = fresh_h(val['feature'])['joints_3d']
        load_refiner_weights(fresh_r, fresh_h, run['weights'])
        out_loaded = fresh_h(val['feature'])['joints_3d']
        torch.testing.assert_close(out_loaded, head(val['feature'])['joints_3d'])
        assert float((out_fresh - out_loaded).abs().max()) > 1e-6
        cand = fresh_r.propose('fingers', val['init_vec'], val['feature'])
        torch.testing.assert_close(cand, refiner.propose('fingers', val['init_vec'], val['feature']))
    # a wrong architecture is refused with the list of problems
    wrong = build_refiner(network.config.feature_dim, hand_model=hand_model, hidden=(64, 32))
    with pytest.raises(ValueError, match='shape mismatch'):
        load_refiner_weights(wrong, fresh_h, run['weights'])


def test_acr_initial_state_goes_through_the_pipeline_camera_solve(setup):
    hand_model, network, _ = setup
    cfg = ti.load_ihmr_config('ihmr_tiny', OVERRIDES + ['init.source=acr'])
    split = ti.prepare_split(cfg, 1, 6, network, hand_model, torch.device('cpu'))
    n = len(split['index'])
    assert n + split['num_dropped'] + split['num_penetrating_gt'] <= 6 and n >= 1
    assert torch.isfinite(split['init_vec']).all()
    # the untrained network's hands are far from the truth, but placed in front of the camera (metric solve)
    assert float((split['init_vec'] - split['gt_vec']).abs().max()) > 0.05
    wl = split['init_vec'][:, 119:122] + 0.5 * split['init_vec'][:, :3]
    assert bool((wl[:, 2] > 0).all())


def test_trained_refiner_weights_are_loaded_by_the_pipeline(run):
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
    from hand_recon_ros.runtime import sha256_of

    rec = create_reconstructor(
        PipelineConfig(weights='untrained', device='cpu', input_size=128, refine_weights=str(run['weights']))
    )
    info = rec.info()
    assert info['refine_weights_sha256'] == sha256_of(run['weights'])
    from hand_recon_ros.acr.factory import find_shipped

    shipped = find_shipped('ihmr_default.safetensors')
    fresh = create_reconstructor(PipelineConfig(weights='untrained', device='cpu', input_size=128))
    # without refine_weights: the shipped refiner when one ships, else the untrained one
    assert fresh.info()['refine_weights_sha256'] == (sha256_of(shipped) if shipped else '')
    a = dict(rec.refiner.named_parameters())
    b = dict(fresh.refiner.named_parameters())
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match='refinement weights not found'):
        create_reconstructor(PipelineConfig(weights='untrained', device='cpu', refine_weights='/nope.safetensors'))


def test_refiner_export_to_float16_keeps_the_record_and_the_outputs(run, setup, tmp_path):
    from safetensors.torch import load_file

    from hand_recon_ros.refine.weights import build_from_weights, read_refiner_document
    from hand_recon_ros.runtime import sha256_of
    from hand_recon_train.export import export_refiner_fp16, main

    hand_model, network, _ = setup
    out = tmp_path / 'ihmr_fp16.safetensors'
    document = export_refiner_fp16(run['out_dir'], out)
    stored = read_refiner_document(out)
    sidecar = json.loads(out.with_suffix('.json').read_text())
    assert sidecar['extra']['sha256'] == sha256_of(out) == document['extra']['sha256']
    assert stored['extra']['trained_file_sha256'] == sha256_of(run['weights'])
    assert stored['extra']['metrics']['accept_rate'] == run['metrics']['accept_rate']
    assert stored['config'] == read_refiner_document(run['weights'])['config']
    assert {t.dtype for t in load_file(str(out)).values()} == {torch.float16}
    assert out.stat().st_size < 0.6 * ti.Path(run['weights']).stat().st_size

    r32, h32, _ = build_from_weights(run['weights'], hand_model)
    r16, h16, _ = build_from_weights(out, hand_model)
    feature = torch.randn(3, network.config.feature_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = h32(feature)['joints_3d'], h16(feature)['joints_3d']
        assert float((a - b).abs().max()) < 1e-3 * max(1.0, float(a.abs().max()))  # metres: under a millimetre
        assert not torch.equal(a, b)  # it really was rounded
    with pytest.raises(ValueError, match='not IHMR-MLP weights|no .ihmr_refiner. metadata'):
        export_refiner_fp16(_acr_file(tmp_path), tmp_path / 'x.safetensors')
    with pytest.raises(SystemExit):  # an intermediate network never defaults onto the shipped file
        main([str(run['out_dir']), '--checkpoint'])


def _acr_file(tmp_path):
    from hand_recon_ros.acr.factory import create_model
    from hand_recon_ros.acr.weights import save_acr

    path = tmp_path / 'acr.safetensors'
    save_acr(create_model('light', seed=0, input_size=64), path)
    return path
