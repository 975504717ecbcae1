"""Gradual schedules: TF-MOT's ``PolynomialDecay`` and Zhu & Gupta's cubic (AGP) schedule."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, model_validator

from prunekit.schedules.base import SCHEDULES, Schedule, grid, on_grid, polynomial

log = logging.getLogger(__name__)

_Sparsity = Field(ge=0.0, lt=1.0)


@SCHEDULES.register("polynomial_decay", example={"initial_sparsity": 0.2, "final_sparsity": 0.8, "begin_step": 100, "end_step": 110, "frequency": 2})
class PolynomialDecay(Schedule):
    """TF-MOT's ``PolynomialDecay``, same arguments and semantics.

    ``sparsity_at(t) = final + (initial − final) · (1 − p)^power`` with
    ``p = clamp((t − begin_step) / (end_step − begin_step), 0, 1)``: ``initial_sparsity`` before
    ``begin_step``, ``final_sparsity`` from ``end_step`` on. Masks change at ``begin_step``,
    ``begin_step + frequency``, … up to ``end_step`` *inclusive*, never after. As in TF-MOT,
    ``final_sparsity`` is only ever applied if ``end_step − begin_step`` is a multiple of
    ``frequency`` (a warning says so otherwise). ``end_step == begin_step`` prunes once, to
    ``final_sparsity``.
    """

    name: Literal["polynomial_decay"] = "polynomial_decay"
    initial_sparsity: float = _Sparsity
    final_sparsity: float = _Sparsity
    begin_step: int = Field(0, ge=0)
    end_step: int = Field(ge=0, description="TF-MOT's -1 (prune forever) is not allowed here either")
    power: float = Field(3.0, gt=0)
    frequency: int = Field(100, gt=0)

    @model_validator(mode="after")
    def _check_steps(self) -> PolynomialDecay:
        if self.end_step < self.begin_step:
            raise ValueError(f"end_step ({self.end_step}) must be >= begin_step ({self.begin_step})")
        if (self.end_step - self.begin_step) % self.frequency:
            last = grid(self.begin_step, self.end_step, self.frequency)[-1]
            log.warning(
                "polynomial_decay: end_step - begin_step = %d is not a multiple of frequency = %d, so the last pruning "
                "step is %d and final_sparsity %.4f is never reached (it stops at %.4f)",
                self.end_step - self.begin_step, self.frequency, last, self.final_sparsity, self.sparsity_at(last),
            )
        return self

    def sparsity_at(self, step: int) -> float:
        span = self.end_step - self.begin_step
        progress = (step - self.begin_step) / span if span else float(step >= self.begin_step)
        return polynomial(self.initial_sparsity, self.final_sparsity, progress, self.power)

    def should_prune(self, step: int) -> bool:
        return on_grid(step, self.begin_step, self.end_step, self.frequency)

    def event_steps(self) -> list[int]:
        return grid(self.begin_step, self.end_step, self.frequency)


@SCHEDULES.register("cubic", example={"initial_sparsity": 0.0, "final_sparsity": 0.9, "begin_step": 10, "frequency": 5, "n_steps": 4})
class Cubic(Schedule):
    """Zhu & Gupta 2017 (AGP): ``s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³``.

    Masks change at ``t0, t0 + Δt, …, t0 + nΔt`` (``begin_step``, ``frequency``, ``n_steps``), so
    ``final_sparsity`` is always reached, at ``t0 + nΔt``. Before ``t0`` nothing is pruned and
    ``sparsity_at`` is 0 (like ``torch.ao.pruning.CubicSL(initially_zero=True)``; TF-MOT's
    ``PolynomialDecay`` returns ``initial_sparsity`` there instead).
    """

    name: Literal["cubic"] = "cubic"
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0)
    final_sparsity: float = _Sparsity
    begin_step: int = Field(0, ge=0)
    frequency: int = Field(gt=0, description="Δt: steps between mask updates")
    n_steps: int = Field(gt=0, description="n: number of mask updates after begin_step")

    @property
    def end_step(self) -> int:
        """``t0 + nΔt``, the last pruning step."""
        return self.begin_step + self.n_steps * self.frequency

    def sparsity_at(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        progress = (step - self.begin_step) / (self.n_steps * self.frequency)
        return polynomial(self.initial_sparsity, self.final_sparsity, progress, 3.0)

    def should_prune(self, step: int) -> bool:
        return on_grid(step, self.begin_step, self.end_step, self.frequency)

    def event_steps(self) -> list[int]:
        return grid(self.begin_step, self.end_step, self.frequency)
