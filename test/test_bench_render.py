"""Smoke runs of benchmarks/bench_render.py --quick (our rasteriser against library ray casters).

No timing assertions: the table must hold our row, and every ray caster that ran must agree with our
rasteriser per pixel (same coverage and hand almost everywhere, the very same face wherever the pixel centre
lies inside the face we painted: a wrong camera or pixel-centre convention would break that first).
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'benchmarks' / 'bench_render.py'
HEADER = '| S | renderer | frames |'


def run_quick(prelude=''):
    """Run the script with --quick; `prelude` is Python run first in the same interpreter."""
    code = (
        f"import runpy, sys\n{prelude}\nsys.argv = [{str(SCRIPT)!r}, '--quick']\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (
        proc.returncode == 0
    ), f'bench_render failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout


def table(text):
    """{renderer: {column: cell}} of the results table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    names = [cell.strip() for cell in lines[start].strip('|').split('|')]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith('|'):
            break
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        rows[cells[1]] = dict(zip(names, cells))
    return rows


def same_face(cell):
    """'5.5% (100.0%)' -> (0.055, 1.0)."""
    overall, inside = cell.replace('(', '').replace(')', '').replace('%', '').split()
    return float(overall) / 100, float(inside) / 100


@pytest.fixture(scope='module')
def quick_table():
    return table(run_quick())


def check_ray_caster_row(row):
    assert row['S'] == '64' and row['frames'] == '1'
    assert float(row['ms / frame']) > 0
    assert float(row['agree']) > 0.9  # background agrees, most hand pixels too
    assert float(row['hand px']) > 0.6  # cv2 fills every touched pixel: ours is ~0.5 px fatter
    assert 0.5 < float(row['cover']) <= 1.0  # ... so a ray caster never covers more than ours
    assert same_face(row['same face (centre in)'])[1] == 1.0
    assert float(row['order err px']) <= 2.0


def test_quick_table_has_our_row_as_the_reference(quick_table):
    ours = quick_table['ours']
    assert ours['S'] == '64' and ours['frames'] == '1' and float(ours['ms / frame']) > 0
    assert ours['speed-up vs ours'] == '1x' and ours['agree'] == '1.0000' and ours['cover'] == '1.000'


def test_trimesh_numpy_ray_caster_agrees_with_ours(quick_table):
    pytest.importorskip('rtree', reason='trimesh.ray.ray_triangle needs rtree (requirements/bench-render.txt)')
    check_ray_caster_row(quick_table['trimesh numpy'])


def test_every_installed_library_ray_caster_agrees_with_ours(quick_table):
    casters = [name for name, row in quick_table.items() if name != 'ours' and row['S'] != '-']
    if not casters:
        pytest.skip('no optional ray caster installed (requirements/bench-render.txt)')
    for name in casters:
        check_ray_caster_row(quick_table[name])


def test_missing_renderer_is_listed_not_fatal():
    rows = table(run_quick("sys.modules['open3d'] = None"))  # import open3d -> ImportError
    assert 'not installed' in rows['open3d']['frames']
    assert rows['ours']['agree'] == '1.0000'
