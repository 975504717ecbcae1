"""Prune → fine-tune cycles: each round prunes to the schedule's next sparsity, then fine-tunes.

One-shot pruning is one round (``OneShot``); iterative pruning is several (``Iterative``, or any
finite schedule, whose pruning steps are taken as the rounds). With ``checkpoint_dir`` every
round leaves ``round_NNN/{masks,model}.safetensors`` and ``record.json``; a rerun skips rounds
whose files read back and resumes an interrupted fine-tuning from its checkpoint; from the first
round with a damaged file on, rounds are redone (with a warning naming the file).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from prunekit._deprecation import renamed
from prunekit._io import load_safetensors, read_record, save_safetensors, write_json
from prunekit.errors import CheckpointError
from prunekit.masks import MaskSet
from prunekit.metrics.accuracy import evaluate
from prunekit.pruners.unstructured import Batches, UnstructuredConfig, prune_unstructured
from prunekit.schedules import Schedule
from prunekit.training.callbacks import Callback
from prunekit.training.config import TrainConfig
from prunekit.training.loop import fit

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
) -> list[RoundResult]:
    """Run one round per pruning step of ``schedule``; return a record per round.

    Each round prunes ``model`` (in place, masks monotone) to ``config.at_sparsity(sparsity_at(step))``
    and fine-tunes it with ``finetune``. Accuracies are on ``val`` (``None`` without it).
    ``batches`` feed gradient criteria; the training batches are used when it is ``None``.
    ``round_callbacks(index)`` supplies extra fine-tuning callbacks for round ``index`` (e.g. loggers).
    """
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    steps = schedule.event_steps()
    records = _done_rounds(root, len(steps)) if root is not None else []
    if root is not None and records:
        load_round(model, _round_dir(root, len(records) - 1))
    for index, step in enumerate(steps[len(records):], start=len(records)):
        round_dir = _round_dir(root, index) if root is not None else None
        target = schedule.sparsity_at(step)
        masks = prune_unstructured(model, config.at_sparsity(target), batches if batches is not None else train)
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
            save_round(model, masks, round_dir)
            write_json(round_dir / "record.json", asdict(record))
        log.info("round %d: sparsity %.4f, accuracy %s → %s", index, record.sparsity, accuracy_pruned, record.accuracy)
        records.append(record)
    return records


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
