"""Prune → fine-tune rounds inside one training run: each round prunes at its training step, training in between fine-tunes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from prunekit.masks import prunable_parameters
from prunekit.pruners.unstructured import UnstructuredConfig, prune_unstructured
from prunekit.schedules import Schedule
from prunekit.training.callbacks import Callback
from prunekit.training.pruning_callbacks import attach_missing_masks
from prunekit.training.trainer import Trainer


def event_steps(count: int, total_steps: int) -> list[int]:
    """Training steps of ``count`` pruning events spread evenly over ``total_steps`` (the first at step 0)."""
    return [round(k * total_steps / count) for k in range(count)]


class UnstructuredRounds(Callback):
    """Round ``k`` prunes to ``config.at_sparsity(schedule.sparsity_at(event k))`` after ``at_steps[k]`` completed
    iterations (masks monotone, as :func:`prunekit.training.prune_finetune`'s rounds); one round without a schedule."""

    def __init__(self, config: UnstructuredConfig, schedule: Schedule | None, at_steps: list[int], *,
                 batches: Iterable[tuple[Tensor, Tensor]] | None = None) -> None:
        self.config = config
        self.targets = [schedule.sparsity_at(t) for t in schedule.event_steps()] if schedule is not None else [config.sparsity]
        if len(at_steps) != len(self.targets):
            raise ValueError(f"{len(self.targets)} rounds need as many training steps, got {at_steps}")
        self.at_steps = at_steps
        self.batches = batches
        self.model: nn.Module | None = None
        self.done = 0

    def prepare(self, model: nn.Module) -> nn.Module:
        """Attach all-keep masks to the targets (before the optimizer is built)."""
        attach_missing_masks(model, prunable_parameters(model, self.config.include, self.config.exclude))
        self.model = model
        return model

    def on_train_start(self, trainer: Trainer) -> None:
        self.model = trainer.model
        self._run_due(trainer.state.step, None)

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self._run_due(step, trainer.last_batch)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = int(state["done"])

    def _run_due(self, step: int, last_batch: tuple[Tensor, Tensor] | None) -> None:
        assert self.model is not None
        while self.done < len(self.targets) and self.at_steps[self.done] <= step:
            batches = self.batches if self.batches is not None else ([last_batch] if last_batch is not None else None)
            prune_unstructured(self.model, self.config.at_sparsity(self.targets[self.done]), batches)
            self.done += 1
