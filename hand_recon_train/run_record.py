"""The run record both trainers write into their output folder: ``train_log.csv`` (one row per logged step),
``metrics.csv`` (ACR: per evaluation) and ``manifest.json`` (weights file and its sha256, description, time,
config, data, metrics, environment, plus each trainer's own entries)."""

from __future__ import annotations

import csv
import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .loop import Hook, LoopState

__all__ = ['append_csv', 'CsvLog', 'utc_now', 'environment', 'manifest', 'write_manifest', 'training_stages']


def append_csv(path: Path, fields: list[str], row: dict) -> None:
    """One row; a file whose header differs (a run resumed by a version that logs other columns) is rewritten
    with ``fields`` first, its rows kept."""
    new = not path.is_file()
    if not new:
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            old, header = list(reader), reader.fieldnames
        if header is not None and list(header) != fields:
            with open(path, 'w', newline='') as f:
                writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
                writer.writeheader()
                writer.writerows({k: r.get(k, '') for k in fields} for r in old)
    with open(path, 'a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, '') for k in fields})


class CsvLog(Hook):
    """Loop hook: every ``every``-th step's record as a row of ``path``; ``fresh`` starts a new file."""

    def __init__(self, path: Path, fields: list[str], every: int = 1, fresh: bool = False) -> None:
        self.path, self.fields, self.every = Path(path), list(fields), int(every)
        self._header_checked = False
        if fresh:
            self.path.unlink(missing_ok=True)

    def on_step(self, state: LoopState, record: dict) -> None:
        if state.step % self.every:
            return
        if not self._header_checked:  # the first row checks the header; later ones only append
            append_csv(self.path, self.fields, record)
            self._header_checked = True
            return
        with open(self.path, 'a', newline='') as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction='ignore').writerow(
                {k: record.get(k, '') for k in self.fields}
            )


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec='seconds')


def environment(device: Any) -> dict:
    return {'torch': torch.__version__, 'python': platform.python_version(), 'device': str(device)}


def manifest(
    weights: Path, description: str, config: dict, data: dict, metrics: dict, device: Any, **entries: Any
) -> dict:
    """The entries every run's manifest has, then the trainer's own (``entries``)."""
    from hand_recon_ros.runtime import sha256_of

    return {
        'weights': weights.name,
        'sha256': sha256_of(weights),
        'description': description,
        'created_utc': utc_now(),
        'config': config,
        'data': data,
        'metrics': metrics,
        'environment': environment(device),
        **entries,
    }


def write_manifest(out_dir: Path, record: dict) -> Path:
    path = Path(out_dir) / 'manifest.json'
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + '\n')
    return path


def training_stages(init_weights, this_stage: dict) -> list[dict]:
    """The chain of runs that produced a model, oldest first: the warm-start file's own run (read from the
    ``manifest.json`` beside it, when there is one) and then ``this_stage``."""
    from hand_recon_ros.runtime import sha256_of

    if not init_weights:
        return [this_stage]
    init_weights = Path(init_weights)
    try:
        parent = json.loads((init_weights.parent / 'manifest.json').read_text())
    except (OSError, ValueError):
        parent = None
    if parent is not None and parent.get('sha256') == sha256_of(init_weights):
        if parent.get('stages'):
            earlier = list(parent['stages'])
        else:  # a run from before stages were recorded
            batch = ((parent.get('config') or {}).get('optim') or {}).get('batch_size')
            steps = parent.get('steps')
            earlier = [
                {
                    'config_source': (parent.get('config') or {}).get('config_source'),
                    'steps': steps,
                    'samples': steps * batch * parent.get('world_size', 1) if steps and batch else None,
                    'created_utc': parent.get('created_utc'),
                    'sha256': parent.get('sha256'),
                }
            ]
    else:
        earlier = _exported_stages(init_weights)
    return earlier + [this_stage]


def _exported_stages(weights: Path) -> list[dict]:
    """Stages of an exported model (``export`` writes them into the JSON beside the weights, e.g. the shipped
    ``models/acr_default.json``); weights from elsewhere: only their hash is known."""
    from hand_recon_ros.runtime import sha256_of

    digest = sha256_of(weights)
    try:
        extra = json.loads(weights.with_suffix('.json').read_text()).get('extra') or {}
    except (OSError, ValueError, AttributeError):
        extra = {}
    stages = (extra.get('training') or {}).get('stages')
    if extra.get('sha256') == digest and stages:
        return list(stages)
    return [{'config_source': None, 'steps': None, 'samples': None, 'created_utc': None, 'sha256': digest}]
