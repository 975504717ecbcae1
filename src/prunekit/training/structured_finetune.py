"""Structured prune → fine-tune: each step removes channels toward the pruner's target, then fine-tunes.

>>> run = prune_finetune_structured(model, StructuredPruner(StructuredConfig(ratio=0.5, steps=2, importance="taylor")),
...                                 train, TrainConfig(epochs=1), example_inputs=x, val=val, checkpoint_dir="runs/taylor")
>>> run.model, [s.macs for s in run.steps]

Before each step the statistics the pruner's criterion ``needs`` are collected on
``calibration_batches`` training batches (:func:`calibration_data`). With ``checkpoint_dir`` every
step leaves ``step_NN/`` with the pruned architecture (JSON spec), its weights (safetensors) and
``record.json``; a rerun skips finished steps (rebuilding their model from ``rebuild``) and resumes
an interrupted fine-tuning from its checkpoint; a step with a damaged file is redone, with a warning.
With ``stop`` (:class:`~prunekit.training.stopping.StopCondition`) the steps end early once its
condition says so, and the model returned is that of the last step that satisfied it.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit._io import read_record, write_json
from prunekit.errors import CheckpointError
from prunekit.importance.calibration import collect_calibration
from prunekit.metrics import count_macs, count_parameters
from prunekit.metrics.accuracy import evaluate
from prunekit.pruners.structured import StructuredPruner
from prunekit.structured.spec import load_pruned, save_pruned
from prunekit.training import distributed, rank_sync
from prunekit.training.callbacks import Callback
from prunekit.training.config import TrainConfig
from prunekit.training.loop import Batches, fit
from prunekit.training.sparsity import SparsityLearningConfig, learn_sparsity
from prunekit.training.stopping import Measuring, StopCheck, StopCondition, Stopper, latency_measuring, measure, start

log = logging.getLogger(__name__)

#: Calibration batches of step ``k`` come from loader epoch ``CALIBRATION_EPOCH + k`` (never a training epoch).
CALIBRATION_EPOCH = 10_000


@dataclass
class StructuredStepResult:
    """One prune → fine-tune step: MACs/params after pruning and accuracy before/after fine-tuning."""

    step: int
    fraction_of_target: float
    macs: int
    params: int
    accuracy_before_finetune: float | None
    accuracy: float | None


@dataclass
class StructuredFinetuneResult:
    """The final (pruned, fine-tuned) model and one record per step run.

    ``last_good_step`` is the step whose model ``model`` is (``None``: no step satisfied the stop
    condition, so it is the unpruned model); ``stopped_at`` the step after which the stop condition
    ended the run (``None``: the schedule ran out); ``stop_reason`` says why the run ended (``None``
    without a condition); ``stop_checks`` hold each step's measurements and verdict.
    """

    model: nn.Module
    steps: list[StructuredStepResult]
    last_good_step: int | None = None
    stopped_at: int | None = None
    stop_reason: str | None = None
    stop_checks: list[StopCheck] = field(default_factory=list)


def calibration_data(loader: Batches, step: int, n: int, device: str | torch.device = "cpu") -> list[tuple[Tensor, Tensor]]:
    """The first ``n`` batches of ``loader`` for ``step``; the same ones in every run when the loader
    has ``set_epoch`` (it is set to ``CALIBRATION_EPOCH + step``)."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(CALIBRATION_EPOCH + step)
    return [(x.to(device), y.to(device)) for x, y in islice(iter(loader), n)]


