"""acr.factory.create_model: names, the backbone -> preset table, weights files and the shipped-model lookup."""

import pytest
import torch

from hand_recon_ros.acr import factory
from hand_recon_ros.acr.backbones import list_backbones
from hand_recon_ros.acr.network import PRESETS, build_acr
from hand_recon_ros.acr.weights import save_acr


def test_every_preset_backbone_maps_back_to_its_preset():
    assert set(factory.BACKBONE_PRESETS.values()) == set(PRESETS)
    for backbone, preset in factory.BACKBONE_PRESETS.items():
        assert PRESETS[preset]['backbone'] == backbone and backbone in list_backbones()
    assert set(factory.SHORT_NAMES.values()) <= set(PRESETS)


@pytest.mark.parametrize('name', ['acr_light', 'light', 'resnet18'])
def test_names_resolve_to_the_same_seeded_network(name):
    torch.manual_seed(0)
    reference = build_acr('acr_light', input_size=64)
    net = factory.create_model(name, seed=0, input_size=64)
    assert net.config == reference.config
    for (k, a), (_, b) in zip(reference.state_dict().items(), net.state_dict().items()):
        assert torch.equal(a, b), k


def test_backbone_without_preset_gets_the_default_config():
    net = factory.create_model('resnet34', input_size=64)
    assert net.config.backbone == 'resnet34' and net.config.head_channels == 64


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match='acr_light.*light'):
        factory.create_model('alexnet')


def test_weights_file_round_trip_and_no_overrides(tmp_path):
    net = build_acr('acr_light', input_size=64)
    path, _ = save_acr(net, tmp_path / 'm.safetensors', extra={'description': 'tiny'})
    loaded = factory.create_model(path)
    assert loaded.config == net.config and factory.weights_description(path) == 'tiny'
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert factory.create_model(str(path)).config == net.config
    with pytest.raises(ValueError, match='carries its config'):
        factory.create_model(path, input_size=128)
    with pytest.raises(FileNotFoundError):
        factory.create_model(tmp_path / 'missing.safetensors')


def test_default_model_lookup(monkeypatch, tmp_path):
    monkeypatch.setattr(factory, 'model_search_dirs', lambda: [tmp_path / 'a', tmp_path])
    with pytest.raises(FileNotFoundError, match='no shipped default model'):
        factory.create_model('')
    save_acr(build_acr('acr_light', input_size=64), tmp_path / factory.DEFAULT_WEIGHTS)
    assert factory.find_default_weights() == tmp_path / factory.DEFAULT_WEIGHTS
    assert factory.create_model('').config.input_size == 64


def test_network_spec_is_the_one_benchmark_naming():
    from hand_recon_ros.acr.factory import SHORT_NAMES, create_model, parse_network_spec

    spec = parse_network_spec('light@256')
    assert (spec.name, spec.input_size, spec.preset, spec.backbone, str(spec)) == (
        'light',
        256,
        'acr_light',
        'resnet18',
        'light@256',
    )
    assert parse_network_spec('hrnet_w32@512').backbone == 'hrnet_w32'
    for name in SHORT_NAMES:  # every short name builds the network it names
        assert create_model(name, input_size=64).config.backbone == parse_network_spec(f'{name}@64').backbone
    for bad in ('light', 'light@', 'light@abc', 'foo@256', 'light@8', ''):
        with pytest.raises(ValueError, match='NAME@SIZE'):
            parse_network_spec(bad)
