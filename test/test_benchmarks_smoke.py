"""Smoke runs of the figure-printing benchmarks (bench_e2e, bench_memory, bench_scaling) with --quick.

No timing assertions: each script must run, print its Markdown tables, and the figures must be consistent
with what was asked (frame counts, the refinement switch reaching the node, memory ordering, batch sizes).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_bench(name, *args, timeout=120):
    # the checkout first, as scripts/bench.sh runs them (the benchmarks carry no sys.path edits)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p)
    proc = subprocess.run(
        [sys.executable, str(REPO / 'benchmarks' / name), '--quick', *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=pythonpath),
    )
    assert proc.returncode == 0, f'{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout


def table_rows(text, header_start):
    """Rows (lists of cell strings) of the Markdown table whose header line starts with header_start."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith('|'):
            break
        rows.append([cell.strip() for cell in line.strip('|').split('|')])
    return rows


def number(cell):
    return float(cell.split()[0].rstrip('%'))


@pytest.mark.ros
def test_bench_e2e_quick_prints_latency_and_throughput_tables():
    out = run_bench('bench_e2e.py', '--domain-id', os.environ['ROS_DOMAIN_ID'])
    assert 'node on cpu fp32' in out  # the device the node reported (auto: no GPU here)
    latency = {row[1]: row for row in table_rows(out, '| config | refine | frames | round trip')}
    assert set(latency) == {'off', 'on'} and all(row[0] == 'light@256' for row in latency.values())
    for row in latency.values():
        assert row[2] == '3'  # every latency frame answered, none lost
        p50, p95, p99 = (float(v) for v in row[3].split(' / '))
        assert 0 < p50 <= p95 <= p99
        assert 0 < number(row[5]) < p50  # the network is part of the round trip
    # refinement.enabled reached the node at runtime: no refine stage when off, the MLP stages ran when on
    assert number(latency['off'][6]) == 0.0
    assert number(latency['on'][6]) > 0 and re.search(r'\([0-3]/3\)$', latency['on'][6])
    throughput = {row[1]: row for row in table_rows(out, '| config | refine | sent')}
    for row in throughput.values():
        sent, answered, skipped = int(row[2].split()[0]), int(row[3]), int(row[4].split()[0])
        assert sent >= 10 and 1 <= answered <= sent and skipped == sent - answered
        assert number(row[5]) > 0
    assert 'default light config >= 15 FPS' in throughput['on'][7]
    # The overhead splits into its parts: transport in, node around the pipeline, stages, transport out.
    breakdown = {row[1]: row for row in table_rows(out, '| config | refine | publish -> callback')}
    assert set(breakdown) == {'off', 'on'}
    for row in breakdown.values():
        parts = [number(cell) for cell in row[2:8]]
        assert all(v >= 0 for v in parts) and number(row[2]) > 0 and number(row[7]) > 0
    # The CPU-side ceiling is the round trip minus the network, as a frame rate.
    ceiling = {row[1]: row for row in table_rows(out, '| config | refine | outside the network')}
    for refine, row in ceiling.items():
        outside = number(row[2])
        assert 0 < outside < number(latency[refine][3].split(' / ')[0])
        assert abs(number(row[3]) - 1000.0 / outside) <= 0.5 + 1000.0 / outside * 0.01


@pytest.mark.ros
def test_bench_dds_transport_quick_compares_defaults_and_the_profile():
    out = run_bench('bench_dds_transport.py', timeout=180)
    rows = {row[0]: row for row in table_rows(out, '| QoS | frame | MiB')}
    assert set(rows) == {'reliable', 'best_effort'}
    for row in rows.values():
        assert row[1] == '640x480' and number(row[2]) == pytest.approx(0.88, abs=0.01)
    # Reliable frames always come back (3 of 3) with either transport setting, with a positive round trip.
    reliable = rows['reliable']
    assert reliable[4] == '0/3' and reliable[6] == '0/3'
    for cell in (reliable[3], reliable[5]):
        p50, p95 = (float(v) for v in cell.split(' / '))
        assert 0 < p50 <= p95


@pytest.mark.ros
def test_bench_memory_quick_prints_peak_rss():
    import torch

    out = run_bench('bench_memory.py', '--domain-id', os.environ['ROS_DOMAIN_ID'])
    (row,) = table_rows(out, '| config | RSS model loaded')
    assert row[0] == 'light@256'
    loaded, peak, after = (number(c) for c in row[1:4])
    assert 100 < loaded <= peak and after <= peak  # MiB; a torch + ROS process is well over 100
    assert re.fullmatch(r'2 \([0-2]\)', row[4])  # both frames answered
    if not torch.cuda.is_available():
        assert row[5] == 'no GPU'


def test_bench_scaling_quick_prints_three_tables():
    out = run_bench('bench_scaling.py')
    sizes = table_rows(out, '| image |')
    assert [r[0] for r in sizes] == ['320x240', '1920x1080']
    assert all(number(r[2]) > 0 and r[6] == '2' for r in sizes)
    hands = table_rows(out, '| max_hands |')
    assert [r[0] for r in hands] == ['2', '4']
    for r in hands:
        found = int(r[1].split()[0])
        assert 1 <= found <= int(r[0])
    cameras = table_rows(out, '| cameras |')
    assert [r[0] for r in cameras] == ['1', '2']
    for r in cameras:
        assert number(r[4]) == pytest.approx(number(r[3]) / int(r[0]), abs=0.06)


def test_bench_accuracy_quick_lists_the_shipped_model():
    if not (REPO / 'models' / 'acr_default.safetensors').is_file():
        pytest.skip('no shipped ACR model')
    out = run_bench('bench_accuracy.py', '--precision', 'fp32', 'bf16', timeout=300)
    rows = table_rows(out, '| model |')
    assert [r[0] for r in rows] == ['`models/acr_default.safetensors`'] * 2
    assert [r[2] for r in rows] == ['fp32', 'bf16']
    import json

    stages = json.loads((REPO / 'models' / 'acr_default.json').read_text())['extra']['training']['stages']
    steps = ' + '.join(str(s['steps']) for s in stages)
    for row in rows:  # the training chain as the shipped model's JSON records it
        network, _, aggregation, training = row[1:5]
        assert network == 'resnet18@192' and aggregation == 'full'
        assert training.endswith(f'samples ({len(stages)} stages: {steps} steps)'), training
    for row in rows:  # refinement changes counted on the frames where both hands were found
        changed, two_hand = (int(v) for v in row[11].split(' / '))
        assert 0 <= changed <= two_hand <= 4
    mpjpe = [number(row[5].split('/')[0]) for row in rows]
    assert 0 < mpjpe[0] < 500
    assert mpjpe[1] == pytest.approx(mpjpe[0], abs=2.0)  # bf16 keeps the accuracy (autocast over the network)


def test_bench_depth_quick_compares_placement_without_and_with_the_depth_image():
    out = run_bench('bench_depth.py', timeout=300)
    rows = table_rows(out, '| placement |')
    assert [r[0] for r in rows] == ['without depth', 'with depth']
    assert rows[0][1] == rows[1][1] and int(rows[0][1]) > 0  # the same hands, placed two ways
    placed = re.search(r'placed by the depth image: (\d+) of (\d+) hands', out)
    assert placed and 0 < int(placed.group(1)) <= int(placed.group(2)) == int(rows[1][1])
