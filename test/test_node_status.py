"""The node's status object -> /diagnostics level, message and values, without a node (node_status.py)."""

import math
import subprocess
import sys

import pytest

from hand_recon_ros.ros.node_status import ERROR, OK, WARN, ModelStatus, NodeStatus, diagnostic_values

INFO = {
    'network': 'acr/resnet18@256',
    'device': 'cpu',
    'precision': 'fp32',
    'num_threads': 3,
    'hand_model': 'standin-v1',
    'weights_sha256': 'ab' * 32,
    'model_id': 'acr-light-3',
    'hand_model_is_standin': True,
}
WORKER = {
    'received': 12,
    'processed': 9,
    'errors': 1,
    'dropped_replaced': 1,
    'dropped_stale': 1,
    'discarded_on_stop': 0,
    'dropped': 2,
}


def running(**changes):
    status = NodeStatus(
        received=12,
        published=9,
        bad_input=2,
        errors=1,
        last_latency_ms=41.26,
        lifecycle_state='active',
        active=True,
        worker=dict(WORKER),
        input_rate_hz=29.951,
        processing_ms_p50=30.04,
        stage_ms_p50={'network': 21.04, 'landmarks': 188.96, 'refine': float('nan')},
        landmarks_per_frame={'redrawn_hands': 2.0, 'followed_crops': 1.8, 'palm_runs': 0.25},
        input_lost_estimate=5,
        input_period_s=1 / 30,
        input_pauses=1,
        input_stamps_out_of_order=2,
        problems={'frame_failed': 1, 'bad_input.encoding': 2},
        problem_log_lines=2,
        model=ModelStatus.from_info(INFO),
        rmw='rmw_fastrtps_cpp',
        latency_ms={'count': 9, 'p50': 40.0, 'p95': 44.44, 'p99': 45.0, 'mean': 41.0, 'max': 45.0, 'rate_hz': 29.5},
    )
    for name, value in changes.items():
        setattr(status, name, value)
    return status


def test_a_running_node_maps_every_field_to_its_value():
    d = diagnostic_values(running())
    assert (d.level, d.message) == (OK, 'running')
    v = d.as_dict()
    assert len(v) == len(d.values)  # no key twice
    assert {k: v[k] for k in ('received', 'published', 'bad_input', 'errors')} == {
        'received': '12',
        'published': '9',
        'bad_input': '2',
        'errors': '1',
    }
    assert {k[len('worker_') :]: int(x) for k, x in v.items() if k.startswith('worker_')} == WORKER
    assert (v['input_rate_hz'], v['processing_ms_p50']) == ('29.95', '30.0')
    assert v['stage_ms_p50'] == 'landmarks 189.0, network 21.0'  # by name; a stage with no sample yet left out
    assert diagnostic_values(running(stage_ms_p50={})).as_dict()['stage_ms_p50'] == 'none'
    assert v['landmarks_per_frame'] == 'followed_crops 1.80, palm_runs 0.25, redrawn_hands 2.00'
    assert diagnostic_values(running(landmarks_per_frame={})).as_dict()['landmarks_per_frame'] == 'none'
    assert (v['latency_p95'], v['latency_count'], v['latency_rate_hz'], v['latency_last']) == (
        '44.4',
        '9.0',
        '29.5',
        '41.3',
    )
    assert (v['device'], v['precision'], v['network'], v['hand_model'], v['model_id']) == (
        'cpu',
        'fp32',
        'acr/resnet18@256',
        'standin-v1',
        'acr-light-3',
    )
    assert v['weights_sha256'] == 'ab' * 32
    assert v['num_threads'] == '3'
    assert (v['rmw'], v['fastdds_profile']) == ('rmw_fastrtps_cpp', 'none (Fast DDS defaults)')
    assert (v['input_lost_estimate'], v['input_period_ms'], v['input_pauses'], v['input_stamps_out_of_order']) == (
        '5',
        '33.3',
        '1',
        '2',
    )
    assert v['problems'] == 'bad_input.encoding=2, frame_failed=1'  # errors by kind, sorted
    assert (v['problem_log_lines'], v['lifecycle_state']) == ('2', 'active')
    assert 'parameter_problems' not in v
    assert all(isinstance(x, str) for x in v.values())


def test_an_inactive_node_warns_and_reports_no_worker_or_model():
    d = diagnostic_values(
        NodeStatus(received=3, worker=dict(WORKER), rmw='rmw_cyclonedds_cpp', fastdds_profile='/x.xml')
    )
    assert (d.level, d.message) == (WARN, 'inactive (lifecycle state not active)')
    v = d.as_dict()
    assert not [k for k in v if k.startswith('worker_') or k in ('input_rate_hz', 'device', 'model_id')]
    assert (v['received'], v['lifecycle_state'], v['problems'], v['fastdds_profile']) == (
        '3',
        'unconfigured',
        'none',
        '/x.xml',
    )
    assert v['input_period_ms'] == 'nan' and v['latency_last'] == 'nan'


@pytest.mark.parametrize(
    'changes, level, message',
    [
        ({'received': 0, 'published': 0, 'errors': 0}, WARN, 'no input images received'),
        ({'errors': 9}, ERROR, 'every frame fails: see the node log'),  # errors >= published
        ({'errors': 8}, OK, 'running'),
        ({'published': 0, 'errors': 0}, OK, 'running'),  # received, none out yet
        (
            {'parameter_problems': ['a: using the default 1']},
            WARN,
            'running with default values for refused parameters: see parameter_problems',
        ),
        ({'parameter_problems': ['a'], 'errors': 9}, ERROR, 'every frame fails: see the node log'),
        ({'parameter_problems': ['a'], 'active': False}, WARN, 'inactive (lifecycle state not active)'),
    ],
)
def test_level_and_message(changes, level, message):
    d = diagnostic_values(running(**changes))
    assert (d.level, d.message) == (level, message)


def test_parameter_problems_are_joined_and_model_info_without_optional_keys():
    d = diagnostic_values(running(parameter_problems=['x must be > 0', 'y must be a bool']))
    assert d.as_dict()['parameter_problems'] == 'x must be > 0; y must be a bool'
    m = ModelStatus.from_info({k: INFO[k] for k in ('network', 'device', 'precision', 'hand_model')})
    assert (m.weights_sha256, m.model_id) == ('', '')
    assert math.isnan(NodeStatus().last_latency_ms)


def test_the_status_module_imports_no_ros():
    code = (
        'import sys, hand_recon_ros.ros.node_status; '
        "print(sorted(m for m in ('rclpy', 'diagnostic_msgs', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_the_ros_message_carries_the_mapping():
    pytest.importorskip('rclpy')
    from diagnostic_msgs.msg import DiagnosticStatus

    from hand_recon_ros.ros.conversions import diagnostics_msg

    status = running(errors=20)
    msg = diagnostics_msg(status, 'hand_recon: hand reconstruction', '/hand_recon', stamp=_stamp(7))
    (s,) = msg.status
    assert s.level == DiagnosticStatus.ERROR and s.message == diagnostic_values(status).message
    assert (s.name, s.hardware_id, msg.header.stamp.sec) == ('hand_recon: hand reconstruction', '/hand_recon', 7)
    assert [(kv.key, kv.value) for kv in s.values] == list(diagnostic_values(status).values)


def _stamp(sec):
    from builtin_interfaces.msg import Time

    return Time(sec=sec)
