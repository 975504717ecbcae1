"""Prune → fine-tune cycles: each round prunes to the schedule's next sparsity, then fine-tunes.

One-shot pruning is one round (``OneShot``); iterative pruning is several (``Iterative``, or any
finite schedule, whose pruning steps are taken as the rounds). With ``checkpoint_dir`` every
round leaves ``round_NNN/{masks,model}.safetensors`` and ``record.json``; a rerun skips rounds
whose files read back and resumes an interrupted fine-tuning from its checkpoint; from the first
round with a damaged file on, rounds are redone (with a warning naming the file).
With ``stop`` (:class:`~prunekit.training.stopping.StopCondition`) the rounds end early once its
condition says so, and ``model`` is left in the state of the last round that satisfied it.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit._deprecation import renamed
from prunekit._io import load_safetensors, read_record, save_safetensors, write_json
from prunekit.errors import CheckpointError
from prunekit.masks import MaskSet
from prunekit.masks.maskset import detach_masks
from prunekit.metrics import count_macs, count_parameters
from prunekit.metrics.accuracy import evaluate
from prunekit.pruners.unstructured import Batches, UnstructuredConfig, prune_unstructured
from prunekit.schedules import Schedule
from prunekit.training import distributed, rank_sync
from prunekit.training.callbacks import Callback
from prunekit.training.config import TrainConfig
from prunekit.training.loop import fit
from prunekit.training.stopping import Measuring, StopCheck, StopCondition, Stopper, measure, start

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    """One prune → fine-tune round: sparsities reached and validation accuracy before/after fine-tuning."""

    round: int
    target_sparsity: float
    sparsity: float
    accuracy_pruned: float | None
    accuracy: float | None
    layer_sparsity: dict[str, float] = field(default_factory=dict)


class PruneFinetuneResult(list[RoundResult]):
    """The records of the rounds run (a list, as before) and how the run ended.

    ``last_good_step`` is the round whose state the model is left in (``None``: no round satisfied
    the stop condition, so the model is as it was given); ``stopped_at`` the round after which the
    stop condition ended the run (``None``: the schedule ran out); ``stop_reason`` says why the run
    ended (``None`` without a condition); ``stop_checks`` hold each round's measurements and verdict.
    """

    def __init__(self, records: Sequence[RoundResult] = (), stopper: Stopper | None = None) -> None:
        super().__init__(records)
        self.last_good_step: int | None = stopper.last_good_step if stopper is not None else (len(self) - 1 if self else None)
        self.stopped_at: int | None = stopper.stopped_at if stopper is not None else None
        self.stop_reason: str | None = stopper.stop_reason if stopper is not None else None
        self.stop_checks: list[StopCheck] = list(stopper.checks) if stopper is not None else []


def prune_finetune(
    model: nn.Module,
    train: Batches,
    config: UnstructuredConfig,
    schedule: Schedule,
    finetune: TrainConfig,
    *,
    val: Batches | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    batches: Batches | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    round_callbacks: Callable[[int], Sequence[Callback]] | None = None,
    stop: StopCondition | None = None,
    validate_fn: Callable[[nn.Module], float | None] | None = None,
    example_inputs: Any = None,
) -> PruneFinetuneResult:
    """Run one round per pruning step of ``schedule``; return a record per round.

    Each round prunes ``model`` (in place, masks monotone) to ``config.at_sparsity(sparsity_at(step))``
    and fine-tunes it with ``finetune``. Accuracies are on ``val`` (``None`` without it).
    ``batches`` feed gradient criteria; the training batches are used when it is ``None``.
    ``round_callbacks(index)`` supplies extra fine-tuning callbacks for round ``index`` (e.g. loggers).
    ``stop`` ends the rounds early (see :mod:`prunekit.training.stopping`): its accuracy limit compares
    ``validate_fn(model)`` (default: the accuracy on ``val``; never pass the test set) with the value
    of ``model`` as given; its MACs conditions count effective MACs on ``example_inputs``, its
    parameter conditions the non-zero parameters.
    """
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    steps = schedule.event_steps()
    records = _done_rounds(root, len(steps)) if root is not None else []
    stopper, how, start_state = None, None, None
    if stop is not None:
        how = _measuring(validate_fn, val, example_inputs, device)
        stopper = start(stop, model, how, "prune_finetune")
        start_state = _snapshot(model) if stop.restore_best else None
        if _replay(stopper, records, root, model, how, validate_fn):  # the condition ended the run within the rounds already done
            records = records[: stopper.checks[-1].step + 1]
            _restore(model, stopper.kept_step, root, start_state, None)
            return PruneFinetuneResult(records, stopper)
    if root is not None and records:
        load_round(model, _round_dir(root, len(records) - 1))
    kept: tuple[MaskSet, dict[str, torch.Tensor]] | None = None
    for index, step in enumerate(steps[len(records):], start=len(records)):
        round_dir = _round_dir(root, index) if root is not None else None
        target = schedule.sparsity_at(step)
        masks = prune_unstructured(model, config.at_sparsity(target), batches if batches is not None else train)
        rank_sync.sync_masks(model)  # under torchrun every rank keeps rank 0's masks
        masks = MaskSet(distributed.broadcast_masks(masks))
        accuracy_pruned = evaluate(model, val, device=device).accuracy if val is not None else None
        checkpoint = round_dir / "train.safetensors" if round_dir is not None else None
        callbacks = round_callbacks(index) if round_callbacks is not None else ()
        fit(model, train, finetune, val=val, checkpoint=checkpoint, callbacks=callbacks, device=device, progress=progress, description=f"fine-tune {index}")
        record = RoundResult(
            round=index,
            target_sparsity=target,
            sparsity=masks.sparsity(),
            accuracy_pruned=accuracy_pruned,
            accuracy=evaluate(model, val, device=device).accuracy if val is not None else None,
            layer_sparsity=masks.layer_sparsity(),
        )
        if round_dir is not None:
            if distributed.is_main_process():
                save_round(model, masks, round_dir)
                write_json(round_dir / "record.json", asdict(record))
            distributed.barrier()
        log.info("round %d: sparsity %.4f, accuracy %s → %s", index, record.sparsity, accuracy_pruned, record.accuracy)
        records.append(record)
        if stopper is not None and how is not None:
            measures = measure(stopper, round_dir, lambda: model, _known(how, record, validate_fn), "prune_finetune", fresh=True)
            if stopper.observe(index, measures):
                break
            if round_dir is None and stopper.condition.restore_best and stopper.last_good_step == index:
                kept = _snapshot(model)
    if stopper is None:
        return PruneFinetuneResult(records)
    stopper.finish(len(steps))
    if stopper.checks and stopper.kept_step != stopper.checks[-1].step:  # restore_best: drop the rounds after the last good one
        _restore(model, stopper.kept_step, root, start_state, kept)
    return PruneFinetuneResult(records, stopper)


def _measuring(validate_fn: Callable[[nn.Module], float | None] | None, val: Batches | None, example_inputs: Any,
               device: str | torch.device) -> Measuring:
    """How rounds are measured for a stop condition: validation accuracy, effective MACs, non-zero parameters."""
    if validate_fn is None and val is not None:
        validate_fn = lambda m: evaluate(m, val, device=device).accuracy  # noqa: E731
    macs = (lambda m: count_macs(m, example_inputs).effective) if example_inputs is not None else None
    return Measuring(validate_fn, macs, lambda m: count_parameters(m).nonzero_params)


def _known(how: Measuring, record: RoundResult, validate_fn: Callable[[nn.Module], float | None] | None) -> Measuring:
    """``how``, with the validation accuracy taken from ``record`` when it is the one on ``val``."""
    return how if validate_fn is not None else Measuring(lambda _: record.accuracy, how.macs, how.params)


def _replay(stopper: Stopper, records: list[RoundResult], root: Path | None, model: nn.Module, how: Measuring,
            validate_fn: Callable[[nn.Module], float | None] | None) -> bool:
    """Judge the rounds already done (loading a round into a copy of ``model`` only where its
    ``stop.json`` lacks a value); ``True`` when the condition stopped the run in one of them."""
    for record in records:
        assert root is not None
        round_dir = _round_dir(root, record.round)
        load = lambda d=round_dir: load_round(copy.deepcopy(model), d)  # noqa: E731
        if stopper.observe(record.round, measure(stopper, round_dir, load, _known(how, record, validate_fn), "prune_finetune")):
            return True
    return False


def _snapshot(model: nn.Module) -> tuple[MaskSet, dict[str, torch.Tensor]]:
    return MaskSet.from_model(model), {k: v.detach().clone() for k, v in model.state_dict().items()}


def _restore(model: nn.Module, index: int | None, root: Path | None, start: tuple[MaskSet, dict[str, torch.Tensor]] | None,
             kept: tuple[MaskSet, dict[str, torch.Tensor]] | None) -> None:
    """Put ``model`` back into the state of round ``index`` (``None``: as it was given), in place."""
    saved = start if index is None else kept
    detach_masks(model)
    if index is not None and root is not None:
        load_round(model, _round_dir(root, index))
    elif saved is not None:
        saved[0].attach(model)
        model.load_state_dict(saved[1])


def _round_dir(root: Path, index: int) -> Path:
    return root / f"round_{index:03d}"


def _done_rounds(root: Path, count: int) -> list[RoundResult]:
    """Records of the leading rounds (of ``count``) whose files under ``root`` all read back; stops at
    the first round not done, or with a damaged file (a warning names it: that round is redone)."""
    records = []
    for index in range(count):
        round_dir = _round_dir(root, index)
        if not (round_dir / "record.json").exists():
            break
        try:
            record = read_record(round_dir / "record.json", RoundResult, "round record")
            _read_round(round_dir)
        except CheckpointError as exc:
            log.warning("%s; redoing round %d", exc, index)
            break
        log.info("round %d already done in %s; skipping", index, round_dir)
        records.append(record)
    return records


def _read_round(round_dir: Path) -> tuple[MaskSet, dict[str, torch.Tensor]]:
    return MaskSet.load(round_dir / "masks.safetensors"), load_safetensors(round_dir / "model.safetensors")


def save_round(model: nn.Module, masks: MaskSet, round_dir: Path) -> None:
    """Save a round's masks and the model's state (masks attached) atomically."""
    masks.save(round_dir / "masks.safetensors")
    save_safetensors(round_dir / "model.safetensors", model.state_dict())


def load_round(model: nn.Module, round_dir: Path) -> nn.Module:
    """Attach a saved round's masks to ``model`` and load its weights."""
    masks, state = _read_round(round_dir)
    masks.attach(model)
    model.load_state_dict(state)
    return model


__getattr__ = renamed(__name__, {"RoundRecord": ("RoundResult", lambda: RoundResult)})
