"""Mixed synthetic + real training: source proportions, one key set per batch, a real augmented training run."""

import json
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from hand_recon_ros.acr.network import build_acr
from hand_recon_ros.acr.weights import load_acr
from hand_recon_train.datasets.mixed import TRAIN_KEYS, MixtureSampler, parse_real_sources
from hand_recon_train.export import export_fp16
from hand_recon_train.synth import SynthConfig, SynthDataset
from hand_recon_train.train import _training_data, load_config, train

from test_datasets_freihand import _write_official  # the loaders' own fixture writers
from test_datasets_interhand import _write_fixture


def test_sampler_follows_the_weights_not_the_sizes():
    sampler = MixtureSampler([1000, 10], [3.0, 1.0], num_samples=4000, seed=2)
    indices = list(sampler)
    assert len(indices) == 4000 and all(0 <= i < 1010 for i in indices)
    share_small = sum(i >= 1000 for i in indices) / len(indices)
    assert abs(share_small - 0.25) < 0.03  # 25 % although it holds 1 % of the samples
    assert len(set(i for i in indices if i >= 1000)) == 10  # and every one of its samples gets drawn
    assert list(sampler) == indices  # deterministic per epoch
    sampler.set_epoch(1)
    assert list(sampler) != indices
    other_rank = MixtureSampler([1000, 10], [3.0, 1.0], num_samples=4000, seed=2, rank=1)
    assert list(other_rank) != indices


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match='type must be one of'):
        parse_real_sources([{'type': 'coco', 'root': '/x'}])
    with pytest.raises(ValueError, match='needs a root'):
        parse_real_sources([{'type': 'freihand'}])
    with pytest.raises(ValueError, match='weight'):
        parse_real_sources([{'type': 'freihand', 'root': '/x', 'weight': -1}])
    with pytest.raises(ValueError, match='unknown keys'):
        parse_real_sources([{'type': 'freihand', 'root': '/x', 'ratio': 1}])
    with pytest.raises(ValueError, match='synth_weight'):
        load_config('tiny_cpu', ['data.synth_weight=0'])
    with pytest.raises(ValueError, match='augment'):
        load_config('tiny_cpu', ['data.augment={flip_prob: 2}'])
    # the loader is built at training time, and a missing dataset folder is named there
    config = load_config('tiny_cpu', ['data.real=[{type: freihand, root: ' + str(tmp_path / 'missing') + '}]'])
    with pytest.raises(FileNotFoundError, match='missing'):
        _training_data(None, config['data'], 0, build_acr('acr_light', input_size=64), 1, 0, 778)


@pytest.fixture(scope='module')
def real_roots(tmp_path_factory):
    folder = tmp_path_factory.mktemp('real')
    return _write_official(folder / 'frei', n=3, versions=1), _write_fixture(folder / 'ih')


def _mixed_config(out, roots, *extra):
    frei, ih = roots
    real = (
        f'data.real=[{{type: freihand, root: {frei}, weight: 1, options: {{versions: [0]}}}}, '
        f'{{type: interhand, root: {ih}, split: test, weight: 1}}]'
    )
    return load_config(
        'tiny_cpu',
        [
            f'train.out_dir={out}',
            'train.progress=false',
            'data.train_size=24',
            'data.val_size=4',
            'optim.batch_size=6',
            'optim.epochs=2',
            'train.threads=2',
            'data.synth_weight=1',
            'data.augment={enabled: true, motion_blur_prob: 0.5}',
            real,
            *extra,
        ],
    )


