"""Running the MediaPipe worker (in the teacher environment) over a list of images, resumably.

The worker writes MediaPipe's raw answers as JSON lines; this side only schedules it: chunks of images, one
worker process per chunk, a raw file that grows chunk by chunk so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ['TeacherUnavailable', 'find_teacher_python', 'run_worker', 'read_raw', 'WORKER']

WORKER = Path(__file__).with_name('mediapipe_worker.py')


class TeacherUnavailable(RuntimeError):
    """The teacher environment is missing (scripts/setup_teacher.sh creates it)."""


def find_teacher_python() -> Path:
    """``$HAND_RECON_TEACHER_PYTHON``, else ``.venv-teacher/bin/python`` in the current folder or a parent."""
    env = os.environ.get('HAND_RECON_TEACHER_PYTHON')
    if env:
        if not Path(env).is_file():
            raise TeacherUnavailable(f'HAND_RECON_TEACHER_PYTHON={env} does not exist')
        return Path(env)
    for base in [Path.cwd(), *Path.cwd().parents]:
        cand = base / '.venv-teacher' / 'bin' / 'python'
        if cand.is_file():
            return cand
    raise TeacherUnavailable(
        'no teacher environment: run scripts/setup_teacher.sh (creates .venv-teacher with '
        'mediapipe==0.10.21) or set HAND_RECON_TEACHER_PYTHON'
    )


def read_raw(path: str | Path) -> dict[str, dict]:
    """Raw worker records by image path (the last record of a path wins); a torn last line is ignored."""
    records: dict[str, dict] = {}
    path = Path(path)
    if not path.is_file():
        return records
    with open(path, encoding='utf-8') as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted run; that image is labelled again
            if isinstance(rec, dict) and 'path' in rec:
                records[rec['path']] = rec
    return records


def run_worker(
    jobs: list[dict], settings: dict, raw_path: str | Path, python: Path | None = None, chunk: int = 250, log=print
) -> dict[str, dict]:
    """Label every job (``{"path", "pad"}``) not yet in ``raw_path``; returns all raw records by path."""
    python = python or find_teacher_python()
    raw_path = Path(raw_path)
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_raw(raw_path)
    todo = [j for j in jobs if j['path'] not in done]
    if done and todo:
        log(f'[teacher] resuming: {len(done)} images already labelled, {len(todo)} to go')
    t0 = time.perf_counter()
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            json.dump({'settings': settings, 'images': part}, f)
            job_file = f.name
        try:
            proc = subprocess.run(
                [str(python), str(WORKER), job_file, '--out', str(raw_path)],
                capture_output=True,
                text=True,
                env={**os.environ, 'GLOG_minloglevel': '2'},
            )
        finally:
            os.unlink(job_file)
        if proc.returncode != 0:
            raise RuntimeError(f'teacher worker failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}')
        n = min(start + chunk, len(todo))
        rate = n / max(time.perf_counter() - t0, 1e-9)
        log(f'[teacher] {n}/{len(todo)} images ({rate:.1f} images/s)')
    return read_raw(raw_path)


if __name__ == '__main__':  # pragma: no cover  (manual: label a folder's images raw)
    files = sorted(str(p) for p in Path(sys.argv[1]).rglob('*.jpg'))
    run_worker(
        [{'path': p, 'pad': 0} for p in files],
        {'max_num_hands': 4, 'model_complexity': 1, 'min_detection_confidence': 0.5},
        sys.argv[2],
    )
