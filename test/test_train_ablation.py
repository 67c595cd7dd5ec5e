"""Aggregation ablation runner (hand_recon_train.ablation) with a seconds-long budget: three variants trained
from the same base, a Markdown table marked 'budget too small to conclude', the IHMR-MLP rows with --refiner."""

import json

import pytest

from hand_recon_train import ablation, train_ihmr

SET = ['train.threads=1']


@pytest.fixture(scope='module')
def refiner_weights(tmp_path_factory):
    cfg = train_ihmr.load_ihmr_config('ihmr_tiny', SET + ['data.train_size=8', 'data.val_size=4'])
    cfg['train']['out_dir'] = str(tmp_path_factory.mktemp('ihmr'))
    return train_ihmr.train_ihmr(cfg)['weights']


@pytest.fixture(scope='module')
def report(tmp_path_factory, refiner_weights):
    config = ablation.load_ablation_config('ablation_tiny', SET)
    config['out_dir'] = str(tmp_path_factory.mktemp('ablation'))
    config['refiner_val_size'] = 6
    return config, ablation.run_ablation(config, refiner_weights)


def test_config_validation(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('base: tiny_cpu\nvariants: [global, part_only]\n')
    with pytest.raises(ValueError, match='variants'):
        ablation.load_ablation_config(bad)
    bad.write_text('base: tiny_cpu\nepochs: 3\n')
    with pytest.raises(ValueError, match='unknown ablation keys'):
        ablation.load_ablation_config(bad)
    light = ablation.load_ablation_config('ablation_light')
    assert light['base'] == 'light_synthetic' and 'optim.epochs=10' in light['set']


def test_variants_trained_with_the_same_budget_and_saved_with_their_switch(report):
    from hand_recon_ros.acr.weights import load_acr_config

    config, rep = report
    assert [r['variant'] for r in rep['rows']] == list(ablation.VARIANTS)
    assert {r['steps'] for r in rep['rows']} == {2} and {r['samples'] for r in rep['rows']} == {8}
    for row in rep['rows']:
        assert load_acr_config(row['weights']).aggregation == row['variant']
        assert row['mpjpe_mm'] > row['pa_mpjpe_mm'] > 0 and 0.0 <= row['recall'] <= 1.0
    # same seed and data, different architectures in effect: 'global' and 'full' do not score the same
    by = {r['variant']: r for r in rep['rows']}
    assert by['global']['mpjpe_mm'] != by['full']['mpjpe_mm']


def test_markdown_marks_a_small_budget_and_holds_the_refiner_effect(report):
    config, rep = report
    assert rep['conclusive'] is False
    md = (ablation.Path(config['out_dir']) / 'ablation.md').read_text()
    assert ablation.TOO_SMALL in md
    assert md.count('\n| ') >= 3 + 3  # 3 variant rows + header, 2 refiner rows + header
    for row in rep['rows']:
        assert f"| {row['steps']} | {row['samples']} | {row['mpjpe_mm']:.1f} |" in md
    ref = rep['refiner']
    assert ref['num_pairs'] >= 1 and set(ref['before']) == {'mpjpe_mm', 'i_mpjpe_mm', 'ave_p_mm', 'max_p_mm'}
    assert ref['after']['ave_p_mm'] <= ref['before']['ave_p_mm'] + 1e-9  # verified refinement never adds depth
    assert 'AVE-P' in md and 'I-MPJPE' in md and f"{ref['before']['i_mpjpe_mm']:.1f}" in md
    saved = json.loads((ablation.Path(config['out_dir']) / 'ablation.json').read_text())
    assert saved['rows'][0]['variant'] == 'global'
    # a budget at or above the threshold drops the warning
    assert ablation.TOO_SMALL not in ablation.ablation_markdown({**rep, 'conclusive': True})