def test_batches_mix_the_sources_with_one_key_set(real_roots, tmp_path):
    config = _mixed_config(tmp_path, real_roots)
    model = build_acr('acr_light', input_size=128)
    synth = SynthDataset(
        SynthConfig.from_dict({'supersample': 1, 'image_size': 128}),
        seed=0,
        length=24,
        normalization=model.normalization,
    )
    data, sampler, epoch_aware, sources, augment = _training_data(synth, config['data'], 0, model, 1, 0, 778)
    assert [s['type'] for s in sources] == ['freihand', 'interhand'] and augment.enabled and len(epoch_aware) == 3
    seen = Counter()
    for batch in DataLoader(data, sampler=sampler, batch_size=6):
        assert set(batch) == set(TRAIN_KEYS)
        seen.update(batch['source'].tolist())
        # synthetic hands carry MANO and joint labels everywhere, real ones only where annotated
        synth_rows = batch['source'] == 0
        assert bool((batch['has_mano'][synth_rows] == batch['valid'][synth_rows]).all())
        assert bool((batch['has_vertices'][batch['source'] != 0] == 0).all())  # no meshes in real data
        assert bool((batch['has_vertices'][synth_rows] == batch['valid'][synth_rows]).all())
        frei_rows = batch['source'] == 1
        assert not batch['valid'][frei_rows][:, 0].any() or augment.flip_prob > 0  # one hand, maybe mirrored
    assert set(seen) == {0, 1, 2} and sum(seen.values()) == 24


def test_mixed_augmented_training_runs_and_records_its_data(real_roots, tmp_path):
    torch.manual_seed(0)
    result = train(_mixed_config(tmp_path, real_roots, 'train.max_steps=6', 'loss.weights={edge: 100, normal: 10}'))
    assert len(result['history']) == 6
    assert result['skipped_steps'] == 0  # the collinear FreiHAND fixture hand gives finite grads
    assert all(torch.isfinite(torch.tensor(h['total'])) for h in result['history'])
    assert any('pose' in h for h in result['history'])  # MANO supervision from synthetic + FreiHAND
    assert any('edge' in h and 'normal' in h for h in result['history'])  # mesh terms from the synthetic share
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    assert [s['type'] for s in manifest['data']['real']] == ['freihand', 'interhand']
    assert manifest['data']['augment']['enabled'] is True
    assert 'freihand + interhand' in manifest['description'] and 'augmentation' in manifest['description']


def test_warm_start_loads_the_given_weights(tmp_path):
    first = train(
        load_config(
            'tiny_cpu',
            [
                f'train.out_dir={tmp_path / "a"}',
                'train.progress=false',
                'train.max_steps=2',
                'data.train_size=8',
                'data.val_size=4',
                'train.threads=2',
            ],
        )
    )
    # lr 0: the run's exported parameters are exactly the warm-start weights (BatchNorm statistics still move)
    second = train(
        load_config(
            'tiny_cpu',
            [
                f'train.out_dir={tmp_path / "b"}',
                'train.progress=false',
                'train.max_steps=1',
                'data.train_size=8',
                'data.val_size=4',
                'optim.lr=0',
                'optim.weight_decay=0',
                'train.threads=2',
                f'train.init_weights={first["model"]}',
            ],
        )
    )
    a, b = load_acr(first['model']), load_acr(second['model'])
    fresh = build_acr('acr_light', input_size=128)
    names = [n for n, _ in a.named_parameters()]
    assert all(torch.equal(dict(a.named_parameters())[n], dict(b.named_parameters())[n]) for n in names)
    assert not all(torch.equal(dict(a.named_parameters())[n], dict(fresh.named_parameters())[n]) for n in names)
    # the chain of runs is recorded (each stage's steps, samples and weights hash) and reaches the shipped JSON
    first_manifest = json.loads((tmp_path / 'a' / 'manifest.json').read_text())
    stages = json.loads((tmp_path / 'b' / 'manifest.json').read_text())['stages']
    assert [(st['steps'], st['sha256']) for st in stages] == [(2, first_manifest['sha256']), (1, stages[1]['sha256'])]
    assert stages[0] == first_manifest['stages'][0]
    assert stages[1]['samples'] == 1 * load_config('tiny_cpu')['optim']['batch_size']
    doc = export_fp16(tmp_path / 'b', tmp_path / 'shipped.safetensors')
    assert [st['steps'] for st in doc['extra']['training']['stages']] == [2, 1]
    assert all(not str(st['config_source']).startswith('/') for st in doc['extra']['training']['stages'])
    with pytest.raises(FileNotFoundError):
        train(
            load_config(
                'tiny_cpu',
                [
                    f'train.out_dir={tmp_path / "c"}',
                    'train.progress=false',
                    'train.max_steps=1',
                    f'train.init_weights={tmp_path / "none.safetensors"}',
                ],
            )
        )
