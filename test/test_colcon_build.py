"""The robot install path: `colcon build` of this repository as a ROS 2 workspace package.

colcon lives in its own small tool venv (build/colcon-tools, made once); the project venv is the ROS
underlay, as /opt/ros/jazzy is on a robot.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hand_recon_ros.tools.node_process import ChildProcess, node_command

from conftest import REPO

pytestmark = pytest.mark.slow


def _colcon():
    tools = REPO / 'build' / 'colcon-tools'
    exe = tools / 'bin' / 'colcon'
    stamp = tools / '.requirements'
    wanted = (REPO / 'requirements' / 'colcon.txt').read_text()
    if not exe.exists() or not stamp.exists() or stamp.read_text() != wanted:
        # colcon is pure Python: any interpreter works; the package is built for sys.executable below
        subprocess.run([sys.executable, '-m', 'venv', '--clear', str(tools)], check=True)
        subprocess.run(
            [
                str(tools / 'bin' / 'pip'),
                'install',
                '-q',
                '--disable-pip-version-check',
                '-r',
                str(REPO / 'requirements' / 'colcon.txt'),
            ],
            check=True,
            capture_output=True,
        )
        stamp.write_text(wanted)
    return exe


def test_colcon_builds_the_package_and_installs_the_ros2_run_layout(tmp_path):
    """One build (BUILD_TESTING on) checked for: the ros2-run layout, the generated node entry point and its
    interpreter, the tests registered with CMake, `colcon test` running one, and the installed node running."""
    colcon = _colcon()
    src = tmp_path / 'ws' / 'src' / 'hand_recon_ros'
    src.mkdir(parents=True)
    # the tracked and new source files, as a clone would have them (no .venv, no build outputs)
    files = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith('_ROS_WHEELS')}
    env.update(AMENT_PREFIX_PATH=str(venv), CMAKE_PREFIX_PATH=str(venv))
    result = subprocess.run(
        [
            str(colcon),
            'build',
            '--event-handlers',
            'console_direct+',
            '--cmake-args',
            f'-DPython3_EXECUTABLE={sys.executable}',
            '-DBUILD_TESTING=ON',
        ],
        cwd=tmp_path / 'ws',
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    install = tmp_path / 'ws' / 'install' / 'hand_recon_ros'
    entry = install / 'lib' / 'hand_recon_ros' / 'hand_recon_node'  # what `ros2 run` starts
    assert entry.exists() and os.access(entry, os.X_OK)
    # generated: the build's interpreter (the venv with torch), not `/usr/bin/env python3`
    assert entry.read_text().splitlines()[0] == f'#!{sys.executable}'
    for rel in (
        'launch/hand_recon.launch.xml',
        'config/hand_recon.yaml',
        'models/standin/STANDIN_RIGHT.npz',
        'msg/HandArray.msg',
    ):
        assert (install / 'share' / 'hand_recon_ros' / rel).exists(), rel
    site = install / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}' / 'site-packages'
    pkg = site / 'hand_recon_ros'
    assert (pkg / 'pipeline.py').exists() and (pkg / 'msg' / '__init__.py').exists()
    assert 'extend_path' in (pkg / '__init__.py').read_text()  # ours, not rosidl's empty one
    # The colcon-installed messages import (from the workspace, not the project venv) without torch.
    probe = (
        'import sys, hand_recon_ros.msg as m; from hand_recon_ros.msg import HandArray; '
        'print(m.__file__); print("torch" in sys.modules)'
    )
    env_ws = dict(env, PYTHONPATH=str(site), LD_LIBRARY_PATH=f"{install / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}")
    out = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, env=env_ws, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first, torch_loaded = out.stdout.split()
    assert first.startswith(str(site)) and torch_loaded == 'False', out.stdout

    # The tests are registered with CMake (ament_cmake_pytest is in the underlay; launch_testing is not
    # on PyPI, so the launch test is left out with a message saying so).
    build = tmp_path / 'ws' / 'build' / 'hand_recon_ros'
    listed = subprocess.run(['ctest', '-N'], cwd=build, env=env, capture_output=True, text=True).stdout
    for name in ('licences', 'messages_contract', 'node_e2e', 'examples', 'bag_recorder_qos', 'launch_files'):
        assert f' {name}\n' in listed, listed
    assert 'test/test_launch.py not registered' in result.stdout  # CMake's configure output
    # `colcon test` runs a registered test file (pytest through CTest, results collected by colcon)
    tested = subprocess.run(
        [str(colcon), 'test', '--event-handlers', 'console_direct+', '--ctest-args', '-R', '^licences$'],
        cwd=tmp_path / 'ws',
        env=env,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    summary = subprocess.run(
        [str(colcon), 'test-result', '--all'], cwd=tmp_path / 'ws', env=env, capture_output=True, text=True
    )
    assert summary.returncode == 0 and '3 tests, 0 errors, 0 failures, 0 skipped' in summary.stdout, summary.stdout

    # The installed entry point starts the node (torch and all) and stops cleanly on SIGINT.
    node = ChildProcess(
        node_command(
            '-p',
            'weights:=untrained',
            '-p',
            'device:=cpu',
            '-p',
            'network.input_size:=128',
            '-p',
            'num_threads:=1',
            executable=entry,
        ),
        tmp_path / 'installed_node.log',
        env=env_ws,
        cwd=tmp_path,
    )
    try:
        assert node.wait_for_log('active:', timeout=120, poll_s=0.5), node.log_tail()
    finally:
        rc = node.stop(timeout=30)
    assert rc == 0, node.log_tail()
