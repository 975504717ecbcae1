"""The train/eval loop: seeded, resumable from safetensors checkpoints, with callbacks and progress."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.errors import DamagedFileError, TrainingDivergedError
from prunekit.metrics.accuracy import evaluate
from prunekit.progress import make_progress
from prunekit.training.augment import augment_batches
from prunekit.training.callbacks import Callback
from prunekit.training import distributed
from prunekit.training.checkpoint import load_checkpoint, save_checkpoint
from prunekit.training.config import TrainConfig
from prunekit.training.precision import autocast, backward, optimizer_step, set_memory_format, to_memory_format, training_forward, unscale
from prunekit.training.trainer import Trainer

log = logging.getLogger(__name__)

Batches = Iterable[tuple[Tensor, Tensor]]


@dataclass
class TrainResult:
    """History of per-epoch records and the last one's validation metrics."""

    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    resumed_from_epoch: int | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed used for epoch ``epoch`` (so a resumed run draws the same numbers)."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


@contextmanager
def _run_rng(device: torch.device) -> Iterator[Callable[[int], None]]:
    """Yield ``seed(n)`` for the global generators a run on ``device`` draws from (the CPU's, and that
    GPU's) and give them back their caller's states on exit.

    Dropout and data augmentation draw from these global generators (torch offers no per-call
    generator for them), so each epoch still reseeds them, as ``torch.manual_seed`` did.
    """
    accelerator = [device] if device.type in ("cuda", "mps") else []

    def seed(n: int) -> None:
        torch.default_generator.manual_seed(n)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(n)
        elif device.type == "mps":
            torch.mps.manual_seed(n)

    with torch.random.fork_rng(devices=accelerator, device_type=device.type if accelerator else "cuda"):
        yield seed


