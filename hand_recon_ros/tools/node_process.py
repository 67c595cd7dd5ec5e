"""A ROS process (the node, a consumer, a launch file's executable) run as a child and stopped like ros2 launch.

Used by the demo, the tests and the benchmarks (one copy of "start it, watch its log, SIGINT it, kill it only
as a last resort"). Plain subprocess handling: no rclpy import.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Dict, Iterable, List, Mapping, Optional, Sequence, Union

__all__ = ['NODE_MODULE', 'ChildProcess', 'default_params_file', 'environment', 'node_command', 'stop_all']

NODE_MODULE = 'hand_recon_ros.ros.node'
PathLike = Union[str, Path]


def default_params_file() -> Path:
    """config/hand_recon.yaml: the installed copy (share/) when there is one, else the checkout's."""
    installed = Path(sys.prefix) / 'share' / 'hand_recon_ros' / 'config' / 'hand_recon.yaml'
    source = Path(__file__).resolve().parents[2] / 'config' / 'hand_recon.yaml'
    return installed if installed.exists() else source


def node_command(
    *ros_args: str,
    params_file: Optional[PathLike] = None,
    module: str = NODE_MODULE,
    executable: Optional[PathLike] = None,
) -> List[str]:
    """``python -m <module> --ros-args [--params-file FILE] ARGS`` (or ``executable --ros-args ...``)."""
    cmd = [str(executable)] if executable else [sys.executable, '-m', module]
    cmd.append('--ros-args')
    if params_file is not None:
        cmd += ['--params-file', str(params_file)]
    return cmd + list(ros_args)


class ChildProcess:
    """cmd as a child process, stdout and stderr into log_path (or discarded without one).

    env: the child's whole environment (default: this process's). ``stop()`` sends SIGINT as ros2 launch
    does and kills only after the timeout (a killed DDS participant leaves stale shared memory behind).
    """

    def __init__(
        self,
        cmd: Sequence[str],
        log_path: Optional[PathLike] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[PathLike] = None,
    ) -> None:
        self.cmd = [str(c) for c in cmd]
        self.log_path = Path(log_path) if log_path is not None else None
        self._log: Optional[IO[str]] = open(self.log_path, 'w') if self.log_path is not None else None
        self.killed = False
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(cwd) if cwd is not None else None,
            env=dict(env) if env is not None else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.returncode

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def log(self) -> str:
        """Everything the process wrote so far ('' without a log file)."""
        if self.log_path is None:
            return ''
        if self._log is not None and not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def wait_for_log(self, text: str, timeout: float, poll_s: float = 0.2) -> bool:
        """Wait until text appears in the log; False at the timeout or when the process ended without it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(poll_s)
        return text in self.log()

    def send_signal(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the exit; kill after the timeout. Returns the exit code and closes the log."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.killed = True
            self.proc.kill()
            self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        """Stop like ros2 launch does (SIGINT by default) and return the exit code."""
        self.send_signal(sig)
        return self.wait(timeout)

    def __enter__(self) -> 'ChildProcess':
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all(processes: Iterable[ChildProcess], sig: int = signal.SIGINT, timeout: float = 15.0) -> List[int]:
    """Signal every process first, then wait for each (they shut down in parallel); the exit codes."""
    processes = list(processes)
    for p in processes:
        p.send_signal(sig)
    return [p.wait(timeout) for p in processes]


def environment(**changes: Optional[str]) -> Dict[str, str]:
    """This process's environment with changes (None removes a variable): the ``env`` of a ChildProcess."""
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
