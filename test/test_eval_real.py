"""Real-image check of the evaluation CLI on the 4 InterHand2.6M frames (skipped without shared/realimgs)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from hand_recon_ros.conventions import SIDES
from hand_recon_train.datasets import InterHandAnnotations, project
from hand_recon_train.evaluation import cli, interhand

from conftest import REALIMGS

INTERHAND_REAL = REALIMGS / 'interhand26m_mmpose'
DERIVED = REALIMGS / 'derived' / 'interhand26m_gt_camera.json'


@pytest.fixture(scope='module')
def derived():
    if not (INTERHAND_REAL / 'test_interhand2.6m_data.json').is_file() or not DERIVED.is_file():
        pytest.skip(
            f'real InterHand2.6M frames not available at {INTERHAND_REAL} (shared/realimgs is not part of '
            'the repository)'
        )
    return {im['file']: im for im in json.loads(DERIVED.read_text())['images']}


class _OracleReconstructor:
    """Returns the ground-truth hands (optionally the right one shifted), to check the metric plumbing."""

    def __init__(self, shift_right_m=(0.0, 0.0, 0.0)):
        self.frames = iter(InterHandAnnotations(INTERHAND_REAL, 'test'))
        self.shift = np.asarray(shift_right_m)
        self.detection_threshold = 0.5

    def info(self):
        return {
            'network': 'oracle',
            'weights_file': 'oracle.safetensors',
            'weights_sha256': '',
            'weights_description': '',
            'hand_model': 'none',
            'hand_model_is_standin': False,
            'device': 'cpu',
            'precision': 'fp32',
        }

    def reconstruct(self, image, K):
        frame = next(self.frames)
        assert image.shape[:2] == (frame.height, frame.width)
        hands = []
        for s, side in enumerate(SIDES):
            if frame.hand_valid[s]:
                joints = frame.joints_cam[s] + (self.shift if side == 'right' else 0.0)
                hands.append(
                    SimpleNamespace(handedness=side, score=0.9, joints_3d=joints, keypoints_2d=project(joints, K))
                )
        return SimpleNamespace(hands=hands)


def test_oracle_gives_zero_errors_and_a_known_shift(derived):
    report = interhand.evaluate_interhand(_OracleReconstructor(), INTERHAND_REAL)
    s = report['summary']
    assert not report['untrained'] and s['num_frames'] == 4 and s['gt_hands'] == s['detected_gt_hands'] == 6
    assert s['mpjpe_mm'] < 1e-9 and s['root_error_mm'] < 1e-9 and s['error_2d_px'] < 1e-6 and s['mrrpe_mm'] < 1e-9
    assert s['false_sides'] == 0
    shifted = interhand.evaluate_interhand(_OracleReconstructor((0.01, 0.0, 0.0)), INTERHAND_REAL)
    for f in shifted['frames']:
        if 'right' in f['hands']:
            assert f['hands']['right']['root_error_mm'] == pytest.approx(10.0)
            assert f['hands']['right']['mpjpe_mm'] == pytest.approx(0.0, abs=1e-9)  # wrist-relative
            assert f['hands']['right']['error_2d_px'] > 5.0  # 1 cm at ~1 m with f ~ 1270 px: ~ 12 px
        if f['hand_type'] == 'interacting':
            assert f['mrrpe_mm'] == pytest.approx(10.0)
            assert f['hands']['left']['root_error_mm'] == pytest.approx(0.0, abs=1e-9)


def test_cli_untrained_light_model_on_the_real_frames(derived, tmp_path, capsys):
    out = tmp_path / 'report'
    code = cli.main(
        [
            '--interhand',
            str(INTERHAND_REAL),
            '--untrained',
            '--input-size',
            '128',
            '--threshold',
            '0',
            '--no-refine',
            '--out',
            str(out),
        ]
    )
    assert code == 0
    report = json.loads((out / 'interhand_report.json').read_text())
    markdown = (out / 'interhand_report.md').read_text()
    assert markdown in capsys.readouterr().out
    assert report['untrained'] and 'UNTRAINED' in report['note'] and 'UNTRAINED' in markdown
    assert report['model']['network'] == 'acr/resnet18@128'
    assert len(report['frames']) == 4 and report['summary']['gt_hands'] == 6
    assert markdown.count('.jpg |') == 6  # one table row per ground-truth hand
    for f in report['frames']:
        gt = derived[f['image']]
        assert (
            f['gt_sides'] == {'right': ['right'], 'left': ['left'], 'interacting': ['left', 'right']}[gt['hand_type']]
        )
        assert f['detected_sides'] == ['left', 'right']  # threshold 0: every side gets its best peak
        cam_mm = np.asarray(gt['joints_cam_mm'])
        for side, h in f['hands'].items():
            wrist_gt = cam_mm[20 if side == 'right' else 41]  # derived order: wrist last in each hand
            np.testing.assert_allclose(np.asarray(h['gt_wrist_m']) * 1000, wrist_gt, atol=1.0)
            err = np.linalg.norm(np.asarray(h['pred_wrist_m']) * 1000 - wrist_gt)
            assert h['root_error_mm'] == pytest.approx(err, abs=1.0)
            assert np.isfinite([h['mpjpe_mm'], h['error_2d_px']]).all() and h['mpjpe_mm'] > 0
        if gt['hand_type'] == 'interacting':
            h = f['hands']
            rel_pred = np.subtract(h['right']['pred_wrist_m'], h['left']['pred_wrist_m']) * 1000
            assert f['mrrpe_mm'] == pytest.approx(np.linalg.norm(rel_pred - (cam_mm[20] - cam_mm[41])), abs=1.0)
        else:
            assert f['mrrpe_mm'] is None
    assert report['summary']['false_sides'] == 2


def test_cli_argument_errors(tmp_path):
    with pytest.raises(SystemExit):
        cli.main([])  # synthetic mode still needs --weights
    with pytest.raises(FileNotFoundError, match='InterHand2.6M folder not found'):
        cli.main(['--interhand', str(tmp_path / 'absent'), '--untrained', '--input-size', '64'])
