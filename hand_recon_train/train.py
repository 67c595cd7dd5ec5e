"""Train ACR on synthetic two-hand data: ``python -m hand_recon_train.train --config tiny_cpu``.

A run folder (``train.out_dir``) holds ``train_log.csv`` (per logged step), ``metrics.csv`` (per epoch,
held-out split), ``loss.png``, ``checkpoint.safetensors`` (model + Adam state, tensors only, resumable
with ``--resume``), and at the end ``model.safetensors`` + ``model.json`` (hand_recon_ros.acr.weights) and
``manifest.json`` (sha256, config, data, metrics). Several processes: ``torchrun --nproc_per_node N -m
hand_recon_train.train ...`` (gloo on CPU, NCCL on CUDA); rank 0 writes every file.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, RandomSampler

from hand_recon_ros.acr.decoding import DecodeConfig
from hand_recon_ros.acr.network import PRESETS, build_acr

from .augment import AugmentConfig, AugmentedDataset
from .datasets.mixed import HarmonizedDataset, MixtureSampler, build_real_dataset, parse_real_sources
from .evaluate import METRIC_KEYS, evaluate
from .losses import LOSS_TERMS, ACRLoss, LossConfig
from .synth import GENERATOR_VERSION, SynthConfig, SynthDataset

__all__ = ['CONFIG_DIR', 'DEFAULTS', 'build_model', 'load_config', 'load_checkpoint', 'main', 'save_checkpoint',
           'train']

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
CHECKPOINT_NAME = 'checkpoint.safetensors'
DEFAULTS = {
    'model': {'preset': 'acr_light', 'input_size': 256, 'overrides': {}, 'pretrained': False},
    'data': {'train_seed': 0, 'train_size': 1000, 'val_seed': 100000, 'val_size': 64, 'num_workers': 0,
             'cache_dir': None, 'synth': {}, 'augment': {}, 'real': [], 'synth_weight': 1.0},
    'optim': {'batch_size': 8, 'epochs': 1, 'lr': 3.0e-4, 'weight_decay': 1.0e-6, 'lr_steps': [10, 20],
              'lr_factor': 0.1, 'grad_clip': 10.0},
    'loss': {},
    'decode': {},
    'train': {'seed': 0, 'device': 'auto', 'out_dir': 'out/train/run', 'log_every': 10, 'max_steps': None,
              'init_weights': None,
              'threads': 0, 'amp': None, 'eval_every': 1, 'eval_batches': None, 'progress': True},
}


# ---------------------------------------------------------------------------------------------- config
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
        else:       # a run from before stages were recorded
            batch = ((parent.get('config') or {}).get('optim') or {}).get('batch_size')
            steps = parent.get('steps')
            earlier = [{'config_source': (parent.get('config') or {}).get('config_source'), 'steps': steps,
                        'samples': steps * batch * parent.get('world_size', 1) if steps and batch else None,
                        'created_utc': parent.get('created_utc'), 'sha256': parent.get('sha256')}]
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


def _merge(base: dict, override: dict, where: str = '') -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in base:
            raise ValueError(f'unknown config key {where}{key!r}; known: {sorted(base)}')
        # free-form sections (passed on to other config classes, which check them)
        if isinstance(base[key], dict) and base[key] and isinstance(value, dict):
            out[key] = _merge(base[key], value, f'{where}{key}.')
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_value(text: str):
    """YAML scalar, but '1e-3' is a number (YAML 1.1 would make it a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def merged_config(path: Path, overrides: list[str] | None, defaults: dict) -> dict:
    """YAML file + `section.key=value` overrides merged onto the defaults (unknown keys refused)."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: the config must be a YAML mapping')
    for item in overrides or []:
        key, sep, value = item.partition('=')
        section, dot, name = key.partition('.')
        if not sep or not dot:
            raise ValueError(f'override must look like section.key=value, got {item!r}')
        data.setdefault(section, {})[name] = _parse_value(value)
    return _merge(defaults, data)


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """A YAML config by path or by name in ``hand_recon_train/configs`` merged over ``DEFAULTS``;
    ``overrides``: ``section.key=value`` strings (value parsed as YAML)."""
    path = Path(name_or_path)
    if not path.is_file():
        named = CONFIG_DIR / f'{name_or_path}.yaml'
        if not named.is_file():
            available = sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))
            raise FileNotFoundError(f'no config {name_or_path!r} (not a file; named configs: {available})')
        path = named
    config = merged_config(path, overrides, DEFAULTS)
    if config['model']['preset'] not in PRESETS:
        raise ValueError(f"model.preset must be one of {sorted(PRESETS)}, got {config['model']['preset']!r}")
    if config['data']['train_seed'] == config['data']['val_seed']:
        raise ValueError('data.val_seed must differ from data.train_seed (the evaluation split is held out)')
    if not isinstance(config['model']['pretrained'], bool):
        raise ValueError(f"model.pretrained must be true or false, got {config['model']['pretrained']!r}")
    if config['model']['pretrained']:
        from hand_recon_ros.acr.pretrained import PRETRAINED_BACKBONES
        backbone = {**PRESETS[config['model']['preset']], **(config['model']['overrides'] or {})}.get('backbone')
        if backbone not in PRETRAINED_BACKBONES:
            raise ValueError(f"model.pretrained: no ImageNet weights for backbone {backbone!r} "
                             f"(preset {config['model']['preset']!r}); available for: {', '.join(PRETRAINED_BACKBONES)}")
    if config['train']['amp'] not in (None, 'bf16'):
        raise ValueError(f"train.amp must be null or 'bf16', got {config['train']['amp']!r}")
    for key in ('lr', 'weight_decay', 'lr_factor', 'grad_clip'):
        value = config['optim'][key]
        try:
            config['optim'][key] = float(value)      # YAML 1.1 reads '3e-4' (no dot) as a string
        except (TypeError, ValueError):
            raise ValueError(f'optim.{key} must be a number, got {value!r}') from None
    for key in ('batch_size', 'epochs', 'log_every', 'eval_every'):
        section = 'train' if key in ('log_every', 'eval_every') else 'optim'
        if not isinstance(config[section][key], int) or config[section][key] < 1:
            raise ValueError(f'{section}.{key} must be a positive int, got {config[section][key]!r}')
    AugmentConfig.from_dict(config['data']['augment'])          # refuse bad values before any work
    parse_real_sources(config['data']['real'])
    weight = config['data']['synth_weight']
    if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f'data.synth_weight must be a number >= 0, got {weight!r}')
    if weight == 0 and not config['data']['real']:
        raise ValueError('data.synth_weight is 0 but data.real lists no source: nothing to train on')
    config['config_source'] = str(path)
    return config


# ---------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    """Model and Adam state as tensors in one safetensors file; the rest (epoch, step, param groups) as
    JSON metadata. Never pickle, so a checkpoint cannot run code when loaded."""
    tensors = {f'model.{k}': v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, entry in opt['state'].items():
        for key, value in entry.items():
            tensors[f'optim.{index}.{key}'] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {'state': state, 'param_groups': opt['param_groups']}
    tmp = path.with_name(path.name + '.tmp')
    save_file(tensors, str(tmp), metadata={'checkpoint': json.dumps(meta)})
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, optimizer=None) -> dict:
    """Restore model (and optimizer) from :func:`save_checkpoint`; returns the saved ``state`` dict."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f'no checkpoint at {path}')
    with safe_open(str(path), framework='pt') as handle:
        meta = json.loads((handle.metadata() or {}).get('checkpoint', 'null') or 'null')
        if not isinstance(meta, dict):
            raise ValueError(f'{path} is not a hand_recon_train checkpoint (no checkpoint metadata)')
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    model_state = {k[len('model.'):]: v for k, v in tensors.items() if k.startswith('model.')}
    from hand_recon_ros.acr.weights import check_state_dict
    check_state_dict(model, model_state, str(path))
    model.load_state_dict(model_state, strict=True)
    if optimizer is not None:
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith('optim.'):
                _, index, name = key.split('.', 2)
                state.setdefault(int(index), {})[name] = value
        groups = meta['param_groups']
        for group in groups:
            if isinstance(group.get('betas'), list):
                group['betas'] = tuple(group['betas'])
        optimizer.load_state_dict({'state': state, 'param_groups': groups})
    return meta['state']


def build_model(config: dict, resume=None):
    """The configured network -> (model, pretrained provenance or None). ``model.pretrained`` copies the ImageNet
    weights into the backbone trunk only for a run from scratch: ``train.init_weights`` or a resumed checkpoint
    overwrite every weight anyway, so the file is not even read then."""
    mcfg = config['model']
    model = build_acr(mcfg['preset'], input_size=int(mcfg['input_size']), **(mcfg['overrides'] or {}))
    pretrained = None
    if mcfg['pretrained'] and not config['train']['init_weights'] and resume is None:
        from hand_recon_ros.acr.pretrained import load_pretrained_backbone
        pretrained = load_pretrained_backbone(model)
    return model, pretrained


# ---------------------------------------------------------------------------------------------- logging
def _append_csv(path: Path, fields: list[str], row: dict) -> None:
    new = not path.is_file()
    if not new:
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            old, header = list(reader), reader.fieldnames
        if header is not None and list(header) != fields:   # a run resumed by a version that logs other columns
            with open(path, 'w', newline='') as f:
                writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
                writer.writeheader()
                writer.writerows({k: r.get(k, '') for k in fields} for r in old)
    with open(path, 'a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, '') for k in fields})


def _plot(out_dir: Path) -> Path | None:
    log, metrics_path = out_dir / 'train_log.csv', out_dir / 'metrics.csv'
    if not log.is_file():
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    with open(log) as f:
        rows = list(csv.DictReader(f))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = [int(r['step']) for r in rows]
    for key in ('total',) + LOSS_TERMS:
        values = [float(r[key]) if r.get(key) not in (None, '') else math.nan for r in rows]
        if any(v > 0 for v in values if math.isfinite(v)):
            axes[0].plot(steps, values, label=key, linewidth=2.0 if key == 'total' else 1.0)
    axes[0].set_yscale('log')
    axes[0].set_xlabel('step')
    axes[0].set_title('training loss (weighted terms)')
    axes[0].legend(fontsize=7)
    if metrics_path.is_file():
        with open(metrics_path) as f:
            mrows = list(csv.DictReader(f))
        msteps = [int(r['step']) for r in mrows]
        for key in ('mpjpe_mm', 'pa_mpjpe_mm', 'pj2d_px'):
            axes[1].plot(msteps, [float(r[key]) if r[key] else math.nan for r in mrows], marker='o', label=key)
        axes[1].set_xlabel('step')
        axes[1].set_title('held-out synthetic split')
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / 'loss.png'
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- training
def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ['RANK']), world, int(os.environ.get('LOCAL_RANK', '0'))


def _lr_at(config: dict, epoch: int) -> float:
    optim = config['optim']
    return optim['lr'] * optim['lr_factor'] ** sum(1 for step in optim['lr_steps'] if epoch >= step)


def _training_data(synth_set, dcfg: dict, seed: int, model, world: int, rank: int, num_vertices: int):
    """-> (dataset, sampler, datasets needing set_epoch, real sources, augment config): synthetic data alone,
    or mixed with ``data.real`` in the configured proportions; augmented when ``data.augment.enabled``."""
    augment = AugmentConfig.from_dict(dcfg['augment'])
    real_sources = parse_real_sources(dcfg['real'])
    epoch_aware = []

    def maybe_augment(dataset, offset):
        if not augment.enabled:
            return dataset
        wrapped = AugmentedDataset(dataset, augment, seed=seed * 1009 + offset, normalization=model.normalization)
        epoch_aware.append(wrapped)
        return wrapped

    if not real_sources:
        data = maybe_augment(synth_set, 0)
        if world > 1:
            return data, DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=seed), \
                epoch_aware, real_sources, augment
        return data, RandomSampler(data, generator=torch.Generator().manual_seed(seed)), epoch_aware, \
            real_sources, augment
    parts, weights = [], []
    if dcfg['synth_weight'] > 0:
        parts.append(HarmonizedDataset(maybe_augment(synth_set, 0), 0, num_vertices))
        weights.append(float(dcfg['synth_weight']))
    for i, source in enumerate(real_sources, start=1):
        real = build_real_dataset(source, model.config.input_size, model.normalization)
        parts.append(HarmonizedDataset(maybe_augment(real, i), i, num_vertices))
        weights.append(source['weight'])
    sampler = MixtureSampler([len(p) for p in parts], weights, max(1, int(dcfg['train_size']) // world), seed, rank)
    return ConcatDataset(parts), sampler, epoch_aware, real_sources, augment


def train(config: dict, resume: str | os.PathLike | None = None) -> dict:
    """Run the configured training; returns {'out_dir', 'metrics', 'model', 'history'} (rank 0)."""
    from hand_recon_ros.hand_model.model import load_hand_model
    from hand_recon_ros.runtime import resolve_device, sha256_of

    rank, world, local_rank = _distributed()
    tcfg, dcfg, ocfg = config['train'], config['data'], config['optim']
    device = resolve_device(tcfg['device'])
    if world > 1:
        import torch.distributed as dist
        if device.type == 'cuda':
            device = torch.device('cuda', local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    if tcfg['threads']:
        torch.set_num_threads(int(tcfg['threads']))
    out_dir = Path(tcfg['out_dir'])
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(tcfg['seed'])
    mcfg = config['model']
    model, pretrained = build_model(config, resume)
    model = model.to(device)
    synth = SynthConfig.from_dict({**dcfg['synth'], 'image_size': model.config.input_size})
    train_set = SynthDataset(synth, seed=dcfg['train_seed'], length=dcfg['train_size'],
                             normalization=model.normalization, cache_dir=dcfg['cache_dir'])
    val_set = SynthDataset(synth, seed=dcfg['val_seed'], length=dcfg['val_size'],
                           normalization=model.normalization, cache_dir=dcfg['cache_dir'])
    hand_model = load_hand_model(device=device)
    decode_config = DecodeConfig(**config['decode'])
    loss_fn = ACRLoss(hand_model, LossConfig.from_dict(config['loss']), decode_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=ocfg['lr'], weight_decay=ocfg['weight_decay'])

    start_epoch, step = 0, 0
    if tcfg['init_weights'] and resume is None:
        # warm start (e.g. the synthetic model before real data): weights only, a fresh optimiser and schedule
        from hand_recon_ros.acr.weights import load_state_dict_into
        load_state_dict_into(model, tcfg['init_weights'])
    if resume is not None:
        state = load_checkpoint(Path(resume), model, optimizer)
        start_epoch, step = int(state['next_epoch']), int(state['step'])
        pretrained = state.get('pretrained_backbone')      # the interrupted run's initialisation
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        # every parameter gets a gradient (see the zero-weighted image-feature term below), so DDP needs no
        # unused-parameter search
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)

    train_data, sampler, epoch_aware, real_sources, augment = _training_data(
        train_set, dcfg, tcfg['seed'], model, world, rank, hand_model.num_vertices)
    workers = int(dcfg['num_workers'])
    # epoch-dependent augmentation must reach the workers: they are re-created each epoch then
    loader_kw = dict(batch_size=ocfg['batch_size'], num_workers=workers, drop_last=True,
                     pin_memory=device.type == 'cuda', persistent_workers=workers > 0 and not epoch_aware)
    loader = DataLoader(train_data, sampler=sampler, **loader_kw)
    val_loader = DataLoader(val_set, batch_size=ocfg['batch_size'], num_workers=0)
    if len(loader) == 0:
        raise ValueError(f"data.train_size ({dcfg['train_size']}) is smaller than one batch per process "
                         f"({ocfg['batch_size']} x {world})")

    log_fields = ['epoch', 'step', 'lr', 'seconds', 'total', *LOSS_TERMS]
    history, metrics = [], {}
    # evaluation + checkpoint every `eval_every` epochs and after the last one
    max_steps = tcfg['max_steps']
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if tcfg['amp'] == 'bf16' else None
    t_start = time.perf_counter()
    stop = False
    skipped_steps = 0
    for epoch in range(start_epoch, ocfg['epochs']):
        for group in optimizer.param_groups:
            group['lr'] = _lr_at(config, epoch)
        if isinstance(sampler, (DistributedSampler, MixtureSampler)):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(tcfg['seed'] * 100003 + epoch)    # same order on resume
        for dataset in epoch_aware:
            dataset.set_epoch(epoch)
        net.train()
        progress = loader
        if rank == 0 and tcfg['progress']:
            from tqdm import tqdm
            progress = tqdm(loader, desc=f'epoch {epoch}', leave=False, dynamic_ncols=True, disable=None)
        for batch in progress:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if autocast is not None:
                with autocast:
                    outputs = net(batch['image'])
            else:
                outputs = net(batch['image'])
            outputs = {k: v.float() for k, v in outputs.items()}
            total, terms = loss_fn(outputs, batch, epoch)
            # the image-feature head feeds IHMR, which is not trained here: a zero term keeps its
            # parameters in the graph (zero gradients) so DDP's gradient reduction always completes
            total = total + 0.0 * outputs['image_feature'].sum()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), ocfg['grad_clip'] or math.inf)
            if torch.isfinite(grad_norm):
                optimizer.step()
            else:
                # one bad batch must not turn every weight into NaN: drop its update, keep a count
                skipped_steps += 1
                optimizer.zero_grad(set_to_none=True)
                print(f'step {step + 1}: non-finite gradient, update skipped ({skipped_steps} so far)', flush=True)
            step += 1
            terms.update(epoch=epoch, step=step, lr=optimizer.param_groups[0]['lr'],
                         seconds=round(time.perf_counter() - t_start, 3))
            history.append(terms)
            if rank == 0:
                if step % tcfg['log_every'] == 0:
                    _append_csv(out_dir / 'train_log.csv', log_fields, terms)
                if hasattr(progress, 'set_postfix'):
                    progress.set_postfix(loss=f"{terms['total']:.2f}")
            if not math.isfinite(terms['total']):
                raise FloatingPointError(f'loss is {terms["total"]} at step {step}: {terms}')
            if max_steps is not None and step >= max_steps:
                stop = True
                break
        checkpoint_now = stop or epoch + 1 == ocfg['epochs'] or (epoch + 1 - start_epoch) % tcfg['eval_every'] == 0
        if rank == 0 and checkpoint_now:
            metrics = evaluate(model, val_loader, hand_model, device, decode_config, loss_fn,
                               max_batches=tcfg['eval_batches'])
            _append_csv(out_dir / 'metrics.csv', ['epoch', 'step', *METRIC_KEYS], {'epoch': epoch, 'step': step,
                                                                                   **metrics})
            save_checkpoint(out_dir / CHECKPOINT_NAME, model, optimizer,
                            {'next_epoch': epoch + 1, 'step': step, 'config': config,
                             'pretrained_backbone': pretrained})
            _plot(out_dir)
            print(f'epoch {epoch} step {step}: ' + ', '.join(f'{k} {v:.4g}' for k, v in metrics.items()),
                  flush=True)
        if stop:
            break

    result = {'out_dir': str(out_dir), 'metrics': metrics, 'history': history, 'model': None,
              'skipped_steps': skipped_steps}
    if rank == 0:
        from hand_recon_ros.acr.weights import save_acr
        weights_path = out_dir / 'model.safetensors'
        real_names = ' + '.join(src['type'] for src in real_sources)
        description = (f"ACR {mcfg['preset']}@{model.config.input_size} trained on synthetic data "
                       f"({GENERATOR_VERSION}, {hand_model.identity})" + (f' + {real_names}' if real_names else '')
                       + f'; {step} steps' + (' with augmentation' if augment.enabled else ''))
        save_acr(model, weights_path, extra={'description': description, 'metrics': metrics})
        manifest = {
            'weights': weights_path.name,
            'sha256': sha256_of(weights_path),
            'description': description,
            'created_utc': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'config': config,
            'data': {'generator': GENERATOR_VERSION, 'synth_config': synth.to_dict(),
                     'synth_config_hash': synth.config_hash(), 'hand_model': hand_model.identity,
                     'hand_model_is_standin': hand_model.is_standin,
                     'train': {'seed': dcfg['train_seed'], 'size': dcfg['train_size']},
                     'val': {'seed': dcfg['val_seed'], 'size': dcfg['val_size']},
                     'augment': dataclasses.asdict(augment) if augment.enabled else None,
                     'real': real_sources, 'synth_weight': dcfg['synth_weight'] if real_sources else None},
            'metrics': metrics,
            # ImageNet initialisation of the backbone (hand_recon_ros.acr.pretrained), None when not used
            'pretrained_backbone': pretrained,
            'steps': step,
            'skipped_steps': skipped_steps,
            'world_size': world,
            'environment': {'torch': torch.__version__, 'python': platform.python_version(),
                            'device': str(device)},
        }
        manifest['stages'] = training_stages(tcfg['init_weights'], {
            'config_source': config.get('config_source'), 'steps': step,
            'samples': step * ocfg['batch_size'] * world, 'created_utc': manifest['created_utc'],
            'sha256': manifest['sha256'], 'pretrained_backbone': pretrained})
        (out_dir / 'manifest.json').write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + '\n')
        result['model'] = str(weights_path)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Train ACR on synthetic two-hand data.')
    parser.add_argument('--config', default='tiny_cpu',
                        help='YAML file or a name in hand_recon_train/configs (tiny_cpu, light_synthetic)')
    parser.add_argument('--resume', default=None, help='checkpoint file or run folder to continue from')
    parser.add_argument('--out-dir', default=None, help='overrides train.out_dir')
    parser.add_argument('--max-steps', type=int, default=None, help='stop after this many steps (smoke runs)')
    parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                        help='override one config value (YAML syntax), repeatable')
    args = parser.parse_args(argv)
    overrides = list(args.set)
    if args.out_dir is not None:
        overrides.append(f'train.out_dir={args.out_dir}')
    if args.max_steps is not None:
        overrides.append(f'train.max_steps={args.max_steps}')
    config = load_config(args.config, overrides)
    result = train(config, resume=args.resume)
    if result['model']:
        print(f"wrote {result['model']} and {Path(result['out_dir']) / 'manifest.json'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
