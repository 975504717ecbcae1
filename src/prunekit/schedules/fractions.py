"""Fractions of a pruning target reached after each of ``steps`` prune → fine-tune steps.

Structured pruning (and any pruner following :mod:`prunekit.pruners.lifecycle`) moves toward its
target in steps; step ``k`` of ``n`` reaches ``k/n`` of it (``linear``) or ``1 − (1 − k/n)³``
(``cubic``: the AGP shape of :class:`~prunekit.schedules.Cubic`, large steps first).
"""

from __future__ import annotations

from typing import Literal

from prunekit.errors import ConfigError
from prunekit.schedules.base import polynomial

Shape = Literal["linear", "cubic"]


def target_fractions(steps: int, shape: Shape = "linear") -> list[float]:
    """``[f_1, ..., f_steps]`` with ``f_steps == 1.0``."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if shape == "cubic":
        return [polynomial(0.0, 1.0, k / steps, 3.0) for k in range(1, steps + 1)]
    if shape == "linear":
        return [k / steps for k in range(1, steps + 1)]
    raise ConfigError(f"unknown step shape {shape!r}; allowed values: linear, cubic")
