"""Training loop: a tiny seeded CPU run lowers the loss, writes every artefact, exports loadable weights,
and resumes from its safetensors checkpoint."""

import csv
import json

import numpy as np
import pytest
import torch

from hand_recon_ros.acr.network import build_acr
from hand_recon_ros.acr.weights import load_acr
from hand_recon_ros.runtime import sha256_of
from hand_recon_train.train import load_checkpoint, load_config, save_checkpoint, train


def _tiny(tmp_path, **extra):
    overrides = [
        f'train.out_dir={tmp_path}',
        'train.progress=false',
        'data.train_size=8',
        'data.val_size=4',
        'optim.batch_size=4',
        'loss.seg_epochs=100',
        'train.threads=2',
    ]
    overrides += [f'{k.replace("__", ".")}={v}' for k, v in extra.items()]
    return load_config('tiny_cpu', overrides)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('tiny_run')
    # 4 samples = one batch: the same images every step, so the loss must fall quickly (lr 1e-3)
    config = _tiny(out, optim__epochs=8, data__train_size=4, optim__lr=1e-3, train__eval_every=100)
    return out, config, train(config)


def test_tiny_training_lowers_the_loss(tiny_run):
    _, _, result = tiny_run
    totals = [h['total'] for h in result['history']]
    assert len(totals) == 8
    first, last = sum(totals[:2]) / 2, sum(totals[-2:]) / 2
    assert last < 0.7 * first, totals


def test_run_folder_has_logs_plot_checkpoint_and_manifest(tiny_run):
    out, config, result = tiny_run
    for name in (
        'train_log.csv',
        'metrics.csv',
        'loss.png',
        'checkpoint.safetensors',
        'model.safetensors',
        'model.json',
        'manifest.json',
    ):
        assert (out / name).is_file(), name
    with open(out / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [7]  # eval_every 100: only after the last epoch
    assert float(rows[-1]['num_hands']) > 0 and float(rows[-1]['mpjpe_mm']) > 0
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['sha256'] == sha256_of(out / 'model.safetensors')
    assert manifest['data']['hand_model_is_standin'] is True
    assert manifest['data']['val']['seed'] != manifest['data']['train']['seed']
    assert manifest['config']['model']['input_size'] == 128
    assert set(manifest['metrics']) >= {'mpjpe_mm', 'pa_mpjpe_mm', 'recall'}


def test_exported_weights_reproduce_the_trained_network(tiny_run):
    out, config, result = tiny_run
    exported = load_acr(out / 'model.safetensors')
    reference = build_acr('acr_light', input_size=128)
    load_checkpoint(out, reference)
    reference.eval()
    image = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = exported(image), reference(image)
    for key in ('center_maps', 'params', 'segmentation'):
        torch.testing.assert_close(a[key], b[key])


def test_checkpoint_round_trip_restores_adam_state(tmp_path):
    torch.manual_seed(0)
    model = build_acr('acr_light', input_size=128)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 128, 128))['params'].square().mean().backward()
    opt.step()
    save_checkpoint(tmp_path / 'ck.safetensors', model, opt, {'next_epoch': 3, 'step': 7})
    fresh = build_acr('acr_light', input_size=128)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=5.0)
    state = load_checkpoint(tmp_path / 'ck.safetensors', fresh, fresh_opt)
    assert state == {'next_epoch': 3, 'step': 7}
    for (k, v), (_, w) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(v, w), k
    assert fresh_opt.param_groups[0]['lr'] == 1e-3
    saved, loaded = opt.state_dict()['state'], fresh_opt.state_dict()['state']
    assert saved.keys() == loaded.keys()
    for index in saved:
        for key in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(torch.as_tensor(saved[index][key]), torch.as_tensor(loaded[index][key]))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / 'missing.safetensors', fresh)


def test_channels_last_trains_the_same_network(tmp_path):
    # NHWC is a memory layout only: same losses to float rounding, and the saved weights load anywhere
    plain = train(_tiny(tmp_path / 'plain', optim__epochs=1, train__eval_every=100))
    nhwc = train(_tiny(tmp_path / 'nhwc', optim__epochs=1, train__eval_every=100, train__channels_last='true'))
    a = [h['total'] for h in plain['history']]
    b = [h['total'] for h in nhwc['history']]
    assert len(a) == len(b) == 2
    np.testing.assert_allclose(b, a, rtol=1e-3)
    from hand_recon_ros.acr.weights import load_acr

    loaded = load_acr(tmp_path / 'nhwc' / 'model.safetensors')
    for key, value in loaded.state_dict().items():
        assert value.is_contiguous(), key


