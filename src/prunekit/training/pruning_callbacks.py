"""Pruning during training: masks follow a schedule, updated every Δt steps (Zhu & Gupta, TF-MOT)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet, prunable_parameters
from prunekit.pruners.unstructured import Batches, UnstructuredConfig, prune_unstructured
from prunekit.schedules import Schedule
from prunekit.training import rank_sync
from prunekit.training.callbacks import Callback
from prunekit.training.trainer import Trainer

log = logging.getLogger(__name__)


class GradualPruning(Callback):
    """Recompute masks with ``config``'s criterion and scope wherever ``schedule.should_prune(step)``.

    ``step`` counts completed iterations: the event at step ``t`` is applied after the ``t``-th
    optimizer step, so iteration ``t + 1`` already trains with the new masks (an event at step 0
    prunes before training). The schedule's ``sparsity_at(step)`` replaces ``config.sparsity``;
    with overrides, ``config.sparsity`` is the final target and overrides scale with it.

    Gradient criteria (taylor, snip) use ``batches`` (``config.n_batches`` of them) or, when
    none are given, the last training batch.

    Call :meth:`prepare` on the model first: it attaches all-keep masks to the targets (they must
    exist before ``fit`` builds the optimizer, or a checkpoint would not resume into the same
    parameter order), then pass the callback to :func:`prunekit.training.fit`. In your own loop
    call :meth:`step` after every ``optimizer.step()`` instead.
    """

    def __init__(self, config: UnstructuredConfig, schedule: Schedule, *, batches: Batches | None = None) -> None:
        self.config = config
        self.schedule = schedule
        self.batches = batches
        self.model: nn.Module | None = None
        self.step_count = 0
        self.last_pruned: int | None = None

    def prepare(self, model: nn.Module) -> nn.Module:
        """Attach all-keep masks to the targets that have none, bind ``model`` and apply an event due at step 0."""
        attach_missing_masks(model, prunable_parameters(model, self.config.include, self.config.exclude))
        self.model = model
        self._update(None)
        return model

    def step(self) -> None:
        """Count one completed iteration (call after ``optimizer.step()``) and prune if the schedule says so."""
        if self.model is None:
            raise ConfigError("call prepare(model) before step()")
        self.step_count += 1
        self._update(None)

    def sparsity(self) -> float:
        """Current sparsity over the pruned parameters."""
        if self.model is None:
            return 0.0
        names = prunable_parameters(self.model, self.config.include, self.config.exclude)
        masks = MaskSet.from_model(self.model)
        return MaskSet({n: masks[n] for n in names}).sparsity()

    # -- Callback hooks --------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        require_masks(trainer.model, prunable_parameters(trainer.model, self.config.include, self.config.exclude), "GradualPruning.prepare(model)")
        self.model = trainer.model
        self.step_count = trainer.state.step
        self._update(None)

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self.step_count = step
        self._update(trainer.last_batch)

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None:
        record["sparsity"] = self.sparsity()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count, "last_pruned": self.last_pruned, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = state["step"]
        self.last_pruned = state["last_pruned"]
        self.schedule.load_state_dict(state["schedule"])

    # -- internals -------------------------------------------------------------------------------
    def _update(self, last_batch: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        t = self.step_count
        if self.model is None or t == self.last_pruned or not self.schedule.should_prune(t):
            return
        batches = self.batches if self.batches is not None else ([last_batch] if last_batch is not None else None)
        masks = prune_unstructured(self.model, self.config.at_sparsity(self.schedule.sparsity_at(t)), batches)
        rank_sync.sync_masks(self.model)  # under torchrun: rank 0's masks (gradient criteria saw its batch)
        self.last_pruned = t
        log.debug("step %d: pruned to sparsity %.4f", t, masks.sparsity())



def attach_missing_masks(model: nn.Module, names: list[str]) -> None:
    """Attach all-keep masks to the named parameters that carry none (existing masks are kept)."""
    attached = MaskSet.from_model(model)
    missing = [n for n in names if n not in attached]
    if missing:
        MaskSet.ones(model, missing).attach(model)


def require_masks(model: nn.Module, names: list[str], how: str) -> None:
    """Raise unless every name carries a mask: masks must be attached before ``fit`` builds the optimizer."""
    attached = MaskSet.from_model(model)
    missing = [n for n in names if n not in attached]
    if missing:
        raise ConfigError(
            f"parameters {missing[:3]} have no mask; call {how} before fit so masks exist before the optimizer is built "
            "(checkpoints then resume into the same parameter order)"
        )
