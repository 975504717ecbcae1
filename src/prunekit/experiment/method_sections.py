"""Pruning methods a recipe can name (``prune.method``): each declared once, in its :data:`METHODS` entry.

An entry pairs the method's recipe section (its settings, a :class:`~prunekit._settings.Settings`
whose ``method`` field is the name) with the function that runs it (``module:function``, imported
when a run needs it, so settings load without the training stack). The recipe's ``prune`` union is
built from this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from prunekit._registry import Registry
from prunekit._settings import MAX_COUNT, Settings
from prunekit.analysis.search_problem import SearchConfig
from prunekit.errors import PrunekitError, shorten
from prunekit.pruners.at_init import SAME_DENSITY, AtInitConfig, InitScheme
from prunekit.pruners.depth import DEPTH_CRITERIA, DepthConfig
from prunekit.pruners.structured import StructuredConfig
from prunekit.pruners.unstructured import UnstructuredConfig
from prunekit.schedules import SCHEDULES, build_schedule
from prunekit.training.config import TrainConfig
from prunekit.training.dst import DSTConfig
from prunekit.training.lottery import LotteryConfig
from prunekit.training.sparsity import SparsityLearningConfig
from prunekit.training.stopping import StopCondition


@dataclass(frozen=True)
class Method:
    """A ``prune.method``: its recipe section and the ``module:function`` that runs it on a run context."""

    section: type[Settings]
    runner: str

    def run(self, ctx: Any) -> Any:
        """Import the runner and call it with ``ctx`` (a :class:`~prunekit.experiment.context.RunContext`)."""
        module, _, function = self.runner.partition(":")
        run: Callable[[Any], Any] = getattr(importlib.import_module(module), function)
        return run(ctx)


#: name → the method's section and runner.
METHODS: Registry[Method] = Registry("pruning method")


def _check_baselines(values: tuple[str, ...], check_criterion: Callable[[str], Any], kind: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Validate ``criterion[:<kind>]`` baseline strings (e.g. ``random:global``)."""
    for value in values:
        criterion, _, second = value.partition(":")
        check_criterion(criterion)
        if second not in ("", *allowed):
            raise ValueError(f"baseline {value!r}: unknown {kind} {second!r}; allowed values: {', '.join(allowed)}")
    return values


def _variants(main: tuple[str, str], baselines: Sequence[str]) -> list[tuple[str, str]]:
    """``main`` first, then each baseline as ``(criterion, its own second part or main's)``, duplicates dropped."""
    pairs = [main]
    for value in baselines:
        criterion, _, second = value.partition(":")
        pairs.append((criterion, second or main[1]))
    return list(dict.fromkeys(pairs))


