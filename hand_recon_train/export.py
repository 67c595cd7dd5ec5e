"""Ship a trained run: fp16 safetensors + config JSON + manifest entry that the node loads.

    python -m hand_recon_train.export out/train/default_cpu --out models/acr_default.safetensors
    python -m hand_recon_train.export out/train/real_cpu_s5 --checkpoint --out /tmp/epoch.safetensors   # mid-run look
    python -m hand_recon_train.export out/train_ihmr/cpu --refiner --out models/ihmr_default.safetensors

Floating-point tensors are stored as float16 (half the size; the node loads them into its float32 or
reduced-precision network); integer buffers stay as they are. The JSON next to the weights carries the
architecture, a description of what the model is (and is not), training data, metrics and hashes.
"""

import argparse
import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from hand_recon_ros.acr.weights import _METADATA_KEY, load_acr
from hand_recon_ros.runtime import sha256_of


def _portable(source):
    """A config path without this machine's folders: from ``hand_recon_train/`` on, or the file name."""
    if not source or not Path(source).is_absolute():
        return source
    parts = Path(source).parts
    return str(Path(*parts[parts.index('hand_recon_train') :])) if 'hand_recon_train' in parts else Path(source).name


def export_fp16(run_dir, out_path, description=None):
    """Write out_path (fp16 safetensors) + out_path.json from a training run folder; returns the document."""
    run_dir, out_path = Path(run_dir), Path(out_path)
    weights = run_dir / 'model.safetensors'
    manifest_path = run_dir / 'manifest.json'
    if not weights.is_file() or not manifest_path.is_file():
        raise FileNotFoundError(
            f'{run_dir} is not a finished training run (needs model.safetensors and ' 'manifest.json)'
        )
    load_acr(weights)  # refuses a file that does not match its own architecture
    manifest = json.loads(manifest_path.read_text())
    # no machine-specific absolute paths in a shipped file
    if (manifest.get('config') or {}).get('config_source'):
        manifest['config']['config_source'] = _portable(manifest['config']['config_source'])
    stages = [dict(stage, config_source=_portable(stage.get('config_source'))) for stage in manifest.get('stages', [])]
    document = json.loads((weights.with_suffix('.json')).read_text())
    state = load_file(str(weights))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    document['extra'] = {
        'description': description or manifest.get('description', ''),
        'metrics_val_synthetic': manifest.get('metrics', {}),
        'training': {
            **{
                k: manifest.get(k) for k in ('steps', 'created_utc', 'world_size', 'environment', 'pretrained_backbone')
            },
            'stages': stages,
        },
        'data': manifest.get('data', {}),
        'config': manifest.get('config', {}),
        'source_weights_sha256_fp32': manifest.get('sha256', ''),
        'storage': 'float16',
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(half, str(out_path), metadata={_METADATA_KEY: json.dumps(document)})
    out_path.chmod(0o644)
    document['extra']['sha256'] = sha256_of(out_path)
    out_path.with_suffix('.json').write_text(json.dumps(document, indent=2, sort_keys=True) + '\n')
    return document


def export_refiner_fp16(run_dir, out_path):
    """Ship a trained IHMR-MLP refiner (``train_ihmr`` run folder or its refiner.safetensors): float tensors as
    float16, the training document kept, plus the hash of the float32 file it came from; returns the document."""
    from hand_recon_ros.refine.weights import _METADATA_KEY as REFINER_KEY
    from hand_recon_ros.refine.weights import read_refiner_document

    source, out_path = Path(run_dir), Path(out_path)
    if source.is_dir():
        source = source / 'refiner.safetensors'
    document = read_refiner_document(source)  # refuses anything that is not refiner weights
    state = load_file(str(source))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    extra = dict(document.get('extra') or {})
    extra.update(storage='float16 (loaded into float32 modules)', trained_file_sha256=sha256_of(source))
    extra.pop('sha256', None)  # the hash of the file written below, added to the JSON only
    document['extra'] = extra
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(half, str(out_path), metadata={REFINER_KEY: json.dumps(document, default=str)})
    out_path.chmod(0o644)
    document['extra']['sha256'] = sha256_of(out_path)
    out_path.with_suffix('.json').write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + '\n')
    return document


def export_checkpoint(run_dir, out_path):
    """Write the network of a run's latest checkpoint (a run still training, or an interrupted one) as float32
    weights the node and the benchmarks load, to look at a run before it ends; returns the saved ``extra``.
    Not for shipping: no manifest, no training chain."""
    from hand_recon_ros.acr.network import build_acr
    from hand_recon_ros.acr.weights import save_acr

    from .checkpoint import CHECKPOINT_NAME, load_checkpoint, read_checkpoint_state

    checkpoint = Path(run_dir) / CHECKPOINT_NAME
    state = read_checkpoint_state(checkpoint)
    model_cfg = (state.get('config') or {}).get('model') or {}
    if 'preset' not in model_cfg or 'input_size' not in model_cfg:
        raise ValueError(f'{checkpoint} does not record its model config (model.preset, model.input_size)')
    model = build_acr(
        model_cfg['preset'], input_size=int(model_cfg['input_size']), **(model_cfg.get('overrides') or {})
    )
    load_checkpoint(checkpoint, model)
    extra = {
        'description': (
            f'checkpoint of {Path(run_dir).name} after epoch {int(state["next_epoch"]) - 1}, '
            f'step {int(state["step"])} (intermediate, not shipped)'
        ),
        'checkpoint_step': int(state['step']),
    }
    save_acr(model, out_path, extra=extra)
    return extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run_dir')
    parser.add_argument(
        '--out',
        default=None,
        help='default: models/acr_default.safetensors (models/ihmr_default.safetensors with --refiner)',
    )
    parser.add_argument('--description', default=None)
    parser.add_argument(
        '--checkpoint',
        action='store_true',
        help="write the latest checkpoint's network (float32, for a look at a run still training) instead of shipping",
    )
    parser.add_argument(
        '--refiner', action='store_true', help='ship an IHMR-MLP refiner (a train_ihmr run folder) as float16'
    )
    args = parser.parse_args(argv)
    if args.out is None and args.checkpoint:
        parser.error('--checkpoint needs --out (an intermediate network must not replace the shipped one)')
    if args.out is None:
        args.out = 'models/ihmr_default.safetensors' if args.refiner else 'models/acr_default.safetensors'
    if args.refiner:
        doc = export_refiner_fp16(args.run_dir, args.out)
        print(
            f"wrote {args.out} (sha256 {doc['extra']['sha256'][:16]}, for ACR {doc['extra'].get('acr_sha256', '?')[:16]})"
        )
        return 0
    if args.checkpoint:
        extra = export_checkpoint(args.run_dir, args.out)
        print(f"wrote {args.out}: {extra['description']}")
        return 0
    doc = export_fp16(args.run_dir, args.out, args.description)
    size_mb = Path(args.out).stat().st_size / 1e6
    print(
        f"wrote {args.out} ({size_mb:.1f} MB, sha256 {doc['extra']['sha256'][:16]}) and "
        f"{Path(args.out).with_suffix('.json')}"
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
