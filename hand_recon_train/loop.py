"""The training loop both trainers run: epochs of steps over batches, with hooks for logging, validation,
checkpoints and export (``train`` for ACR, ``train_ihmr`` for the joint head and each refiner stage)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ['Hook', 'LoopState', 'run_loop']


@dataclass
class LoopState:
    """Where the loop stands; ``step`` counts the steps done (a resumed run starts from its checkpoint's)."""

    epoch: int = 0
    step: int = 0
    stop: bool = False  # set by a hook (or by max_steps) to end the run after the current step


class Hook:
    """Called by :func:`run_loop`; override what you need. ``on_step`` gets the step's record (loss terms and
    whatever the step function put there, plus ``epoch`` and ``step``)."""

    def on_epoch_start(self, state: LoopState) -> None:
        pass

    def on_step(self, state: LoopState, record: dict) -> None:
        pass

    def on_epoch_end(self, state: LoopState) -> None:
        pass

    def on_end(self, state: LoopState) -> None:
        pass


def run_loop(
    step: Callable[[Any, LoopState], dict],
    batches: Callable[[int], Iterable[Any]],
    epochs: range,
    hooks: Sequence[Hook] = (),
    max_steps: int | None = None,
    state: LoopState | None = None,
) -> LoopState:
    """For each epoch: ``batches(epoch)`` gives the batches, ``step(batch, state)`` runs one optimiser step and
    returns its record. Stops after ``max_steps`` steps in all (the epoch's end hooks still run) or when a hook
    sets ``state.stop``."""
    state = state or LoopState(epoch=epochs.start)
    for epoch in epochs:
        state.epoch = epoch
        for hook in hooks:
            hook.on_epoch_start(state)
        for batch in batches(epoch):
            if max_steps is not None and state.step >= max_steps:
                state.stop = True
                break
            record = step(batch, state)
            state.step += 1
            record.update(epoch=epoch, step=state.step)
            for hook in hooks:
                hook.on_step(state, record)
            if max_steps is not None and state.step >= max_steps:
                state.stop = True
            if state.stop:
                break
        for hook in hooks:
            hook.on_epoch_end(state)
        if state.stop:
            break
    for hook in hooks:
        hook.on_end(state)
    return state