def _check_schedule(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if spec is None:
        return spec
    if not isinstance(spec.get("name"), str):
        raise ValueError(f"schedule name must be text, one of: {', '.join(SCHEDULES.names())} (got {shorten(spec.get('name'))})")
    try:
        build_schedule(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid {spec['name']} schedule: {problems}") from None
    except PrunekitError as exc:
        raise ValueError(str(exc)) from None
    return spec


class UnstructuredSection(UnstructuredConfig):
    """Prune → fine-tune: one round (one-shot, the default) or the rounds of ``schedule``.

    ``schedule`` is a schedule in its dict form, e.g. ``{name: iterative, rate: 0.5,
    final_sparsity: 0.9}``; each of its pruning steps is one prune + fine-tune round.
    ``baselines`` are other criteria run through the same rounds and fine-tuning budget, as
    ``criterion`` (same scope) or ``criterion:scope`` (e.g. ``magnitude:layer``). ``stop`` ends the
    rounds of every variant early (e.g. ``{max_accuracy_drop: 0.5}``: on the validation split) and
    keeps each one's last round that satisfied it.
    """

    method: Literal["unstructured"] = "unstructured"
    schedule: dict[str, Any] | None = None
    finetune: TrainConfig = TrainConfig(epochs=2)
    baselines: tuple[str, ...] = ("random",)
    stop: StopCondition | None = None

    _schedule = field_validator("schedule")(_check_schedule)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _check_baselines(values, cls._known_criterion, "scope", ("layer", "global"))

    def variants(self) -> list[tuple[str, str]]:
        """``(criterion, scope)`` of the main method first, then of each baseline (duplicates dropped)."""
        return _variants((self.criterion, self.scope), self.baselines)


class GradualSection(UnstructuredConfig):
    """Pruning during training: masks follow ``schedule`` (e.g. polynomial decay or cubic) every
    ``frequency`` steps while training with ``train`` (starting from the dense model)."""

    method: Literal["gradual"] = "gradual"
    schedule: dict[str, Any] = Field(
        default_factory=lambda: {"name": "polynomial_decay", "initial_sparsity": 0.0, "final_sparsity": 0.5, "end_step": 1000, "frequency": 100}
    )
    train: TrainConfig = TrainConfig(epochs=5)

    _schedule = field_validator("schedule")(_check_schedule)


class LotterySection(LotteryConfig):
    """Lottery tickets: iterative magnitude pruning with reset (or rewind) to the initial weights.
    Each round trains with the recipe's top-level ``train`` (there is no ``prune.train``)."""

    method: Literal["lottery"] = "lottery"
    train: None = Field(None, exclude=True)  # type: ignore[assignment]

    @field_validator("train", mode="before")
    @classmethod
    def _no_train(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("lottery rounds train with the top-level 'train' section; move the settings there")
        return None


class NMSection(Settings):
    """N:M sparsity (e.g. 2:4): keep the ``n`` largest of every ``m`` consecutive input-channel weights,
    optionally after a function-preserving channel-permutation search, then fine-tune with fixed masks.
    ``baselines``: ``nm_plain`` / ``nm_permuted`` (the other permutation setting) and ``unstructured``
    (layer-wise magnitude at the same sparsity, 1 − n/m), under the same fine-tuning budget."""

    method: Literal["nm"] = "nm"
    n: int = Field(2, ge=1, le=1024)
    m: int = Field(4, ge=2, le=1024)
    permute: bool = True
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    finetune: TrainConfig = TrainConfig(epochs=2)
    baselines: tuple[Literal["nm_plain", "nm_permuted", "unstructured"], ...] = ("unstructured",)

    @model_validator(mode="after")
    def _n_below_m(self) -> NMSection:
        if self.n >= self.m:
            raise ValueError(f"n must be smaller than m (got {self.n}:{self.m}); e.g. 2:4, 1:4, 4:8")
        return self


class StructuredSection(StructuredConfig):
    """Structured pruning that removes channels, neurons and heads for real: one-shot or ``steps``
    prune → fine-tune steps toward one target (channel ratio, per-layer ratios, or a MACs/params
    budget), optionally after a sparsity-learning phase. Gradient criteria (``taylor``, ``hessian``)
    and activation criteria (``activation``, ``apoz``) use ``calibration_batches`` training batches.
    ``baselines`` are ``criterion`` or ``criterion:allocation`` (e.g. ``random:uniform``), pruned to
    the same target with the same fine-tuning (without sparsity learning). ``stop`` ends the steps of
    every variant early (e.g. ``{max_accuracy_drop: 0.5}`` with a large ``ratio`` and many ``steps``)
    and keeps each one's last step that satisfied it. ``search`` (e.g. ``{strategy: evolutionary,
    trials: 40}``) first searches per-group ratios under the resource target on the validation
    split, then prunes to them (baselines keep the target and their allocation)."""

    method: Literal["structured"] = "structured"
    finetune: TrainConfig = TrainConfig(epochs=2)
    sparsity_learning: SparsityLearningConfig | None = None
    calibration_batches: int = Field(8, ge=1, le=MAX_COUNT)
    baselines: tuple[str, ...] = ()
    stop: StopCondition | None = None
    search: SearchConfig | None = None

    @model_validator(mode="after")
    def _search_needs_a_budget(self) -> StructuredSection:
        if self.search is not None and not self.resource_target:
            raise ValueError("search needs a resource target to search under: macs_reduction, max_macs, max_params, latency_reduction or max_latency_ms")
        return self

    @field_validator("importance")
    @classmethod
    def _known_importance(cls, value: str) -> str:
        from prunekit.importance import GROUP_CRITERIA

        return GROUP_CRITERIA.check(value)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _check_baselines(values, cls._known_importance, "allocation", ("uniform", "global", "knapsack"))

    @model_validator(mode="after")
    def _knapsack_needs_a_budget(self) -> StructuredSection:
        if not self.resource_target and any(allocation == "knapsack" for _, allocation in _variants(("", ""), self.baselines)):
            raise ValueError("the knapsack allocation (baseline 'criterion:knapsack') needs a resource target: "
                             "macs_reduction, max_macs, max_params, latency_reduction or max_latency_ms")
        return self

    def variants(self) -> list[tuple[str, str]]:
        """``(criterion, allocation)`` of the main method (``search-<strategy>`` when searched), then of each baseline (duplicates dropped)."""
        return _variants((self.importance, f"search-{self.search.strategy}" if self.search else self.resolved_allocation), self.baselines)


class DSTSection(DSTConfig):
    """Dynamic sparse training from scratch at constant sparsity: RigL (drop smallest magnitudes, grow
    largest gradients) or SET (grow at random), ERK or uniform layer densities, with ``train``."""

    method: Literal["dst"] = "dst"
    algorithm: Literal["rigl", "set"] = "rigl"
    train: TrainConfig = TrainConfig(epochs=10)


class DepthSection(DepthConfig):
    """Depth pruning: remove whole residual blocks (identity shortcut) by importance, then fine-tune.
    ``output_change`` scores blocks on ``calibration_batches`` training batches; ``baselines`` are
    other depth criteria (``random``, ``bn_scale``, ``l2``) removing blocks to the same target, with
    the same fine-tuning."""

    method: Literal["depth"] = "depth"
    finetune: TrainConfig = TrainConfig(epochs=2)
    calibration_batches: int = Field(1, ge=1, le=MAX_COUNT)
    baselines: tuple[str, ...] = ("random",)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(DEPTH_CRITERIA.check(v) for v in values)

    def variants(self) -> list[str]:
        """The main criterion, then each baseline (duplicates dropped)."""
        return list(dict.fromkeys((self.importance, *self.baselines)))


class AtInitSection(AtInitConfig):
    """Pruning at initialisation (SNIP, SynFlow, random, magnitude): prune a freshly initialised model
    before any training (``init``: ``glorot_normal``, the variance scaling SNIP uses; ``kaiming_normal``;
    or the model's ``default``), then train the sparse net with the recipe's top-level ``train``, masks
    fixed. ``baselines`` are other criteria pruned and trained the same way, and ``random_same_density``
    (random masks keeping exactly the main criterion's count in every layer), with the same budget."""

    method: Literal["at_init"] = "at_init"
    init: InitScheme = "glorot_normal"
    baselines: tuple[str, ...] = ("random", SAME_DENSITY)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if value != SAME_DENSITY:
                try:
                    cls._known_criterion(value)
                except ValueError as exc:
                    raise ValueError(f"baseline {value!r}: {exc} (or {SAME_DENSITY!r}, random masks with the main criterion's layer densities)") from None
        return values

    def variants(self) -> list[str]:
        """The main criterion first, then each baseline (duplicates dropped)."""
        return list(dict.fromkeys((self.criterion, *self.baselines)))


class DynamicSection(Settings):
    """Input-dependent channel pruning (FBS-style gates, :mod:`prunekit.dynamic`): a gate on every gateable
    (block-interior) channel group matching ``groups`` keeps the ``density`` most salient channels per input;
    the gated model is fine-tuned with ``finetune`` plus ``budget_weight`` times the L1 norm of the saliencies.
    ``static`` (structured settings, e.g. ``{macs_reduction: 1.5}``) prunes statically first, then gates."""

    method: Literal["dynamic"] = "dynamic"
    density: float = Field(0.5, gt=0, le=1, description="fraction of each gated group's channels computed per input")
    groups: tuple[str, ...] = Field(("*",), min_length=1, description="fnmatch patterns on the producing layer of the groups to gate")
    budget_weight: float = Field(1e-4, ge=0, le=1e3, description="weight of the L1 budget loss on the gate saliencies")
    finetune: TrainConfig = TrainConfig(epochs=2)
    static: StructuredConfig | None = None


METHODS.add("unstructured", Method(UnstructuredSection, "prunekit.experiment.methods.unstructured:run_unstructured"), description="prune → fine-tune rounds of unstructured masks (one-shot or a schedule), with baselines")
METHODS.add("gradual", Method(GradualSection, "prunekit.experiment.methods.gradual:run_gradual"), description="pruning during training: masks follow a sparsity schedule (polynomial decay, cubic)")
METHODS.add("lottery", Method(LotterySection, "prunekit.experiment.methods.lottery:run_lottery_method"), description="lottery tickets: iterative magnitude pruning with reset or rewind, with controls")
METHODS.add("nm", Method(NMSection, "prunekit.experiment.methods.nm:run_nm"), description="N:M (e.g. 2:4) masks, optional channel permutation, fixed-mask fine-tuning")
METHODS.add("structured", Method(StructuredSection, "prunekit.experiment.methods.structured:run_structured"), description="channels, neurons and heads removed for real: one-shot or prune → fine-tune steps")
METHODS.add("dst", Method(DSTSection, "prunekit.experiment.methods.dst:run_dst"), description="dynamic sparse training from scratch: RigL or SET at constant sparsity")
METHODS.add("depth", Method(DepthSection, "prunekit.experiment.methods.depth:run_depth"), description="whole residual blocks removed by importance (output change, BN scale, L2), then fine-tuning")
METHODS.add("dynamic", Method(DynamicSection, "prunekit.experiment.methods.dynamic:run_dynamic"), description="input-dependent channel gates (FBS) on block-interior groups, optionally after static pruning; skip path at inference")
METHODS.add("at_init", Method(AtInitSection, "prunekit.experiment.methods.at_init:run_at_init"), description="pruning at initialisation (SNIP, SynFlow, random) before training, masks fixed while the sparse net trains")