def fit(
    model: nn.Module,
    train: Batches,
    config: TrainConfig | None = None,
    *,
    val: Batches | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` on ``train`` batches; evaluate on ``val`` after epochs; resume from ``checkpoint``.

    ``train`` is any re-iterable of ``(inputs, labels)`` with ``len()``; if it has ``set_epoch(e)``
    it is called before each epoch so data order depends only on the epoch (exact resume).
    Each epoch reseeds torch's global RNG from ``config.seed`` (dropout, augmentation); the
    caller's RNG state is restored when ``fit`` returns.
    When ``checkpoint`` names an existing file from the same run, training continues after its
    last completed epoch and ends with the same result as an uninterrupted run; a damaged one
    (unreadable, not a training checkpoint) is reported as a warning and training starts over.
    A non-finite loss or weights stop training with :class:`TrainingDivergedError`.
    ``config.precision``/``channels_last``/``compile``/``grad_accumulation`` speed up the training
    step (see :mod:`prunekit.training.precision`); steps and schedules count optimizer steps.

    Under torchrun (a process group initialised, :mod:`prunekit.training.distributed`) every rank
    starts from rank 0's weights, trains on its shard of ``train`` (when it has ``shard()``),
    averages gradients before each optimizer step and BatchNorm statistics after each epoch;
    records hold all ranks' training metrics, validation runs on the whole of ``val`` on every
    rank, and only rank 0 shows progress and writes ``checkpoint``.
    """
    config = config or TrainConfig()
    device = distributed.local_device(device)
    model.to(device)
    train = distributed.shard_batches(train)
    train = augment_batches(train, config.augment, config.seed)  # training batches only: never val
    progress = progress and distributed.is_main_process()
    batches = len(train)  # type: ignore[arg-type]
    if batches == 0:
        raise ValueError("the training data yields no batches; check the dataset and batch size")
    steps_per_epoch = math.ceil(batches / config.grad_accumulation)
    if config.channels_last:
        set_memory_format(model, True)
    forward = training_forward(model, config.compile)
    with _run_rng(device) as seed:  # the caller's global RNG comes back when training ends
        trainer = Trainer(model, config, steps_per_epoch, device)
        result = TrainResult()
        if checkpoint is not None and Path(checkpoint).exists():
            trainer = _resume(trainer, Path(checkpoint), callbacks, result, description)
        distributed.broadcast_state(model)  # every rank starts from rank 0's weights
        for cb in callbacks:
            cb.on_train_start(trainer)
        with make_progress(progress) as bar:
            task = bar.add_task(description, total=trainer.total_steps, completed=trainer.state.step, status="")
            while trainer.state.step < trainer.total_steps:
                record = _run_epoch(trainer, train, callbacks, bar, task, description, seed, forward)
                _check_finite_weights(trainer, description)
                if val is not None and config.eval_every_epochs and (trainer.state.epoch % config.eval_every_epochs == 0 or trainer.state.step >= trainer.total_steps):
                    ev = evaluate(model, val, device=device)
                    record.update(val_accuracy=ev.accuracy, val_loss=ev.loss)
                for cb in callbacks:
                    cb.on_epoch_end(trainer, trainer.state.epoch - 1, record)
                result.history.append(record)
                bar.update(task, status=_status(record))
                done = trainer.state.step >= trainer.total_steps
                if checkpoint is not None and distributed.is_main_process() and (done or trainer.state.epoch % config.checkpoint_every_epochs == 0):
                    trainer.state.extra = {"history": result.history, "callbacks": [cb.state_dict() for cb in callbacks]}
                    save_checkpoint(checkpoint, model, trainer.optimizer, trainer.scheduler, trainer.state, trainer.scaler)
        for cb in callbacks:
            cb.on_train_end(trainer)
    if config.channels_last:
        set_memory_format(model, False)  # the caller gets the default layout back
    result.steps = trainer.state.step
    return result


def _resume(trainer: Trainer, checkpoint: Path, callbacks: Sequence[Callback], result: TrainResult, description: str) -> Trainer:
    """Continue from ``checkpoint``; if it is damaged, warn and return a fresh trainer (model as it was)."""
    model = trainer.model
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        trainer.state = load_checkpoint(checkpoint, model, trainer.optimizer, trainer.scheduler, trainer.scaler)
    except DamagedFileError as exc:
        log.warning("%s; %s starts over from its beginning", exc, description)
        model.load_state_dict(initial)
        return Trainer(model, trainer.config, trainer.steps_per_epoch, trainer.device)
    result.history = list(trainer.state.extra.get("history", []))
    for cb, cb_state in zip(callbacks, trainer.state.extra.get("callbacks", [])):
        cb.load_state_dict(cb_state)
    result.resumed_from_epoch = trainer.state.epoch
    log.info("resuming %s from %s at epoch %d (step %d)", description, checkpoint, trainer.state.epoch, trainer.state.step)
    return trainer


def _diverged(description: str, what: str, epoch: int, step: int) -> TrainingDivergedError:
    return TrainingDivergedError(f"{description} diverged: {what} at epoch {epoch} (step {step}); "
                                 f"lower the learning rate (optimizer.lr) or set grad_clip")


def _check_finite_weights(trainer: Trainer, description: str) -> None:
    """Stop (before any checkpoint is saved) if the epoch just run left NaN/inf weights."""
    bad = next((name for name, p in trainer.model.named_parameters() if not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise _diverged(description, f"parameter {bad} became non-finite", trainer.state.epoch - 1, trainer.state.step)


def _run_epoch(trainer: Trainer, train: Batches, callbacks: Sequence[Callback], bar: Any, task: Any, description: str,
               seed: Callable[[int], None], forward: Callable[[Tensor], Tensor]) -> dict[str, Any]:
    model, cfg, epoch = trainer.model, trainer.config, trainer.state.epoch
    k, batches = cfg.grad_accumulation, len(train)  # type: ignore[arg-type]
    seed(epoch_seed(cfg.seed, epoch) + distributed.rank())  # under torchrun dropout differs between ranks, as their batches do
    if hasattr(train, "set_epoch"):
        train.set_epoch(epoch)
    for cb in callbacks:
        cb.on_epoch_start(trainer, epoch)
    model.train()
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    loss_value = 0.0
    for index, (x, y) in enumerate(train):
        if trainer.state.step >= trainer.total_steps:
            break
        x, y = to_memory_format(x.to(trainer.device), cfg.channels_last), y.to(trainer.device)
        trainer.last_batch = (x, y)
        if index % k == 0:
            trainer.optimizer.zero_grad(set_to_none=True)
            loss_value = 0.0
        weight = 1 / max(1, min(k, batches - index + index % k))  # 1 / micro-batches in this group
        with autocast(cfg.precision, trainer.device):
            logits = forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        total = loss
        for cb in callbacks:
            penalty = cb.loss_penalty(trainer)
            if penalty is not None:
                total = total + penalty
        backward(total * weight if k > 1 else total, trainer.scaler)
        micro_loss = float(loss.detach())
        loss_value += micro_loss * weight  # the optimizer step's loss: the mean over its micro-batches
        loss_sum += micro_loss * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += len(y)
        if (index + 1) % k and index + 1 < batches:
            continue  # gradients accumulate over the group's micro-batches
        _optimizer_update(trainer, callbacks)
        if not math.isfinite(loss_value):
            raise _diverged(description, f"the training loss became {loss_value}", epoch, trainer.state.step)
        for cb in callbacks:
            cb.on_step_end(trainer, trainer.state.step, loss_value)
        bar.advance(task)
    trainer.state.epoch += 1
    distributed.average_buffers(model)
    loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen])
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "step": trainer.state.step,
        "train_loss": loss_sum / max(1, seen),
        "train_accuracy": correct / max(1, seen),
        "lr": trainer.optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "images_per_second": seen / seconds if seconds > 0 else 0.0,
    }


def _optimizer_update(trainer: Trainer, callbacks: Sequence[Callback]) -> None:
    """Average gradients across ranks (before unscaling, so an overflow on one rank skips the step on
    all), unscale them, run ``after_backward`` callbacks, clip, step optimizer and LR schedule."""
    distributed.all_reduce_gradients(trainer.model)
    unscale(trainer.optimizer, trainer.scaler)
    for cb in callbacks:
        cb.after_backward(trainer)
    if trainer.config.grad_clip is not None:
        nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.config.grad_clip)
    optimizer_step(trainer.optimizer, trainer.scaler)
    trainer.scheduler.step()
    trainer.state.step += 1


def _status(record: dict[str, Any]) -> str:
    parts = [f"loss {record['train_loss']:.3f}"]
    if "val_accuracy" in record:
        parts.append(f"val {100 * record['val_accuracy']:.2f}%")
    parts.append(f"{record['images_per_second']:.0f} img/s")
    return " ".join(parts)
