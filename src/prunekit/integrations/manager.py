"""A recipe's ``prune:`` section applied inside your own training loop (as SparseML's recipe manager is)::

    manager = RecipeManager.from_recipe("recipe.yaml", model, steps_per_epoch=len(train_loader), example_inputs=x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)      # build it after the manager (masks attach first)
    for epoch in range(epochs):
        for inputs, labels in train_loader:
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            manager.step(optimizer)                                  # after every optimizer step
    model = manager.finish()                                         # masks folded in / channels removed

Supported methods: ``unstructured`` (one-shot at the start, or the rounds of its ``schedule``
spread evenly over training: prune → fine-tune within one run), ``gradual`` (masks follow the
section's schedule, whose steps are optimizer steps), ``nm`` (N:M masks from the start, fixed),
``dst`` (RigL/SET drop-and-grow at constant sparsity) and ``structured`` (its ``steps`` spread evenly over training: channels are masked during
training and removed by :meth:`RecipeManager.finish`). Each reuses the callback prunekit's own
loop runs (:class:`~prunekit.training.pruning_callbacks.GradualPruning`,
:class:`~prunekit.integrations.rounds.UnstructuredRounds`,
:class:`~prunekit.training.dst.RigL`/:class:`~prunekit.training.dst.SET`,
:class:`~prunekit.integrations.structured.StructuredMasking`), driven through a small stand-in
for the loop's :class:`~prunekit.training.Trainer`. The section's ``train``/``finetune`` settings
only give the default length of training (``epochs``); ``baselines`` are comparisons the recipe
runner makes and are not run here.

To resume, save ``model.state_dict()`` (it holds the masks), the optimizer's state and
:meth:`RecipeManager.state_dict`; in the new process build the model and the manager, load the
model's state, build and load the optimizer, then :meth:`RecipeManager.load_state_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from torch import Tensor, nn
from torch.optim import Optimizer

from prunekit._settings import settings_of
from prunekit.errors import ConfigError
from prunekit.experiment.method_sections import DSTSection, GradualSection, NMSection, StructuredSection, UnstructuredSection
from prunekit.importance import make_criterion
from prunekit.integrations.rounds import UnstructuredRounds, event_steps
from prunekit.integrations.sections import SUPPORTED, RecipeSource, Section, prune_section
from prunekit.integrations.structured import StructuredMasking
from prunekit.masks import MaskSet, strip
from prunekit.pruners.nm import NMPruner
from prunekit.pruners.structured import StructuredConfig, StructuredPruner
from prunekit.pruners.unstructured import UnstructuredConfig
from prunekit.schedules import build_schedule
from prunekit.training.callbacks import Callback
from prunekit.training.checkpoint import TrainState
from prunekit.training.dst import SET, DSTConfig, RigL
from prunekit.training.pruning_callbacks import GradualPruning
from prunekit.training.trainer import Trainer

Batches = Iterable[tuple[Tensor, Tensor]]


@dataclass
class LoopState:
    """What prunekit's callbacks read of a :class:`~prunekit.training.Trainer`, for a loop prunekit does not run."""

    model: nn.Module
    total_steps: int
    steps_per_epoch: int
    optimizer: Optimizer | None = None
    state: TrainState = field(default_factory=TrainState)
    last_batch: tuple[Tensor, Tensor] | None = None


@dataclass(frozen=True)
class _Method:
    """How a manager drives one method: the training callback, what attaches its masks, what makes them permanent."""

    callback: Callback
    prepare: Callable[[nn.Module], nn.Module]
    finish: Callable[[nn.Module], nn.Module] = strip


class _NMMasks(Callback):
    """N:M masks attached once, before training; nothing changes them afterwards."""

    def __init__(self, pruner: NMPruner, example_inputs: Any) -> None:
        self.pruner, self.example_inputs = pruner, example_inputs

    def prepare(self, model: nn.Module) -> nn.Module:
        self.pruner.step(model, self.example_inputs)
        return model


