"""The budget loss as a training callback: ``fit(gated, ..., callbacks=[GateBudgetLoss(gated, 1e-4)])``."""

from __future__ import annotations

from torch import Tensor

from prunekit.dynamic.gates import GatedModel
from prunekit.errors import ConfigError
from prunekit.training.callbacks import Callback
from prunekit.training.trainer import Trainer


class GateBudgetLoss(Callback):
    """Adds ``weight · gated.budget_loss()`` (FBS's L1 on the saliencies) to every training micro-batch's loss.

    The last value is kept in ``last`` and each epoch's mean goes into the epoch record as ``budget_loss``.
    """

    def __init__(self, gated: GatedModel, weight: float = 1e-4) -> None:
        if weight < 0:
            raise ConfigError(f"dynamic gates: the budget loss weight must be >= 0, got {weight}")
        self.gated, self.weight = gated, float(weight)
        self.last = float("nan")
        self._sum, self._n = 0.0, 0

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._sum, self._n = 0.0, 0

    def loss_penalty(self, trainer: Trainer) -> Tensor | None:
        loss = self.gated.budget_loss()
        self.last = float(loss.detach())
        self._sum, self._n = self._sum + self.last, self._n + 1
        return self.weight * loss if self.weight else None

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict) -> None:
        if self._n:
            record["budget_loss"] = self._sum / self._n