def prune_finetune_structured(
    model: nn.Module,
    pruner: StructuredPruner,
    train: Batches,
    finetune: TrainConfig,
    *,
    example_inputs: Any,
    val: Batches | None = None,
    calibration_batches: int = 8,
    sparsity_learning: SparsityLearningConfig | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    rebuild: Callable[[], nn.Module] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    step_callbacks: Callable[[int], Sequence[Callback]] | None = None,
    sparsity_callbacks: Sequence[Callback] = (),
    on_step_end: Callable[[StructuredStepResult], None] | None = None,
    evaluate_fn: Callable[[nn.Module], float | None] | None = None,
    stop: StopCondition | None = None,
    validate_fn: Callable[[nn.Module], float | None] | None = None,
) -> StructuredFinetuneResult:
    """Optionally learn sparsity, then run every step of ``pruner.schedule()`` on ``model`` (pruned in place).

    Targets are measured against ``model`` as given (after sparsity learning). ``rebuild()`` makes
    the unpruned architecture to load a finished step into (default: a copy of ``model``).
    ``step_callbacks(index)`` supplies extra fine-tuning callbacks of step ``index``,
    ``sparsity_callbacks`` those of sparsity learning; ``on_step_end`` sees each step that ran here.
    Accuracies come from ``evaluate_fn(model)`` (default: accuracy on ``val``, ``None`` without it).
    ``stop`` ends the steps early (see :mod:`prunekit.training.stopping`); its accuracy limit compares
    ``validate_fn(model)`` (default: accuracy on ``val``; never pass the test set) with the value of
    the model the steps start from (after sparsity learning).
    """
    device = torch.device(device)
    model.to(device)
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if sparsity_learning is not None:
        learn_sparsity(model, train, sparsity_learning, example_inputs=example_inputs, val=val, callbacks=sparsity_callbacks,
                       checkpoint=root / "sparsity_learning.safetensors" if root is not None else None, device=device, progress=progress)
    if rebuild is None and root is not None:
        original = copy.deepcopy(model)
        rebuild = lambda: copy.deepcopy(original)  # noqa: E731
    on_val = evaluate_fn is None and validate_fn is None  # the records' accuracies are the validation ones
    if validate_fn is None and val is not None:
        validate_fn = lambda m: evaluate(m, val, device=device).accuracy  # noqa: E731
    if evaluate_fn is None:
        evaluate_fn = lambda m: evaluate(m, val, device=device).accuracy if val is not None else None  # noqa: E731
    reference = copy.deepcopy(model).eval() if stop is not None and stop.min_latency_reduction is not None else None
    latency = latency_measuring(stop, example_inputs, reference) if stop is not None and stop.needs_latency else None
    how = Measuring(validate_fn, lambda m: count_macs(m, example_inputs).dense, lambda m: count_parameters(m).params, latency)
    stopper = start(stop, model, how, "prune_finetune_structured") if stop is not None else None
    start_model = copy.deepcopy(model) if stop is not None and stop.restore_best and stop.needs_accuracy else None
    kept: nn.Module | None = None  # the last good step's model, when it cannot be reloaded from its folder
    pruner.prepare(model, example_inputs)
    needs = pruner.criterion.needs
    steps: list[StructuredStepResult] = []
    schedule = pruner.schedule()
    for index, fraction in enumerate(schedule):
        step_dir = root / f"step_{index:02d}" if root is not None else None
        finished = _finished_step(step_dir, rebuild, device) if step_dir is not None and rebuild is not None else None
        if finished is not None:
            record, model = finished
            steps.append(record)
            if stopper is not None and _judge(stopper, index, record, model, step_dir, how, on_val, fresh=False):
                break
            continue
        calibration = collect_calibration(model, calibration_data(train, index, calibration_batches, device), needs) if needs else None
        result = pruner.step(model, example_inputs, fraction, calibration=calibration)
        rank_sync.sync_architecture(model)  # under torchrun every rank trains rank 0's pruned model
        accuracy_pruned = evaluate_fn(model)
        fit(model, train, finetune, val=val, callbacks=step_callbacks(index) if step_callbacks is not None else (),
            checkpoint=step_dir / "train.safetensors" if step_dir is not None else None, device=device, progress=progress,
            description=f"fine-tune step {index}")
        record = StructuredStepResult(index, fraction, result.macs_after, result.params_after, accuracy_pruned, evaluate_fn(model))
        if step_dir is not None:
            if distributed.is_main_process():
                save_pruned(model, step_dir)
                write_json(step_dir / "record.json", asdict(record))
            distributed.barrier()
        log.info("structured step %d: %d MACs, %d params, accuracy %s → %s", index, record.macs, record.params, accuracy_pruned, record.accuracy)
        if on_step_end is not None:
            on_step_end(record)
        steps.append(record)
        if stopper is not None:
            if _judge(stopper, index, record, model, step_dir, how, on_val, fresh=True):
                break
            if step_dir is None and stopper.condition.restore_best and stopper.last_good_step == index:
                kept = copy.deepcopy(model)
    if stopper is None:
        return StructuredFinetuneResult(model, steps, len(steps) - 1 if steps else None)
    stopper.finish(len(schedule))
    if stopper.checks and stopper.kept_step != stopper.checks[-1].step:  # restore_best: the steps after the last good one are dropped
        if stopper.kept_step is None:
            model = start_model if start_model is not None else model
        elif root is not None and rebuild is not None:
            model = load_pruned(rebuild, root / f"step_{stopper.kept_step:02d}").to(device)
        elif kept is not None:
            model = kept
    return StructuredFinetuneResult(model, steps, stopper.last_good_step, stopper.stopped_at, stopper.stop_reason, stopper.checks)


def _judge(stopper: Stopper, index: int, record: StructuredStepResult, model: nn.Module, step_dir: Path | None, how: Measuring,
           on_val: bool, *, fresh: bool) -> bool:
    """Measure step ``index`` for the stop condition (its record's values where they are the ones needed); ``True``: stop."""
    validate = (lambda _: record.accuracy) if on_val else how.validate
    known = Measuring(validate, lambda _: record.macs, lambda _: record.params, how.latency)
    return stopper.observe(index, measure(stopper, step_dir, lambda: model, known, "prune_finetune_structured", fresh=fresh))


def _finished_step(step_dir: Path, rebuild: Callable[[], nn.Module], device: torch.device) -> tuple[StructuredStepResult, nn.Module] | None:
    """A finished step's record and pruned model; ``None`` if the step has not run or a file of it is
    damaged (a warning names the file, and the step is redone)."""
    if not (step_dir / "record.json").exists():
        return None
    try:
        record = read_record(step_dir / "record.json", StructuredStepResult, "structured step record")
        return record, load_pruned(rebuild, step_dir).to(device)
    except CheckpointError as exc:
        log.warning("%s; redoing %s", exc, step_dir)
        return None