class RecipeManager:
    """One ``prune:`` section driven from your loop: build it (masks attach), :meth:`step` after every
    optimizer step, :meth:`finish` at the end; :meth:`state_dict`/:meth:`load_state_dict` resume it.

    ``steps_per_epoch`` × ``epochs`` (default: the section's ``train``/``finetune`` epochs, times
    ``steps`` for structured) or ``total_steps`` give the length of training, which ``dst`` (its
    ``end_fraction``) and multi-step ``structured`` pruning need. ``example_inputs`` trace the model
    (``structured``, and ``nm`` with ``permute``). ``calibration``: ``(inputs, labels)`` batches (or a
    function returning them) for criteria that need data (gradient and activation criteria).
    Events due at step 0 (e.g. the first structured step, the N:M masks) happen in the constructor.
    """

    def __init__(self, section: Section, model: nn.Module, *, steps_per_epoch: int | None = None, epochs: float | None = None,
                 total_steps: int | None = None, example_inputs: Any = None,
                 calibration: Batches | Callable[[], Batches] | None = None) -> None:
        if section.method not in SUPPORTED:
            raise ConfigError(f"prune.method {section.method!r} cannot run in your own loop; supported: {', '.join(SUPPORTED)} "
                              f"(run the recipe with `prunekit run` instead)")
        self.section = section
        self.model = model
        total = _total_steps(section, steps_per_epoch, epochs, total_steps)
        self._loop = LoopState(model, total or 0, steps_per_epoch or max(1, total or 1))
        method = _build(section, total, example_inputs, calibration)
        self._callback, self._finish = method.callback, method.finish
        method.prepare(model)
        self._callback.on_train_start(cast(Trainer, self._loop))
        self.finished = False

    @classmethod
    def from_recipe(cls, source: RecipeSource, model: nn.Module, **options: Any) -> RecipeManager:
        """A manager for the ``prune:`` section of ``source``: a recipe file (or a shipped recipe's
        name), a recipe or section mapping, a :class:`~prunekit.experiment.recipe.Recipe`, or a
        section object. The section is validated as in a recipe. ``options`` go to the constructor."""
        return cls(prune_section(source), model, **options)

    @property
    def steps(self) -> int:
        """Optimizer steps counted so far."""
        return self._loop.state.step

    def step(self, optimizer: Optimizer | None = None) -> None:
        """Count one optimizer step (call right after ``optimizer.step()``) and update the masks if due.

        Pass the optimizer for ``dst``: weights grown back start with zeroed momentum.
        """
        if self.finished:
            raise ConfigError("this RecipeManager has finished; build a new one to prune again")
        if optimizer is not None:
            self._loop.optimizer = optimizer
        self._loop.state.step += 1
        self._callback.on_step_end(cast(Trainer, self._loop), self._loop.state.step, math.nan)

    def sparsity(self) -> float:
        """Fraction of the masked entries that are zero (0.0 without masks)."""
        return MaskSet.from_model(self.model).sparsity()

    def state_dict(self) -> dict[str, Any]:
        """Plain data to resume with (the masks themselves live in ``model.state_dict()``)."""
        return {"method": self.section.method, "step": self._loop.state.step, "pruning": self._callback.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`; load the model's state (with its masks) first."""
        if state.get("method") != self.section.method:
            raise ConfigError(f"this state is of a {state.get('method')!r} pruning run, not {self.section.method!r}; "
                              "resume with the recipe it was saved from")
        self._loop.state.step = int(state["step"])
        self._callback.load_state_dict(dict(state["pruning"]))
        self._callback.on_train_start(cast(Trainer, self._loop))

    def finish(self) -> nn.Module:
        """Make the pruning permanent (masks folded into the weights; structured: channels removed, in
        place) and return the model; rebuild the optimizer before training it further."""
        if not self.finished:
            self._callback.on_train_end(cast(Trainer, self._loop))
            self.model = self._finish(self.model)
            self.finished = True
        return self.model


def _total_steps(section: Section, steps_per_epoch: int | None, epochs: float | None, total_steps: int | None) -> int | None:
    """The length of training in optimizer steps, if it can be known."""
    if total_steps is not None:
        return total_steps
    if steps_per_epoch is None:
        return None
    if epochs is None:
        if isinstance(section, StructuredSection):
            epochs = section.finetune.epochs * section.steps
        elif isinstance(section, UnstructuredSection):
            epochs = section.finetune.epochs * (len(build_schedule(section.schedule).event_steps()) if section.schedule else 1)
        else:
            epochs = (section.finetune if isinstance(section, NMSection) else section.train).epochs
    return math.ceil(steps_per_epoch * epochs)


def _needs_length(what: str) -> ConfigError:
    return ConfigError(f"{what} needs the length of training: pass steps_per_epoch=len(train_loader) (and epochs=, default the "
                       "section's) or total_steps=")


def _build(section: Section, total: int | None, example_inputs: Any,
           calibration: Batches | Callable[[], Batches] | None) -> _Method:
    """How to run ``section``."""
    if isinstance(section, UnstructuredSection):
        rounds = _rounds(section, total, calibration)
        return _Method(rounds, rounds.prepare)
    if isinstance(section, GradualSection):
        config = settings_of(section, UnstructuredConfig)
        batches = calibration() if callable(calibration) else calibration
        gradual = GradualPruning(config, build_schedule(section.schedule), batches=batches)
        return _Method(gradual, gradual.prepare)
    if isinstance(section, NMSection):
        if section.permute and example_inputs is None:
            raise ConfigError("prune.permute searches channel permutations on a traced model: pass example_inputs= "
                              "(e.g. one input batch), or set permute: false")
        pruner = NMPruner(section.n, section.m, permute=section.permute, include=section.include, exclude=section.exclude)
        nm = _NMMasks(pruner, example_inputs if section.permute else None)
        return _Method(nm, nm.prepare)
    if isinstance(section, DSTSection):
        config = settings_of(section, DSTConfig)
        if config.end_step is None and total is None:
            raise _needs_length("dst (end_fraction of training)")
        dst = (RigL if section.algorithm == "rigl" else SET)(config)
        return _Method(dst, dst.prepare)
    masking = _structured(section, total, example_inputs, calibration)
    return _Method(masking, masking.prepare, masking.finish)


def _rounds(section: UnstructuredSection, total: int | None, calibration: Batches | Callable[[], Batches] | None) -> UnstructuredRounds:
    if section.stop is not None:
        raise ConfigError("prune.stop needs the recipe runner (validation between rounds); remove it for your own loop, "
                          "or run the recipe with `prunekit run`")
    config = settings_of(section, UnstructuredConfig)
    schedule = build_schedule(section.schedule) if section.schedule is not None else None
    count = len(schedule.event_steps()) if schedule is not None else 1
    if count > 1 and total is None:
        raise _needs_length(f"unstructured pruning in {count} rounds")
    batches = calibration() if callable(calibration) else calibration
    return UnstructuredRounds(config, schedule, event_steps(count, total or 0), batches=batches)


def _structured(section: StructuredSection, total: int | None, example_inputs: Any,
                calibration: Batches | Callable[[], Batches] | None) -> StructuredMasking:
    for key in ("sparsity_learning", "search", "stop"):
        if getattr(section, key) is not None:
            raise ConfigError(f"prune.{key} needs the recipe runner (training phases or validation between steps); "
                              f"remove it for your own loop, or run the recipe with `prunekit run`")
    if example_inputs is None:
        raise ConfigError("structured pruning traces the model: pass example_inputs= (e.g. one input batch)")
    config = settings_of(section, StructuredConfig)
    importance = None
    if config.importance in ("activation", "apoz"):
        batches = calibration() if callable(calibration) else calibration
        if batches is None:
            raise ConfigError(f"importance {config.importance!r} scores channels on calibration batches: pass calibration=")
        inputs = [x for x, _ in list(batches)[: section.calibration_batches]]
        importance = make_criterion(config.importance, batches=inputs, reduction=config.reduction, normalization=config.normalization)
    pruner = StructuredPruner(config, importance=importance)
    count = len(pruner.schedule())
    if count > 1 and total is None:
        raise _needs_length(f"structured pruning in {count} steps")
    masking = StructuredMasking(pruner, example_inputs, event_steps(count, total or 0), calibration=calibration,
                                calibration_batches=section.calibration_batches)
    return masking
