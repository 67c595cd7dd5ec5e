"""The refiner records which ACR network's features it was trained on; the pipeline says when they differ."""

import logging

import pytest

from hand_recon_ros.acr.factory import find_shipped
from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
from hand_recon_ros.refine import JointHead, build_refiner, joint_template
from hand_recon_ros.refine.weights import save_refiner_weights
from hand_recon_ros.runtime import sha256_of


@pytest.fixture(scope='module')
def shipped_sha():
    path = find_shipped('acr_default.safetensors')
    if path is None:
        pytest.skip('no shipped ACR model')
    return sha256_of(path)


@pytest.fixture(scope='module')
def hand_model():
    from hand_recon_ros.hand_model.model import load_hand_model

    return load_hand_model()


def _refiner_file(tmp_path, hand_model, feature_dim, acr_sha256):
    refiner = build_refiner(feature_dim, hand_model=hand_model)
    head = JointHead(feature_dim, template=joint_template(hand_model))
    path = tmp_path / f'refiner_{acr_sha256[:6] or "none"}.safetensors'
    save_refiner_weights(refiner, head, path, hand_model_identity=hand_model.identity, extra={'acr_sha256': acr_sha256})
    return path


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize('recorded, expected', [('same', True), ('0' * 64, False), ('', None)])
def test_pairing_is_checked_against_the_loaded_network(tmp_path, hand_model, shipped_sha, recorded, expected):
    probe = create_reconstructor(PipelineConfig(device='cpu', refine=False))
    path = _refiner_file(
        tmp_path, hand_model, probe.network.config.feature_dim, shipped_sha if recorded == 'same' else recorded
    )
    logger = logging.getLogger(f'pairing_{recorded[:4]}')
    capture = _Capture()
    logger.addHandler(capture)
    rec = create_reconstructor(PipelineConfig(device='cpu', refine_weights=str(path)), logger=logger)
    assert rec.refiner_matches_network() is expected
    warned = [m for m in capture.messages if 'trained on the features of another ACR network' in m]
    assert bool(warned) == (expected is False)


def test_stages_follow_the_acceptance_recorded_with_the_weights(tmp_path, hand_model, shipped_sha):
    probe = create_reconstructor(PipelineConfig(device='cpu', refine=False))
    refiner = build_refiner(probe.network.config.feature_dim, hand_model=hand_model)
    head = JointHead(probe.network.config.feature_dim, template=joint_template(hand_model))
    path = tmp_path / 'refiner_rates.safetensors'
    rates = {'translation': 0.3, 'left_orient': 0.0, 'right_orient': 0.1, 'fingers': 0.05, 'shape': 0.0}
    extra = {'acr_sha256': shipped_sha, 'metrics': {'accept_rate': rates}}
    save_refiner_weights(refiner, head, path, hand_model_identity=hand_model.identity, extra=extra)
    rec = create_reconstructor(PipelineConfig(device='cpu', refine_weights=str(path)))
    assert rec.refiner.stages == ('translation', 'right_orient', 'fingers')
    assert rec.info()['refine_stages'] == ['translation', 'right_orient', 'fingers']
    rec.set_runtime(refine_stages='all')
    assert len(rec.refiner.stages) == 5
    with pytest.raises(ValueError):
        rec.set_runtime(refine_stages='camera', detection_threshold=0.9)
    assert len(rec.refiner.stages) == 5 and rec.detection_threshold != 0.9  # refused: nothing changed
    rec = create_reconstructor(PipelineConfig(device='cpu', refine_weights=str(path), refine_stages='shape'))
    assert rec.refiner.stages == ('shape',)


def test_shipped_refiner_runs_the_stages_its_held_out_pairs_accepted():
    path = find_shipped('ihmr_default.safetensors')
    if path is None:
        pytest.skip('no shipped refiner')
    from hand_recon_ros.refine.weights import read_refiner_document

    rates = read_refiner_document(path)['extra']['metrics']['accept_rate']
    rec = create_reconstructor(PipelineConfig(device='cpu'))
    assert rec.refiner.stages == tuple(f for f in rec.refiner.factors if rates[f] > 0)
