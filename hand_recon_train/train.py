"""Train ACR on synthetic two-hand data: ``python -m hand_recon_train.train --config tiny_cpu``.

A run folder (``train.out_dir``) holds ``train_log.csv`` (per logged step), ``metrics.csv`` (per epoch,
held-out split), ``loss.png``, ``checkpoint.safetensors`` (model + Adam state, tensors only, resumable
with ``--resume``), and at the end ``model.safetensors`` + ``model.json`` (hand_recon_ros.acr.weights) and
``manifest.json`` (sha256, config, data, metrics). Several processes: ``torchrun --nproc_per_node N -m
hand_recon_train.train ...`` (gloo on CPU, NCCL on CUDA); rank 0 writes every file. The config schema is
``hand_recon_train.config.TrainConfig``; the loop is ``hand_recon_train.loop.run_loop`` with the hooks below.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import sys
import time
import typing
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, RandomSampler

from hand_recon_ros.acr.network import build_acr

from .augment import AugmentConfig, AugmentedDataset
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .config import CONFIG_DIR, TrainConfig
from .config import load_config as load_any_config
from .datasets.mixed import HarmonizedDataset, MixtureSampler, build_real_dataset, parse_real_sources
from .evaluation.epoch_metrics import METRIC_KEYS, evaluate
from .loop import Hook, LoopState, run_loop
from .losses import LOSS_TERMS, ACRLoss, LossConfig
from .run_record import CsvLog, append_csv, manifest, training_stages, write_manifest
from .synth import GENERATOR_VERSION, SynthConfig, SynthDataset

__all__ = [
    'CONFIG_DIR',
    'build_model',
    'load_config',
    'load_checkpoint',
    'main',
    'save_checkpoint',
    'train',
    'training_stages',
]

LOG_FIELDS = ['epoch', 'step', 'lr', 'seconds', 'total', *LOSS_TERMS]


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """An ACR training config (``hand_recon_train.config.TrainConfig``) by path or by name in
    ``hand_recon_train/configs``; ``overrides``: ``section.key=value`` strings (value parsed as YAML)."""
    return typing.cast(TrainConfig, load_any_config(name_or_path, overrides, schema=TrainConfig))


def build_model(config: TrainConfig, resume: Any = None) -> tuple[torch.nn.Module, dict | None]:
    """The configured network -> (model, pretrained provenance or None). ``model.pretrained`` copies the ImageNet
    weights into the backbone trunk only for a run from scratch: ``train.init_weights`` or a resumed checkpoint
    overwrite every weight anyway, so the file is not even read then."""
    mcfg = config.model
    model = build_acr(mcfg.preset, input_size=int(mcfg.input_size), **(mcfg.overrides or {}))
    pretrained = None
    if mcfg.pretrained and not config.train.init_weights and resume is None:
        from hand_recon_ros.acr.pretrained import load_pretrained_backbone

        pretrained = load_pretrained_backbone(model)
    return model, pretrained


# ---------------------------------------------------------------------------------------------- logging
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


def _device(name: str, world: int, local_rank: int) -> torch.device:
    from hand_recon_ros.runtime import resolve_device

    device = resolve_device(name)
    if world > 1:
        import torch.distributed as dist

        if device.type == 'cuda':
            device = torch.device('cuda', local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    return device


def _training_data(synth_set, dcfg: Any, seed: int, model, world: int, rank: int, num_vertices: int):
    """-> (dataset, sampler, datasets needing set_epoch, real sources, augment config): synthetic data alone,
    or mixed with ``data.real`` in the configured proportions; augmented when ``data.augment.enabled``."""
    augment = AugmentConfig.from_dict(dcfg.augment)
    real_sources = parse_real_sources(dcfg.real)
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
            return (
                data,
                DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=seed),
                epoch_aware,
                real_sources,
                augment,
            )
        return (
            data,
            RandomSampler(data, generator=torch.Generator().manual_seed(seed)),
            epoch_aware,
            real_sources,
            augment,
        )
    parts, weights = [], []
    if dcfg.synth_weight > 0:
        parts.append(HarmonizedDataset(maybe_augment(synth_set, 0), 0, num_vertices))
        weights.append(float(dcfg.synth_weight))
    for i, source in enumerate(real_sources, start=1):
        real = build_real_dataset(source, model.config.input_size, model.normalization)
        parts.append(HarmonizedDataset(maybe_augment(real, i), i, num_vertices))
        weights.append(source['weight'])
    sampler = MixtureSampler([len(p) for p in parts], weights, max(1, int(dcfg.train_size) // world), seed, rank)
    return ConcatDataset(parts), sampler, epoch_aware, real_sources, augment


def _train_loader(
    data: Any, sampler: Any, config: TrainConfig, device: torch.device, world: int, epoch_aware_workers: bool
) -> DataLoader:
    workers, batch_size = config.data.num_workers, config.optim.batch_size
    # epoch-dependent augmentation must reach the workers: they are re-created each epoch then
    loader = DataLoader(
        data,
        sampler=sampler,
        batch_size=batch_size,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == 'cuda',
        persistent_workers=workers > 0 and not epoch_aware_workers,
    )
    if len(loader) == 0:
        raise ValueError(
            f'data.train_size ({config.data.train_size}) is smaller than one batch per process '
            f'({batch_size} x {world})'
        )
    return loader


class _Progress(Hook):
    """Rank 0's progress bar (tqdm) over each epoch's batches; ``wrap`` is the loop's batch source."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def wrap(self, loader: Any, epoch: int) -> Any:
        if not self.enabled:
            return loader
        from tqdm import tqdm

        self.bar = tqdm(loader, desc=f'epoch {epoch}', leave=False, dynamic_ncols=True, disable=None)
        return self.bar

    def on_step(self, state: LoopState, record: dict) -> None:
        if self.bar is not None and hasattr(self.bar, 'set_postfix'):
            self.bar.set_postfix(loss=f"{record['total']:.2f}")


