"""The parameter table: config/hand_recon.yaml matches it, and its validation refuses every kind of bad value."""

import math
from pathlib import Path

import pytest
import yaml

from hand_recon_ros.ros.parameters import APPLIES, SPECS, descriptor, validate

CONFIG = Path(__file__).resolve().parents[1] / 'config' / 'hand_recon.yaml'


def bad_values(spec):
    """Values of the wrong type and, for numbers, out of range (NaN, negative, zero where invalid, huge)."""
    if spec.type is bool:
        return ['yes', 1, 0.0]
    if spec.type is str:
        wrong = [3, True]
        if spec.choices or spec.pattern:
            wrong.append('no such value!')
        return wrong
    values = ['abc', True]
    if spec.type is float:
        values += [math.nan, math.inf, -math.inf]
    if spec.low is not None:
        values.append(spec.low - 1)
        if spec.low_open:
            values.append(spec.type(spec.low))
        if spec.low > 0:
            values.append(spec.type(0))
    values.append(spec.type(10**12))
    if spec.step:
        values.append(spec.low + 1)
    return values


def test_config_yaml_matches_the_table():
    params = yaml.safe_load(CONFIG.read_text())['/**']['ros__parameters']
    assert set(params) == set(SPECS), set(params) ^ set(SPECS)
    for name, value in params.items():
        ok, coerced, reason = validate(SPECS[name], value)
        assert ok, reason
        assert coerced == SPECS[name].default, f'{name}: the YAML and the table disagree on the default'


def test_every_spec_default_is_valid_and_numbers_have_a_range():
    for name, spec in SPECS.items():
        assert spec.applies in APPLIES
        assert validate(spec, spec.default)[0], name
        desc = descriptor(spec)
        assert desc.description and desc.read_only == (spec.applies == 'start')
        if spec.type is float:
            assert len(desc.floating_point_range) == 1, name
        elif spec.type is int:
            assert len(desc.integer_range) == 1, name
        elif spec.type is str and (spec.choices or spec.pattern):
            assert desc.additional_constraints, name


@pytest.mark.parametrize('name', sorted(SPECS))
def test_bad_values_are_refused_with_a_reason(name):
    spec = SPECS[name]
    for value in bad_values(spec):
        ok, _, reason = validate(spec, value)
        assert not ok, (name, value)
        assert name in reason, reason


def test_integers_are_taken_for_floats_and_open_bounds_hold():
    assert validate(SPECS['fallback_fov_deg'], 70) == (True, 70.0, '')
    assert not validate(SPECS['detection_threshold'], 1.0)[0] and validate(SPECS['detection_threshold'], 0.99)[0]
    assert validate(SPECS['max_input_age_s'], 0.0)[0]  # 0 = off is allowed
    assert validate(SPECS['network.input_size'], 320)[0] and not validate(SPECS['network.input_size'], 330)[0]
    assert validate(SPECS['device'], 'cuda:1')[0] and not validate(SPECS['device'], 'cuda:x')[0]


@pytest.mark.parametrize(
    ('value', 'ok'),
    [
        ('auto', True),
        ('all', True),
        ('translation', True),
        ('translation,left_orient,right_orient,fingers', True),
        ('shape,translation', True),
        ('', False),
        ('translation,', False),
        ('translation, fingers', False),  # the parameter is strict; only the library trims spaces
        ('camera', False),
    ],
)
def test_refinement_stages_parameter_agrees_with_the_refiner(value, ok):
    from hand_recon_ros.refine import resolve_stages

    assert validate(SPECS['refinement.stages'], value)[0] == ok
    if ok:  # whatever the node accepts, the pipeline can apply
        assert resolve_stages(value, {'shape': 0.0})
