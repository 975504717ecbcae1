"""Schedules that hold one sparsity: ``one_shot`` (prune once) and ``constant`` (TF-MOT's ``ConstantSparsity``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prunekit.errors import ConfigError
from prunekit.schedules.base import SCHEDULES, Schedule, grid, on_grid


@SCHEDULES.register("one_shot", example={"sparsity": 0.7, "step": 3})
class OneShot(Schedule):
    """Prune once, to ``sparsity``, at ``step``; ``sparsity_at`` is 0 before and ``sparsity`` after."""

    name: Literal["one_shot"] = "one_shot"
    sparsity: float = Field(ge=0.0, lt=1.0)
    step: int = Field(0, ge=0)

    def sparsity_at(self, step: int) -> float:
        return self.sparsity if step >= self.step else 0.0

    def should_prune(self, step: int) -> bool:
        return step == self.step

    def event_steps(self) -> list[int]:
        return [self.step]


@SCHEDULES.register("constant", example={"target_sparsity": 0.5, "begin_step": 10, "end_step": 40, "frequency": 10})
class Constant(Schedule):
    """TF-MOT's ``ConstantSparsity``: re-apply ``target_sparsity`` every ``frequency`` steps.

    Masks change at ``begin_step, begin_step + frequency, …`` up to ``end_step`` inclusive;
    ``end_step = -1`` keeps pruning for ever. ``sparsity_at`` is ``target_sparsity`` at every step.
    """

    name: Literal["constant"] = "constant"
    target_sparsity: float = Field(ge=0.0, lt=1.0)
    begin_step: int = Field(0, ge=0)
    end_step: int = Field(-1, ge=-1, description="-1 = no end")
    frequency: int = Field(100, gt=0)

    @model_validator(mode="after")
    def _check_steps(self) -> Constant:
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(f"end_step ({self.end_step}) must be -1 or >= begin_step ({self.begin_step})")
        return self

    def sparsity_at(self, step: int) -> float:
        return self.target_sparsity

    def should_prune(self, step: int) -> bool:
        return on_grid(step, self.begin_step, None if self.end_step == -1 else self.end_step, self.frequency)

    def event_steps(self) -> list[int]:
        if self.end_step == -1:
            raise ConfigError("constant schedule with end_step=-1 never ends; set end_step to list its pruning steps")
        return grid(self.begin_step, self.end_step, self.frequency)