class _FiniteLoss(Hook):
    """After the step has been logged: a NaN / inf loss ends the run with the step's terms."""

    def on_step(self, state: LoopState, record: dict) -> None:
        if not math.isfinite(record['total']):
            raise FloatingPointError(f"loss is {record['total']} at step {state.step}: {record}")


class _ValidateAndCheckpoint(Hook):
    """Every ``train.eval_every`` epochs, after the last one and when the run stops early: the held-out metrics
    (``metrics.csv``), the resumable checkpoint and ``loss.png``."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: Path,
        model: torch.nn.Module,
        optimizer: Any,
        validate: typing.Callable[[], dict],
        pretrained: dict | None,
        start_epoch: int,
    ) -> None:
        self.config, self.out_dir, self.model, self.optimizer = config, out_dir, model, optimizer
        self.validate, self.pretrained, self.start_epoch = validate, pretrained, start_epoch
        self.metrics: dict = {}

    def on_epoch_end(self, state: LoopState) -> None:
        epoch, every = state.epoch, self.config.train.eval_every
        if not (state.stop or epoch + 1 == self.config.optim.epochs or (epoch + 1 - self.start_epoch) % every == 0):
            return
        self.metrics = self.validate()
        append_csv(
            self.out_dir / 'metrics.csv',
            ['epoch', 'step', *METRIC_KEYS],
            {'epoch': epoch, 'step': state.step, **self.metrics},
        )
        save_checkpoint(
            self.out_dir / CHECKPOINT_NAME,
            self.model,
            self.optimizer,
            {
                'next_epoch': epoch + 1,
                'step': state.step,
                'config': self.config.to_dict(),
                'pretrained_backbone': self.pretrained,
            },
        )
        _plot(self.out_dir)
        print(
            f'epoch {epoch} step {state.step}: ' + ', '.join(f'{k} {v:.4g}' for k, v in self.metrics.items()),
            flush=True,
        )


def _export(
    config: TrainConfig,
    out_dir: Path,
    model: Any,
    hand_model: Any,
    synth: SynthConfig,
    steps: int,
    metrics: dict,
    extra: dict,
) -> Path:
    """``model.safetensors`` + ``model.json`` and the run's ``manifest.json`` (with the chain of stages)."""
    from hand_recon_ros.acr.weights import save_acr

    dcfg = config.data
    real_sources, augment = extra['real'], extra['augment']
    weights_path = out_dir / 'model.safetensors'
    real_names = ' + '.join(src['type'] for src in real_sources)
    description = (
        f'ACR {config.model.preset}@{model.config.input_size} trained on synthetic data '
        f'({GENERATOR_VERSION}, {hand_model.identity})'
        + (f' + {real_names}' if real_names else '')
        + f'; {steps} steps'
        + (' with augmentation' if augment.enabled else '')
    )
    save_acr(model, weights_path, extra={'description': description, 'metrics': metrics})
    data = {
        'generator': GENERATOR_VERSION,
        'synth_config': synth.to_dict(),
        'synth_config_hash': synth.config_hash(),
        'hand_model': hand_model.identity,
        'hand_model_is_standin': hand_model.is_standin,
        'train': {'seed': dcfg.train_seed, 'size': dcfg.train_size},
        'val': {'seed': dcfg.val_seed, 'size': dcfg.val_size},
        'augment': dataclasses.asdict(augment) if augment.enabled else None,
        'real': real_sources,
        'synth_weight': dcfg.synth_weight if real_sources else None,
    }
    record = manifest(
        weights_path,
        description,
        config.to_dict(),
        data,
        metrics,
        extra['device'],
        # ImageNet initialisation of the backbone (hand_recon_ros.acr.pretrained), None when not used
        pretrained_backbone=extra['pretrained'],
        steps=steps,
        skipped_steps=extra['skipped_steps'],
        world_size=extra['world'],
    )
    record['stages'] = training_stages(
        config.train.init_weights,
        {
            'config_source': config.config_source,
            'steps': steps,
            'samples': steps * config.optim.batch_size * extra['world'],
            'created_utc': record['created_utc'],
            'sha256': record['sha256'],
            'pretrained_backbone': extra['pretrained'],
        },
    )
    write_manifest(out_dir, record)
    return weights_path


