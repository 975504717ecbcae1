"""The TF Model Optimization (Keras) pruning API, for PyTorch models.

The same three steps as ``tfmot.sparsity.keras``::

    model = prune_low_magnitude(model, pruning_schedule=PolynomialDecay(
        initial_sparsity=0.5, final_sparsity=0.8, begin_step=0, end_step=1000))
    fit(model, train, config, callbacks=[UpdatePruningStep()])   # or update.step() in your loop
    model = strip_pruning(model)

Differences from Keras: the model is changed in place (masks attached as parametrizations, no
wrapper layers) and returned; layer selection uses ``include``/``exclude`` patterns over parameter
names instead of wrapping individual layers; masks are monotone and hit exact per-layer counts
(``round(s · n)``) instead of a magnitude threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters, strip
from prunekit.pruners.unstructured import UnstructuredConfig
from prunekit.schedules import Constant, Schedule
from prunekit.schedules import PolynomialDecay as _PolynomialDecay
from prunekit.training.callbacks import Callback
from prunekit.training.pruning_callbacks import GradualPruning, attach_missing_masks
from prunekit.training.trainer import Trainer

#: Attribute of a model prepared by :func:`prune_low_magnitude` holding its pruning settings.
PRUNING_ATTR = "_prunekit_low_magnitude"


class PolynomialDecay(_PolynomialDecay):
    """TF-MOT's ``PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100)``."""

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int, end_step: int,
                 power: float = 3, frequency: int = 100, **kwargs: Any) -> None:
        super().__init__(initial_sparsity=initial_sparsity, final_sparsity=final_sparsity, begin_step=begin_step,
                         end_step=end_step, power=power, frequency=frequency, **kwargs)


class ConstantSparsity(Constant):
    """TF-MOT's ``ConstantSparsity(target_sparsity, begin_step, end_step=-1, frequency=100)``."""

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int = -1, frequency: int = 100, **kwargs: Any) -> None:
        super().__init__(target_sparsity=target_sparsity, begin_step=begin_step, end_step=end_step, frequency=frequency, **kwargs)


@dataclass(frozen=True)
class _LowMagnitude:
    schedule: Schedule
    names: tuple[str, ...]


def prune_low_magnitude(
    model: nn.Module,
    pruning_schedule: Schedule | None = None,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> nn.Module:
    """Prepare ``model`` for magnitude pruning on ``pruning_schedule`` (default ``ConstantSparsity(0.5, 0)``).

    Attaches all-keep masks to the targets (conv/linear weights by default) and records the
    schedule on the model; :class:`UpdatePruningStep` then applies it during training.
    """
    schedule = pruning_schedule if pruning_schedule is not None else ConstantSparsity(0.5, 0)
    names = prunable_parameters(model, include, exclude)
    attach_missing_masks(model, names)
    setattr(model, PRUNING_ATTR, _LowMagnitude(schedule, tuple(names)))
    return model


class UpdatePruningStep(Callback):
    """Applies the schedule of a model prepared by :func:`prune_low_magnitude` as training steps complete.

    Pass it to :func:`prunekit.training.fit` in ``callbacks``. In a plain PyTorch loop build it
    with the model (which applies any pruning due at step 0) and call :meth:`step` after every
    ``optimizer.step()``.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        self._pruning: GradualPruning | None = None
        self._pending: dict[str, Any] | None = None
        if model is not None:
            self._engine(model).prepare(model)

    def step(self) -> None:
        """Count one completed training iteration and update the masks if the schedule says so."""
        if self._pruning is None:
            raise ConfigError("UpdatePruningStep has no model: build it as UpdatePruningStep(model) to call step()")
        self._pruning.step()

    def on_train_start(self, trainer: Trainer) -> None:
        self._engine(trainer.model).on_train_start(trainer)

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self._engine(trainer.model).on_step_end(trainer, step, loss)

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None:
        self._engine(trainer.model).on_epoch_end(trainer, epoch, record)

    def state_dict(self) -> dict[str, Any]:
        return self._pruning.state_dict() if self._pruning is not None else dict(self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._pruning is not None:
            self._pruning.load_state_dict(state)
        else:
            self._pending = dict(state)

    def _engine(self, model: nn.Module) -> GradualPruning:
        """The :class:`GradualPruning` applying the schedule recorded on ``model``."""
        if self._pruning is not None and self._pruning.model in (None, model):
            return self._pruning
        spec = getattr(model, PRUNING_ATTR, None)
        if not isinstance(spec, _LowMagnitude):
            raise ConfigError("the model is not prepared for pruning: call prune_low_magnitude(model, pruning_schedule=...) first")
        self._pruning = GradualPruning(UnstructuredConfig(criterion="magnitude", scope="layer", include=spec.names), spec.schedule)
        if self._pending is not None:
            self._pruning.load_state_dict(self._pending)
            self._pending = None
        return self._pruning


def strip_pruning(model: nn.Module) -> nn.Module:
    """Make the masks permanent (pruned weights become zeros) and remove every pruning attachment."""
    strip(model)
    if hasattr(model, PRUNING_ATTR):
        delattr(model, PRUNING_ATTR)
    return model
