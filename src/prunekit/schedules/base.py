"""The schedule contract, the ``SCHEDULES`` registry and helpers shared by the built-in schedules.

A schedule is a pure, typed description of *when* masks change and *to what* sparsity:

- ``sparsity_at(step)``: the target sparsity the schedule gives for ``step``;
- ``should_prune(step)``: whether masks are recomputed at ``step``;
- ``event_steps()``: every step where ``should_prune`` is true (finite schedules only).

``step`` counts completed training iterations (0 = before the first one) when pruning during
training, or rounds when a schedule drives prune → fine-tune cycles. Schedules are pydantic
models: recipes embed them (``name`` tells them apart) and ``state_dict`` is their JSON config.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from prunekit._registry import Registry
from prunekit.errors import ConfigError

log = logging.getLogger(__name__)


class Schedule(BaseModel):
    """Base class of every sparsity schedule (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str

    def sparsity_at(self, step: int) -> float:
        """Target sparsity for ``step`` (applied only where :meth:`should_prune` is true)."""
        raise NotImplementedError

    def should_prune(self, step: int) -> bool:
        """Whether masks are recomputed at ``step``."""
        raise NotImplementedError

    def event_steps(self) -> list[int]:
        """All steps at which the schedule prunes, in order (raises for never-ending schedules)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The schedule's configuration as a JSON-able dict (includes ``name``)."""
        return self.model_dump(mode="json")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace this schedule's configuration with ``state`` (validated first)."""
        loaded = type(self).model_validate(dict(state))
        for field in type(self).model_fields:
            setattr(self, field, getattr(loaded, field))


#: name → schedule class; metadata ``example`` holds valid keyword arguments (used by contract tests).
SCHEDULES: Registry[type[Schedule]] = Registry("schedule")


def build_schedule(spec: Mapping[str, Any]) -> Schedule:
    """A schedule from its ``state_dict`` form, e.g. ``{"name": "cubic", "final_sparsity": 0.9, ...}``."""
    if "name" not in spec:
        raise ConfigError(f"schedule spec needs a 'name'; allowed values: {', '.join(SCHEDULES.names())}")
    return SCHEDULES.get(spec["name"]).model_validate(dict(spec))


def on_grid(step: int, begin: int, end: int | None, frequency: int) -> bool:
    """True for ``begin, begin + frequency, …`` up to ``end`` inclusive (``None`` = no end)."""
    in_range = step >= begin and (end is None or step <= end)
    return in_range and (step - begin) % frequency == 0


def grid(begin: int, end: int, frequency: int) -> list[int]:
    """The steps :func:`on_grid` accepts between ``begin`` and ``end``."""
    return list(range(begin, end + 1, frequency))


def polynomial(initial: float, final: float, progress: float, power: float) -> float:
    """``final + (initial - final) * (1 - progress) ** power`` with ``progress`` clamped to [0, 1]."""
    p = min(1.0, max(0.0, progress))
    return final + (initial - final) * (1.0 - p) ** power