def train(config: TrainConfig, resume: str | os.PathLike | None = None) -> dict:
    """Run the configured training; returns {'out_dir', 'metrics', 'model', 'history', 'skipped_steps'} (rank 0)."""
    from hand_recon_ros.hand_model.model import load_hand_model

    rank, world, local_rank = _distributed()
    tcfg, dcfg, ocfg = config.train, config.data, config.optim
    device = _device(tcfg.device, world, local_rank)
    if tcfg.threads:
        torch.set_num_threads(int(tcfg.threads))
    out_dir = Path(tcfg.out_dir)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(tcfg.seed)
    model, pretrained = build_model(config, resume)
    model = model.to(device)
    if tcfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # saved weights are made contiguous again
    synth = SynthConfig.from_dict({**dcfg.synth, 'image_size': model.config.input_size})
    train_set = SynthDataset(
        synth, seed=dcfg.train_seed, length=dcfg.train_size, normalization=model.normalization, cache_dir=dcfg.cache_dir
    )
    val_set = SynthDataset(
        synth, seed=dcfg.val_seed, length=dcfg.val_size, normalization=model.normalization, cache_dir=dcfg.cache_dir
    )
    hand_model = load_hand_model(device=device)
    decode_config = config.decode_config()
    loss_fn = ACRLoss(hand_model, LossConfig.from_dict(config.loss), decode_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=ocfg.lr, weight_decay=ocfg.weight_decay)

    state = LoopState()
    if tcfg.init_weights and resume is None:
        # warm start (e.g. the synthetic model before real data): weights only, a fresh optimiser and schedule
        from hand_recon_ros.acr.weights import load_state_dict_into

        load_state_dict_into(model, tcfg.init_weights)
    if resume is not None:
        saved = load_checkpoint(Path(resume), model, optimizer)
        state = LoopState(epoch=int(saved['next_epoch']), step=int(saved['step']))
        pretrained = saved.get('pretrained_backbone')  # the interrupted run's initialisation
    start_epoch = state.epoch
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # every parameter gets a gradient (see the zero-weighted image-feature term below), so DDP needs no
        # unused-parameter search
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)

    train_data, sampler, epoch_aware, real_sources, augment = _training_data(
        train_set, dcfg, tcfg.seed, model, world, rank, hand_model.num_vertices
    )
    loader = _train_loader(train_data, sampler, config, device, world, epoch_aware_workers=bool(epoch_aware))
    val_loader = DataLoader(val_set, batch_size=ocfg.batch_size, num_workers=0)

    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if tcfg.amp == 'bf16' else None
    t_start = time.perf_counter()
    progress = _Progress(rank == 0 and tcfg.progress)
    history: list[dict] = []
    skipped = [0]

    def batches(epoch: int) -> Any:
        for group in optimizer.param_groups:
            group['lr'] = ocfg.lr_at(epoch)
        if isinstance(sampler, (DistributedSampler, MixtureSampler)):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(tcfg.seed * 100003 + epoch)  # same order on resume
        for dataset in epoch_aware:
            dataset.set_epoch(epoch)
        net.train()
        return progress.wrap(loader, epoch)

    def step(batch: dict, state: LoopState) -> dict:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        image = batch['image']
        if tcfg.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        if autocast is not None:
            with autocast:
                outputs = net(image)
        else:
            outputs = net(image)
        outputs = {k: v.float() for k, v in outputs.items()}
        total, terms = loss_fn(outputs, batch, state.epoch)
        # the image-feature head feeds IHMR, which is not trained here: a zero term keeps its
        # parameters in the graph (zero gradients) so DDP's gradient reduction always completes
        total = total + 0.0 * outputs['image_feature'].sum()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), ocfg.grad_clip or math.inf)
        if torch.isfinite(grad_norm):
            optimizer.step()
        else:
            # one bad batch must not turn every weight into NaN: drop its update, keep a count
            skipped[0] += 1
            optimizer.zero_grad(set_to_none=True)
            print(f'step {state.step + 1}: non-finite gradient, update skipped ({skipped[0]} so far)', flush=True)
        terms.update(lr=optimizer.param_groups[0]['lr'], seconds=round(time.perf_counter() - t_start, 3))
        history.append(terms)
        return terms

    def validate() -> dict:
        return evaluate(model, val_loader, hand_model, device, decode_config, loss_fn, max_batches=tcfg.eval_batches)

    hooks: list[Hook] = []
    checkpoints = _ValidateAndCheckpoint(config, out_dir, model, optimizer, validate, pretrained, start_epoch)
    if rank == 0:
        hooks += [
            CsvLog(out_dir / 'train_log.csv', LOG_FIELDS, every=tcfg.log_every),
            progress,
            _FiniteLoss(),
            checkpoints,
        ]
    else:
        hooks += [_FiniteLoss()]
    state = run_loop(step, batches, range(start_epoch, ocfg.epochs), hooks, max_steps=tcfg.max_steps, state=state)

    result = {
        'out_dir': str(out_dir),
        'metrics': checkpoints.metrics,
        'history': history,
        'model': None,
        'skipped_steps': skipped[0],
    }
    if rank == 0:
        weights = _export(
            config,
            out_dir,
            model,
            hand_model,
            synth,
            state.step,
            checkpoints.metrics,
            {
                'real': real_sources,
                'augment': augment,
                'device': device,
                'pretrained': pretrained,
                'skipped_steps': skipped[0],
                'world': world,
            },
        )
        result['model'] = str(weights)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Train ACR on synthetic two-hand data.')
    parser.add_argument(
        '--config',
        default='tiny_cpu',
        help='YAML file or a name in hand_recon_train/configs (tiny_cpu, light_synthetic)',
    )
    parser.add_argument('--resume', default=None, help='checkpoint file or run folder to continue from')
    parser.add_argument('--out-dir', default=None, help='overrides train.out_dir')
    parser.add_argument('--max-steps', type=int, default=None, help='stop after this many steps (smoke runs)')
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='SECTION.KEY=VALUE',
        help='override one config value (YAML syntax), repeatable',
    )
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
