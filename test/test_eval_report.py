"""Synthetic-split evaluation report: subsets, metric plumbing (known answers), agreement with the per-epoch
metrics, CLI."""

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.acr.network import build_acr
from hand_recon_ros.conventions import ROOT_MIDDLE_MCP, ROOT_WRIST, SIDES
from hand_recon_ros.hand_model.model import load_hand_model
from hand_recon_train.datasets.common import is_close_interaction
from hand_recon_train.evaluation import cli, epoch_metrics, report
from hand_recon_train.synth import SynthConfig, SynthDataset

SEED, NUM, SIZE = 3, 12, 128
# the generator's two-hand scenes keep the hands >= ~45 mm apart (mean nearest joint): a wider threshold than the
# 40 mm default makes 'close' a strict, non-empty part of 'interacting' on this split
CLOSE_M = 0.1


@pytest.fixture(scope='module')
def setup():
    torch.manual_seed(0)
    model = build_acr('acr_light', input_size=SIZE)
    hand_model = load_hand_model()
    data = SynthDataset(
        SynthConfig(image_size=SIZE, supersample=1), seed=SEED, length=NUM, normalization=model.normalization
    )
    result = report.evaluate_split(
        model, data, hand_model, torch.device('cpu'), DecodeConfig(), batch_size=5, close_threshold_m=CLOSE_M
    )
    return model, hand_model, data, result


def _expected_subsets(data):
    subsets = {name: set() for name in report.SUBSETS}
    hands = {}
    for i in range(len(data)):
        item = data[i]
        valid = item['valid'].numpy()
        hands[i] = int(valid.sum())
        subsets['all'].add(i)
        if valid.sum() == 1:
            subsets['single'].add(i)
        elif valid.all():
            subsets['interacting'].add(i)
            if is_close_interaction(item['joints_3d'][0].numpy(), item['joints_3d'][1].numpy(), threshold=CLOSE_M):
                subsets['close'].add(i)
    return subsets, hands


def test_subsets_partition_the_split_as_the_ground_truth_says(setup):
    _, _, data, result = setup
    expected, hands = _expected_subsets(data)
    assert 0 < len(expected['close']) < len(expected['interacting'])  # the check below can tell them apart
    assert len(expected['single']) > 0
    for name, members in expected.items():
        group = result['subsets'][name]
        assert group['num_images'] == len(members), name
        assert group['num_hands'] == sum(hands[i] for i in members), name
        assert {im['index'] for im in result['per_image'] if name in im['subsets']} == members, name
    assert result['subsets']['interacting']['num_pairs'] == len(expected['interacting'])
    assert result['subsets']['single']['num_pairs'] == 0
    no_hand = sum(1 for i in range(len(data)) if hands[i] == 0)
    assert len(expected['single']) + len(expected['interacting']) + no_hand == NUM
    scenes = [str(data.raw(i)['scene']) for i in range(NUM)]
    assert {s: g['num_images'] for s, g in result['scenes'].items()} == {s: scenes.count(s) for s in set(scenes)}


def test_all_subset_agrees_with_the_trainers_evaluate(setup):
    model, hand_model, data, result = setup
    reference = epoch_metrics.evaluate(
        model, DataLoader(data, batch_size=4), hand_model, torch.device('cpu'), DecodeConfig()
    )
    group = result['subsets']['all']
    mcp = group['protocols']['middle_mcp']
    assert group['num_hands'] == reference['num_hands'] == result['num_hands']
    for ours, key in (
        (mcp['mpjpe_mm'], 'mpjpe_mm'),
        (mcp['pa_mpjpe_mm'], 'pa_mpjpe_mm'),
        (mcp['mpvpe_mm'], 'mpvpe_mm'),
        (group['root_error_mm'], 'root_error_mm'),
        (group['depth_ratio_median'], 'depth_ratio'),
    ):
        assert math.isfinite(ours) and ours == pytest.approx(reference[key], rel=1e-4), key
    for key in ('recall', 'precision'):
        both_nan = math.isnan(group[key]) and math.isnan(reference[key])
        assert both_nan or group[key] == pytest.approx(reference[key]), key


def test_metrics_finite_where_defined_and_nan_where_not(setup):
    _, _, _, result = setup
    for name in ('all', 'interacting', 'close', 'single'):
        for proto in report.PROTOCOLS:
            row = result['subsets'][name]['protocols'][proto]
            assert all(math.isfinite(row[k]) and row[k] > 0 for k in report.HAND_KEYS), (name, proto)
    # an untrained network: errors of several cm, not zero and not absurd
    assert 10.0 < result['subsets']['all']['protocols']['middle_mcp']['mpjpe_mm'] < 500.0
    for name in ('interacting', 'close'):
        two = result['subsets'][name]['two_hand']
        assert all(math.isfinite(v) for v in two.values()), name
        assert math.isfinite(result['subsets'][name]['protocols']['wrist']['mrrpe_mm'])
    single = result['subsets']['single']
    assert all(math.isnan(v) for v in single['two_hand'].values())
    assert math.isnan(single['protocols']['middle_mcp']['mrrpe_mm'])
    # MPJPE depends on the root, PA-MPJPE does not
    mcp, wrist = (result['subsets']['all']['protocols'][p] for p in ('middle_mcp', 'wrist'))
    assert mcp['pa_mpjpe_mm'] == wrist['pa_mpjpe_mm'] and mcp['mpjpe_mm'] != wrist['mpjpe_mm']


