"""The robot install path: `colcon build` of this repository as a ROS 2 workspace package.

colcon lives in its own small tool venv (build/colcon-tools, made once); the project venv is the ROS
underlay, as /opt/ros/jazzy is on a robot.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def _colcon():
    tools = REPO / 'build' / 'colcon-tools'
    exe = tools / 'bin' / 'colcon'
    stamp = tools / '.requirements'
    wanted = (REPO / 'requirements' / 'colcon.txt').read_text()
    if not exe.exists() or not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run(['python3.11', '-m', 'venv', '--clear', str(tools)], check=True)
        subprocess.run([str(tools / 'bin' / 'pip'), 'install', '-q', '--disable-pip-version-check', '-r',
                        str(REPO / 'requirements' / 'colcon.txt')], check=True, capture_output=True)
        stamp.write_text(wanted)
    return exe


def test_colcon_builds_the_package_and_installs_the_ros2_run_layout(tmp_path):
    colcon = _colcon()
    src = tmp_path / 'ws' / 'src' / 'hand_recon_ros'
    src.mkdir(parents=True)
    # the tracked and new source files, as a clone would have them (no .venv, no build outputs)
    files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith('_ROS_WHEELS')}
    env.update(AMENT_PREFIX_PATH=str(venv), CMAKE_PREFIX_PATH=str(venv))
    result = subprocess.run([str(colcon), 'build', '--cmake-args', f'-DPython3_EXECUTABLE={sys.executable}',
                             '-DBUILD_TESTING=OFF'], cwd=tmp_path / 'ws', env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    install = tmp_path / 'ws' / 'install' / 'hand_recon_ros'
    assert (install / 'lib' / 'hand_recon_ros' / 'hand_recon_node').exists()      # what `ros2 run` starts
    for rel in ('launch/hand_recon.launch.xml', 'config/hand_recon.yaml', 'models/standin/STANDIN_RIGHT.npz',
                'msg/HandArray.msg'):
        assert (install / 'share' / 'hand_recon_ros' / rel).exists(), rel
    site = install / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}' / 'site-packages'
    pkg = site / 'hand_recon_ros'
    assert (pkg / 'pipeline.py').exists() and (pkg / 'msg' / '__init__.py').exists()
    assert 'extend_path' in (pkg / '__init__.py').read_text()   # ours, not rosidl's empty one
    # The colcon-installed messages import (from the workspace, not the project venv) without torch.
    probe = ('import sys, hand_recon_ros.msg as m; from hand_recon_ros.msg import HandArray; '
             'print(m.__file__); print("torch" in sys.modules)')
    env_ws = dict(env, PYTHONPATH=str(site), LD_LIBRARY_PATH=f"{install / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}")
    out = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, env=env_ws, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first, torch_loaded = out.stdout.split()
    assert first.startswith(str(site)) and torch_loaded == 'False', out.stdout
