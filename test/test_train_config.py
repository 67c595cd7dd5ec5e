"""Typed training configs (hand_recon_train.config): every shipped config loads, bad keys and values are refused
with their key path, ``--set`` overrides are converted to the field's type, old run records still read."""

import json

import pytest

from hand_recon_train.config import CONFIG_DIR, IhmrConfig, TrainConfig, build_config, config_path, load_config
from hand_recon_train.train import load_config as load_acr_config
from hand_recon_train.train_ihmr import as_ihmr_config, load_ihmr_config

ABLATION = ('ablation_',)  # ablation configs name a base train config and overrides (hand_recon_train.ablation)
SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob('*.yaml') if not p.stem.startswith(ABLATION))


def test_configs_are_shipped():
    assert {'tiny_cpu', 'default_cpu', 'real_cpu', 'ihmr_tiny', 'ihmr_synthetic'} <= set(SHIPPED)


@pytest.mark.parametrize('name', SHIPPED)
def test_every_shipped_config_loads(name):
    config = load_config(name)
    assert isinstance(config, IhmrConfig if name.startswith('ihmr') else TrainConfig)
    assert config.config_source == str(config_path(name))
    # the run record keeps the file's values: every key of the YAML is in the stored dict with its value
    import yaml

    raw = yaml.safe_load(config_path(name).read_text())
    stored = config.to_dict()
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert stored[section][key] == value, f'{section}.{key}'
    # and the dict rebuilds the same config (what an old manifest or refiner JSON holds)
    assert build_config(type(config), json.loads(json.dumps(stored))) == config


def test_every_ablation_config_names_a_loadable_base():
    from hand_recon_train.ablation import load_ablation_config

    for path in CONFIG_DIR.glob('ablation_*.yaml'):
        ablation = load_ablation_config(path.stem)
        assert isinstance(load_acr_config(ablation['base'], ablation['set']), TrainConfig)


@pytest.mark.parametrize(
    'override, message',
    [
        ('optim.lrr=1', "unknown config key 'optim.lrr'"),
        ('train.max_step=3', "unknown config key 'train.max_step'"),
        ('modle.preset=acr_light', "unknown config key 'modle'"),
        ('optim.lr=fast', 'optim.lr must be a number'),
        ('optim.batch_size=2.5', 'optim.batch_size must be an int'),
        ('optim.lr_steps=[1, x]', r'optim.lr_steps\[1\] must be an int'),
        ('optim.lr_steps=3', 'optim.lr_steps must be a list'),
        ('train.progress=maybe', 'train.progress must be true or false'),
        ('model.overrides=3', 'model.overrides must be a mapping'),
        ('data.synth.supersampel=2', 'data.synth: unknown SynthConfig keys'),
        ('loss.weights={posee: 1}', 'loss: unknown loss weights'),
        ('decode.threshold=2', 'decode: threshold must be in'),
        ('data.augment={flip_prob: 2}', 'data.augment'),
    ],
)
def test_bad_acr_values_name_their_key_path(override, message):
    with pytest.raises(ValueError, match=message):
        load_acr_config('tiny_cpu', [override])


@pytest.mark.parametrize(
    'override, message',
    [
        ('refiner.lrr=1', "unknown config key 'refiner.lrr'"),
        ('joint_head.weights.j4d=1', "unknown config key 'joint_head.weights.j4d'"),
        ('loss.colision=1', "unknown config key 'loss.colision'"),
        ('refiner.batch_size=0', 'refiner.batch_size must be a positive int'),
        ('init.approach=[0.1]', 'init.approach'),
        ('acr.input_size=big', 'acr.input_size must be an int'),
    ],
)
def test_bad_ihmr_values_name_their_key_path(override, message):
    with pytest.raises(ValueError, match=message):
        load_ihmr_config('ihmr_tiny', [override])


def test_a_file_with_an_unknown_key_is_refused(tmp_path):
    path = tmp_path / 'typo.yaml'
    path.write_text(config_path('tiny_cpu').read_text().replace('  lr: 3.0e-4', '  lrr: 3.0e-4'))
    with pytest.raises(ValueError, match="unknown config key 'optim.lrr'"):
        load_acr_config(path)
    # an ACR config is not an IHMR config and the other way round
    with pytest.raises(ValueError, match="unknown config key 'model'"):
        load_ihmr_config('tiny_cpu')
    with pytest.raises(ValueError, match="unknown config key 'acr'"):
        load_acr_config('ihmr_tiny')


def test_overrides_are_converted_to_the_field_type():
    config = load_acr_config(
        'tiny_cpu',
        [
            'optim.lr=1e-3',
            'optim.weight_decay=0',
            'train.out_dir=2024',
            'train.max_steps=7',
            'train.init_weights=null',
            'data.synth.supersample=2',
            'optim.lr_steps=[1, 2]',
        ],
    )
    assert config.optim.lr == 0.001 and isinstance(config.optim.weight_decay, float)
    assert config.train.out_dir == '2024'  # YAML would read an int: the field is a string
    assert config.train.max_steps == 7 and config.train.init_weights is None
    assert config.data.synth == {'supersample': 2} and config.optim.lr_steps == [1, 2]
    assert config['optim']['lr'] == config.optim.lr  # mapping access for older callers
    ihmr = load_ihmr_config('ihmr_tiny', ['joint_head.weights.j3d=50', 'refiner.max_steps_per_stage=null'])
    assert ihmr.joint_head.weights.j3d == 50.0 and ihmr.refiner.max_steps_per_stage is None
    with pytest.raises(ValueError, match='section.key=value'):
        load_acr_config('tiny_cpu', ['lr=1'])


def test_schema_is_chosen_by_the_sections():
    assert isinstance(load_config('tiny_cpu'), TrainConfig)
    assert isinstance(load_config('ihmr_tiny'), IhmrConfig)


def test_a_stored_ihmr_config_is_read_back():
    """refiner JSONs written before the typed configs store the config as a plain mapping (with
    ``config_source``); ``as_ihmr_config`` reads it, and refuses one that is not an IHMR config."""
    stored = load_ihmr_config('ihmr_tiny').to_dict()
    stored['loss']['collision'] = 1  # old records kept YAML's ints
    config = as_ihmr_config(json.loads(json.dumps(stored)))
    assert config.loss.collision == 1.0 and config.config_source == stored['config_source']
    with pytest.raises(ValueError, match="unknown config key 'model'"):
        as_ihmr_config(load_acr_config('tiny_cpu').to_dict())


def test_learning_rate_schedule():
    optim = load_acr_config('tiny_cpu', ['optim.lr_steps=[1, 3]', 'optim.lr_factor=0.5']).optim
    assert [optim.lr_at(e) for e in range(4)] == [3e-4, 1.5e-4, 1.5e-4, 7.5e-5]