def test_depth_ratio_is_the_placed_over_the_true_depth(setup):
    """Per hand: placed / true middle-MCP depth, consistent with the root error; per subset: the median."""
    _, _, data, result = setup
    hands = [h for h in result['per_hand'] if math.isfinite(h['depth_ratio'])]
    assert hands
    for h in hands:
        true = data[h['index']]['joints_3d'][SIDES.index(h['side']), ROOT_MIDDLE_MCP].double().numpy()
        depth_error_mm = abs(h['depth_ratio'] - 1.0) * true[2] * 1e3
        assert h['depth_ratio'] > 0 and depth_error_mm <= h['root_error_mm'] + 1e-6
    expected = float(np.median([h['depth_ratio'] for h in hands]))
    assert result['subsets']['all']['depth_ratio_median'] == pytest.approx(expected, rel=1e-12)


def test_single_hand_split_has_no_two_hand_metrics(setup, tmp_path):
    model, hand_model, _, _ = setup
    data = SynthDataset(
        SynthConfig(image_size=SIZE, supersample=1, scene_weights={'single': 1.0}),
        seed=5,
        length=3,
        normalization=model.normalization,
    )
    result = report.evaluate_split(model, data, hand_model, None, None)
    assert result['subsets']['interacting']['num_images'] == result['subsets']['close']['num_images'] == 0
    assert result['subsets']['single']['num_images'] == 3 and set(result['scenes']) == {'single'}
    assert math.isnan(result['subsets']['all']['two_hand']['i_mpjpe_mm'])
    assert math.isnan(result['subsets']['interacting']['protocols']['wrist']['mpjpe_mm'])
    report.write_report(result, tmp_path)
    saved = json.loads((tmp_path / 'eval_report.json').read_text())  # strict JSON: NaN written as null
    assert saved['subsets']['all']['two_hand']['i_mpjpe_mm'] is None
    assert saved['subsets']['single']['protocols']['middle_mcp']['mpjpe_mm'] > 0
    assert '| interacting | 0 | 0 | - | - | - | - | - |' in (tmp_path / 'eval_report.md').read_text()


def _two_hand_gt(data, hand_model):
    for i in range(len(data)):
        item = data[i]
        if item['valid'].all():
            return {
                side: (item['joints_3d'][s].double().numpy(), item['vertices'][s].double().numpy())
                for s, side in enumerate(SIDES)
            }
    raise AssertionError('no two-hand sample')


def test_perfect_prediction_scores_zero_and_reproduces_the_gt_penetration(setup):
    _, hand_model, data, _ = setup
    gt = _two_hand_gt(data, hand_model)
    for side in SIDES:
        row = report.hand_errors(*gt[side], *gt[side])
        assert set(row) == {f'{p}/{k}' for p in report.PROTOCOLS for k in report.HAND_KEYS}
        assert all(abs(v) < 1e-6 for v in row.values()), row
    pair = report.pair_errors(gt, gt, hand_model)
    assert pair['placed']
    for key in ('i_mpjpe_mm', 'i_mpjpe_iso_mm', 'middle_mcp/mrrpe_mm', 'wrist/mrrpe_mm'):
        assert abs(pair[key]) < 1e-6, key
    assert pair['ave_p_mm'] == pair['gt_ave_p_mm'] and pair['max_p_mm'] == pair['gt_max_p_mm']


def test_known_shift_and_interpenetration(setup):
    _, hand_model, data, _ = setup
    gt = _two_hand_gt(data, hand_model)
    shift = np.array([0.01, 0.0, 0.0])
    pred = {'left': gt['left'], 'right': (gt['right'][0] + shift, gt['right'][1] + shift)}
    pair = report.pair_errors(pred, gt, hand_model)
    # a pure translation of one hand: root-relative errors stay 0, the relative root moves by exactly 10 mm
    assert report.hand_errors(*pred['right'], *gt['right'])['wrist/mpjpe_mm'] < 1e-6
    assert pair['middle_mcp/mrrpe_mm'] == pytest.approx(10.0) and pair['wrist/mrrpe_mm'] == pytest.approx(10.0)
    assert pair['i_mpjpe_iso_mm'] > 1.0
    # right hand moved onto the left one: deep interpenetration, far above the ground-truth reference
    onto = gt['left'][0][ROOT_MIDDLE_MCP] - gt['right'][0][ROOT_MIDDLE_MCP]
    pred = {'left': gt['left'], 'right': (gt['right'][0] + onto, gt['right'][1] + onto)}
    pair = report.pair_errors(pred, gt, hand_model)
    assert pair['max_p_mm'] > 5.0 and pair['ave_p_mm'] > pair['gt_ave_p_mm'] + 0.5
    # one side not placed: predicted two-hand metrics undefined, the GT reference still there
    pair = report.pair_errors({'left': gt['left'], 'right': None}, gt, hand_model)
    assert not pair['placed'] and math.isnan(pair['i_mpjpe_mm']) and math.isnan(pair['ave_p_mm'])
    assert math.isfinite(pair['gt_ave_p_mm'])


