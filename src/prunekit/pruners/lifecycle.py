"""The pruner lifecycle: one protocol for unstructured, N:M and structured pruning.

Modelled on torch.ao's sparsifier (prepare / step / state_dict / squash)::

    pruner.prepare(model, example_inputs)            # the reference model targets are measured against
    for fraction in pruner.schedule():               # fractions of the target; the last is 1.0
        pruner.step(model, example_inputs, fraction, calibration)
        fine_tune(model)
    model = pruner.finish(model)                     # make it permanent

:class:`~prunekit.pruners.unstructured.UnstructuredPruner` and :class:`~prunekit.pruners.nm.NMPruner`
attach masks (``finish`` folds them into the weights); :class:`~prunekit.pruners.structured.StructuredPruner`
removes channels for real (``finish`` has nothing left to do). ``state_dict``/``load_state_dict``
carry what a resumed run needs besides the model. :func:`prunekit.training.prune_finetune_structured`
and :func:`prunekit.training.prune_finetune` drive pruners through this lifecycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import nn

from prunekit.errors import ConfigError
from prunekit.importance.calibration import Calibration


@runtime_checkable
class Pruner(Protocol):
    """What every pruner offers; see the module docstring."""

    def prepare(self, model: nn.Module, example_inputs: Any = None) -> None:
        """Remember ``model`` (unpruned) as the reference of the target."""

    def schedule(self) -> list[float]:
        """Fractions of the target to reach after each step (the last is 1.0)."""

    def step(self, model: nn.Module, example_inputs: Any = None, fraction: float = 1.0, calibration: Calibration | None = None) -> Any:
        """Prune ``model`` in place toward ``fraction`` of the target; returns what the step did."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state a resumed run restores with :meth:`load_state_dict`."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def finish(self, model: nn.Module) -> nn.Module:
        """Make the pruning permanent and return the model."""


def check_fraction(fraction: float) -> None:
    """Fractions of a target lie in (0, 1]."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
