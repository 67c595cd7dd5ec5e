"""The shipped network files agree with their manifest: models/README.md and the JSON beside the weights."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from hand_recon_ros.acr.weights import load_acr

MODELS = Path(__file__).resolve().parents[1] / 'models'


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize('name', sorted(p.name for p in MODELS.glob('acr_*.safetensors')))
def test_shipped_network_matches_its_manifest_rows(name):
    weights = MODELS / name
    digest = _sha256(weights)
    document = json.loads(weights.with_suffix('.json').read_text())
    assert document['extra']['sha256'] == digest
    rows = [line for line in (MODELS / 'README.md').read_text().splitlines() if line.startswith(f'| `{name}`')]
    assert len(rows) == 1 and re.findall(r'`([0-9a-f]{64})`', rows[0]) == [digest], 'models/README.md is stale'
    # what produced it is recorded, stage by stage, with the config each stage ran
    stages = document['extra']['training'].get('stages') or []
    configs = [Path(stage['config_source']).stem for stage in stages]
    assert all(f'--config {c}' in rows[0] for c in configs), (configs, rows[0])
    network = load_acr(weights)
    assert document['config']['input_size'] == network.config.input_size


def test_shipped_refiner_matches_its_row_loads_and_names_the_shipped_network():
    refiner = MODELS / 'ihmr_default.safetensors'
    if not refiner.exists():
        pytest.skip('no refiner shipped')
    digest = _sha256(refiner)
    document = json.loads(refiner.with_suffix('.json').read_text())
    assert document['extra']['sha256'] == digest
    rows = [line for line in (MODELS / 'README.md').read_text().splitlines() if line.startswith('| `ihmr_default.')]
    assert len(rows) == 1 and re.findall(r'`([0-9a-f]{64})`', rows[0]) == [digest], 'models/README.md is stale'
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor

    rec = create_reconstructor(PipelineConfig(device='cpu', refine=True))
    assert rec.refine_weights_sha256 == digest
    # trained on the features of the network shipped beside it
    assert rec.refiner_matches_network() is True