def test_place_hand_is_a_pure_translation_near_the_ground_truth(setup):
    _, _, data, _ = setup
    item = data[0]
    joints, verts = item['joints_3d'][0].double().numpy(), item['vertices'][0].double().numpy()
    offset = np.array([0.3, -0.2, 5.0])  # any model-frame origin: placement is root-relative
    K = item['K'].double().numpy()
    placed_j, placed_v = report.place_hand(joints + offset, verts + offset, item['cam'][0].tolist(), K, SIZE)
    np.testing.assert_allclose(placed_v - placed_j[ROOT_WRIST], verts - joints[ROOT_WRIST], atol=1e-12)
    root_error = np.linalg.norm(placed_j[ROOT_MIDDLE_MCP] - joints[ROOT_MIDDLE_MCP])
    assert root_error < 0.1 * joints[ROOT_MIDDLE_MCP, 2]  # the fitted weak camera: within 10 % of the depth
    assert report.place_hand(joints, verts, [0.0, 0.1, 0.1], K, SIZE) is None
    assert report.place_hand(joints, verts, [float('nan'), 0.0, 0.0], K, SIZE) is None


def test_projection_error_of_the_ground_truth_is_small_and_an_offset_shows_in_pixels(setup):
    """The trainer's 2D metric at the ground-truth joints and fitted weak camera: only the weak-vs-full
    perspective residual is left; shifting the camera by 0.1 (normalised) adds 0.1 * SIZE / 2 pixels."""
    _, _, data, _ = setup
    item = data[0]
    side = int(np.nonzero(item['valid'].numpy())[0][0])
    joints, cam = item['joints_3d'][side].double().numpy(), item['cam'][side].double().numpy()
    gt_2d, visible = item['joints_2d'][side].numpy(), item['joints_vis'][side].numpy()
    exact = epoch_metrics.projection_error_px(joints, cam, gt_2d, visible, SIZE)
    assert exact < 3.0
    shifted = epoch_metrics.projection_error_px(joints, cam + np.array([0.0, 0.1, 0.0]), gt_2d, visible, SIZE)
    assert abs(shifted - 0.1 * SIZE / 2) < exact + 1e-9
    assert epoch_metrics.projection_error_px(joints, cam, gt_2d, np.zeros(21), SIZE) is None


def test_bad_arguments_are_rejected(setup):
    model, hand_model, data, result = setup
    with pytest.raises(ValueError, match='batch_size'):
        report.evaluate_split(model, data, hand_model, batch_size=0)
    with pytest.raises(ValueError, match='close_threshold_m'):
        report.evaluate_split(model, data, hand_model, close_threshold_m=-1.0)
    with pytest.raises(ValueError, match='evaluate_split'):
        report.write_report({'subsets': {}}, '/nonexistent-never-written')


def test_cli_writes_json_markdown_and_plot(tmp_path, capsys):
    out = tmp_path / 'report'
    assert (
        cli.main(
            [
                '--untrained',
                '--input-size',
                str(SIZE),
                '--num',
                '6',
                '--seed',
                str(SEED),
                '--close-threshold',
                str(CLOSE_M),
                '--out',
                str(out),
            ]
        )
        == 0
    )
    saved = json.loads((out / 'eval_report.json').read_text())
    assert saved['num_images'] == 6 and saved['meta']['network'] == f'acr/resnet18@{SIZE}'
    assert saved['subsets']['all']['num_hands'] == len(saved['per_hand']) > 0
    markdown = (out / 'eval_report.md').read_text()
    assert 'UNTRAINED' in markdown
    for name in report.SUBSETS:
        g = saved['subsets'][name]
        assert f"| {name} | {g['num_images']} | {g['num_hands']} |" in markdown, name
    assert markdown.count('| all |') >= 4 and '## Per generator scene' in markdown
    png = (out / 'eval_report.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 20000
    capsys.readouterr()
    assert cli.main(['--untrained', '--input-size', str(SIZE), '--num', '2', '--seed', str(SEED)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed['num_images'] == 2
        and 'per_hand' not in printed
        and 'middle_mcp' in printed['subsets']['all']['protocols']
    )
    with pytest.raises(SystemExit):
        cli.main(['--num', '2'])  # neither --weights nor --untrained
