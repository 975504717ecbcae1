"""Iterative pruning: remove a constant fraction of the remaining weights per round."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from prunekit.schedules.base import SCHEDULES, Schedule, on_grid


@SCHEDULES.register("iterative", example={"rate": 0.2, "final_sparsity": 0.9, "begin_step": 2, "frequency": 3})
class Iterative(Schedule):
    """Round ``k`` (1-based) prunes to ``min(final_sparsity, 1 − (1 − rate)^k)``.

    Rounds happen at ``begin_step + (k − 1)·frequency`` and stop at the first round that reaches
    ``final_sparsity``. With the defaults (``begin_step=0``, ``frequency=1``) step = round index,
    which is what prune → fine-tune cycles use. ``sparsity_at`` is 0 before the first round and
    holds the last round's value between rounds.
    """

    name: Literal["iterative"] = "iterative"
    rate: float = Field(gt=0.0, lt=1.0, description="fraction of the remaining weights pruned per round")
    final_sparsity: float = Field(ge=0.0, lt=1.0)
    begin_step: int = Field(0, ge=0)
    frequency: int = Field(1, gt=0)

    @property
    def rounds(self) -> int:
        """Number of rounds needed to reach ``final_sparsity``."""
        if self.final_sparsity == 0:
            return 0
        k = max(1, math.floor(math.log1p(-self.final_sparsity) / math.log1p(-self.rate)))
        while self._cumulative(k) < self.final_sparsity - 1e-12:
            k += 1
        return k

    def _cumulative(self, k: int) -> float:
        return cumulative_sparsity(self.rate, k)

    def sparsity_at(self, step: int) -> float:
        if step < self.begin_step or self.rounds == 0:
            return 0.0
        k = min((step - self.begin_step) // self.frequency + 1, self.rounds)
        return min(self.final_sparsity, self._cumulative(k))

    def should_prune(self, step: int) -> bool:
        end = self.begin_step + (self.rounds - 1) * self.frequency
        return self.rounds > 0 and on_grid(step, self.begin_step, end, self.frequency)

    def event_steps(self) -> list[int]:
        return [self.begin_step + k * self.frequency for k in range(self.rounds)]


def cumulative_sparsity(rate: float, rounds: int) -> float:
    """Sparsity after ``rounds`` rounds that each prune ``rate`` of the remaining weights: ``1 − (1 − rate)^rounds``."""
    return 1.0 - (1.0 - rate) ** rounds