def test_resume_continues_epochs_and_steps(tmp_path):
    first = train(_tiny(tmp_path, optim__epochs=1))
    assert len(first['history']) == 2
    resumed = train(_tiny(tmp_path, optim__epochs=2), resume=tmp_path)
    assert [h['epoch'] for h in resumed['history']] == [1, 1]
    assert [h['step'] for h in resumed['history']] == [3, 4]
    with open(tmp_path / 'metrics.csv') as f:
        assert [int(r['epoch']) for r in csv.DictReader(f)] == [0, 1]


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match='unknown config key'):
        load_config('tiny_cpu', ['optim.learning_rate=1'])
    with pytest.raises(ValueError, match='held out'):
        load_config('tiny_cpu', ['data.val_seed=0'])
    with pytest.raises(ValueError, match='section.key=value'):
        load_config('tiny_cpu', ['epochs=3'])
    with pytest.raises(FileNotFoundError, match='light_synthetic'):
        load_config('no_such_config')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='mapping'):
        load_config(bad)
    assert load_config('light_synthetic')['model']['input_size'] == 256
    assert load_config('tiny_cpu', ['optim.lr=1e-3'])['optim']['lr'] == 0.001
    with pytest.raises(ValueError, match='optim.lr must be a number'):
        load_config('tiny_cpu', ['optim.lr=fast'])


def test_training_package_never_imports_ros():
    import subprocess
    import sys

    code = (
        'import sys, hand_recon_train.train, hand_recon_train.evaluation.cli, hand_recon_train.synth; '
        'print(sorted(m for m in sys.modules if m.split(".")[0] in ("rclpy", "rosidl_runtime_py")))'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


def test_fp16_export_is_loaded_by_the_node_pipeline(tiny_run, tmp_path):
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
    from hand_recon_train.export import export_fp16

    out, _, _ = tiny_run
    shipped = tmp_path / 'acr_default.safetensors'
    doc = export_fp16(out, shipped, description='tiny test model')
    assert shipped.stat().st_size < 0.6 * (out / 'model.safetensors').stat().st_size  # float16 storage
    assert doc['extra']['sha256'] == sha256_of(shipped) and doc['extra']['storage'] == 'float16'
    fp32, fp16 = load_acr(out / 'model.safetensors'), load_acr(shipped)
    image = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = fp32(image), fp16(image)
    torch.testing.assert_close(b['params'], a['params'], atol=0.05, rtol=0.01)
    rec = create_reconstructor(PipelineConfig(weights=str(shipped), device='cpu'))
    info = rec.info()
    assert info['weights_sha256'] == doc['extra']['sha256']
    assert info['weights_description'] == 'tiny test model' and info['network'] == 'acr/resnet18@128'


def test_metrics_csv_keeps_its_rows_when_the_columns_change(tmp_path):
    from hand_recon_train.run_record import append_csv as _append_csv

    path = tmp_path / 'metrics.csv'
    _append_csv(path, ['epoch', 'mpjpe_mm'], {'epoch': 0, 'mpjpe_mm': 60.0})
    _append_csv(path, ['epoch', 'mpjpe_mm', 'depth_ratio'], {'epoch': 1, 'mpjpe_mm': 55.0, 'depth_ratio': 1.1})
    assert path.read_text().splitlines() == ['epoch,mpjpe_mm,depth_ratio', '0,60.0,', '1,55.0,1.1']


def test_warm_start_from_an_exported_model_keeps_its_training_stages(tiny_run, tmp_path):
    from hand_recon_train.export import export_fp16
    from hand_recon_train.train import training_stages

    out, _, _ = tiny_run
    shipped = tmp_path / 'acr_default.safetensors'
    doc = export_fp16(out, shipped, description='tiny test model')
    stages = training_stages(shipped, {'config_source': 'next.yaml', 'sha256': 'x'})
    assert stages[:-1] == doc['extra']['training']['stages'] and stages[-1]['config_source'] == 'next.yaml'
    assert stages[0]['sha256'] == sha256_of(out / 'model.safetensors')
    # a file whose JSON does not describe it: only its hash is known
    other = tmp_path / 'other.safetensors'
    other.write_bytes(shipped.read_bytes() + b' ')
    (tmp_path / 'other.json').write_text(shipped.with_suffix('.json').read_text())
    assert training_stages(other, {'sha256': 'y'})[0] == {
        'config_source': None,
        'steps': None,
        'samples': None,
        'created_utc': None,
        'sha256': sha256_of(other),
    }


def test_checkpoint_export_gives_the_running_network_to_the_node(tiny_run, tmp_path):
    from hand_recon_train.export import main as export_main

    out, _, _ = tiny_run
    looked_at = tmp_path / 'epoch.safetensors'
    assert export_main([str(out), '--checkpoint', '--out', str(looked_at)]) == 0
    exported = load_acr(looked_at)
    assert exported.config.input_size == 128
    reference = build_acr('acr_light', input_size=128)
    load_checkpoint(out, reference)
    exported.eval(), reference.eval()
    image = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = exported(image), reference(image)
    torch.testing.assert_close(a['params'], b['params'])
    description = json.loads(looked_at.with_suffix('.json').read_text())['extra']['description']
    assert 'after epoch 7' in description and 'not shipped' in description


def test_checkpoint_export_refuses_a_folder_without_a_checkpoint(tmp_path):
    from hand_recon_train.export import export_checkpoint

    with pytest.raises(FileNotFoundError, match='no checkpoint'):
        export_checkpoint(tmp_path, tmp_path / 'x.safetensors')
    (tmp_path / 'checkpoint.safetensors').write_bytes(b'not a safetensors file')
    with pytest.raises(ValueError, match='not a readable checkpoint'):
        export_checkpoint(tmp_path, tmp_path / 'x.safetensors')
    assert not (tmp_path / 'x.safetensors').exists()
