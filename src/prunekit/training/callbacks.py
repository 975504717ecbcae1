"""Training callbacks: hooks into the loop for pruning schedules, regularisers and logging."""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor

from prunekit._io import append_jsonl
from prunekit.training.distributed import is_main_process
from prunekit.training.trainer import Trainer


class Callback:
    """Base class; override what you need. Hooks run in the order callbacks were given.

    ``state_dict``/``load_state_dict`` (JSON-able dicts) let a callback resume with training.
    """

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def loss_penalty(self, trainer: Trainer) -> Tensor | None:
        """A term added to each micro-batch's loss before ``backward`` (e.g. an L1 penalty), computed outside autocast."""
        return None

    def after_backward(self, trainer: Trainer) -> None:
        """Runs between ``backward`` and ``optimizer.step`` (edit or read gradients here).

        Once per optimizer step, on the gradients accumulated over ``grad_accumulation`` micro-batches
        and already unscaled when fp16 uses a GradScaler; gradient clipping runs after it.
        """

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        """Runs after ``optimizer.step``; ``step`` counts completed optimizer steps (1-based), ``loss`` is their mean micro-batch loss."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None:
        """``record`` holds the epoch's metrics; callbacks may add keys to it."""

    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class JsonlLogger(Callback):
    """Appends each epoch's record (plus fixed ``tags``) to a JSON-lines file (rank 0 only under torchrun)."""

    def __init__(self, path: str | os.PathLike[str], tags: dict[str, Any] | None = None) -> None:
        self.path = path
        self.tags = dict(tags or {})

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None:
        if is_main_process():
            append_jsonl(self.path, {**self.tags, **record})
