"""Stop conditions of iterative pruning: end the steps early when a named condition is met.

>>> stop = StopCondition(max_accuracy_drop=0.5)          # "prune until the drop passes 0.5 points"
>>> run = prune_finetune_structured(model, StructuredPruner(StructuredConfig(ratio=0.9, steps=9)), train, ft,
...                                 example_inputs=x, val=val, stop=stop)
>>> run.last_good_step, run.stop_reason

Two kinds of condition, any mix of them:

- a **limit** (``max_accuracy_drop``): every kept step must satisfy it. Accuracy is measured on the
  validation split (never the test set) after the step's fine-tuning, in points below the validation
  accuracy of the model the steps start from. A step past the limit ends the run (after
  ``patience`` more failing steps), and the result is the model of the **last step that satisfied
  it** (``restore_best``; the unpruned model when none did).
- a **target** (``max_macs``, ``min_macs_reduction``, ``max_params``, ``min_params_reduction``,
  ``max_latency_ms``, ``min_latency_reduction``, or ``metric`` with ``metric_target``): the first
  step that reaches one ends the run, and is kept when it satisfies the limits.

Latency targets time the physically pruned model on ``latency_runtime`` (default: the default
runtime, onnxruntime when installed) at ``latency_batch_size`` and ``latency_threads``, with warm-up
and medians; ``min_latency_reduction`` times each step side by side with the model the steps
started from. They apply to structured pruning only (a masked model runs at dense speed).

The pruner's own target can then be generous (``ratio=0.9`` over many steps): the condition ends it.
Each step's measurements are kept in its folder's ``stop.json``, so a resumed run decides the same
without measuring (or pruning) again. This is also how "prune potential" is measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from torch import nn

from prunekit._io import read_json, write_json
from prunekit._settings import MAX_COUNT, Settings
from prunekit.deployment.runtimes import RUNTIMES, time_side_by_side
from prunekit.errors import CheckpointError, ConfigError, shorten
from prunekit.metrics._inputs import as_args, batched
from prunekit.training import distributed

log = logging.getLogger(__name__)

#: Slack of the accuracy limit (a drop equal to ``max_accuracy_drop`` still satisfies it).
_EPS = 1e-9


class StopCondition(Settings):
    """When iterative pruning stops; name at least one condition (see the module docstring)."""

    max_accuracy_drop: float | None = Field(None, ge=0, le=100, description="points of validation accuracy a kept step may lose")
    max_macs: int | None = Field(None, gt=0, le=2**53, description="stop once a step's MACs are at most this")
    min_macs_reduction: float | None = Field(None, gt=1, le=1e6, description="stop once dense MACs / step MACs reach this")
    max_params: int | None = Field(None, gt=0, le=2**53, description="stop once a step's parameters (non-zero for masks) are at most this")
    min_params_reduction: float | None = Field(None, gt=1, le=1e6, description="stop once dense / step parameters reach this")
    max_latency_ms: float | None = Field(None, gt=0, le=1e7, description="stop once a step's measured latency (ms) is at most this")
    min_latency_reduction: float | None = Field(None, gt=1, le=1e6, description="stop once starting-model latency / step latency reaches this")
    latency_runtime: str | None = Field(None, description="runtime latency is measured on (default: onnxruntime when installed, else torch)")
    latency_batch_size: int = Field(1, ge=1, le=4096, description="batch size latency is measured at")
    latency_threads: int = Field(1, ge=1, le=256, description="threads latency is measured with")
    metric: Callable[..., float] | None = Field(None, exclude=True, description="Python API only: metric(model) -> float, lower is better")
    metric_target: float | None = Field(None, description="stop once metric(model) is at most this (e.g. latency in ms)")
    metric_name: str = Field("metric", min_length=1, max_length=64, description="what the metric is, for messages and records")
    patience: int = Field(0, ge=0, le=MAX_COUNT, description="failing steps tolerated after the first before the run stops")
    restore_best: bool = Field(True, description="return the last step that satisfied the limits, not the last step run")

    @field_validator("metric", mode="before")
    @classmethod
    def _callable_metric(cls, value: Any) -> Any:
        if value is not None and not callable(value):
            raise ValueError(f"metric must be a Python callable metric(model) -> float (got {shorten(value)}); recipes cannot "
                             f"name one: use max_macs, min_macs_reduction, max_params, min_params_reduction or max_accuracy_drop")
        return value

    @field_validator("latency_runtime")
    @classmethod
    def _known_runtime(cls, value: str | None) -> str | None:
        if value is not None and value not in RUNTIMES:
            raise ValueError(f"unknown latency_runtime {value!r}; known: {', '.join(RUNTIMES.names())}")
        return value

    @model_validator(mode="after")
    def _some_condition(self) -> StopCondition:
        if (self.metric is None) != (self.metric_target is None):
            given, missing = ("metric", "metric_target") if self.metric is not None else ("metric_target", "metric")
            raise ValueError(f"{given} is set but {missing} is not: a measured metric needs both metric (a callable model -> float) "
                             f"and metric_target (stop once the metric is at most it)")
        if not self.limits() and not self.targets():
            raise ValueError("StopCondition names no condition: set max_accuracy_drop (points of validation accuracy), max_macs, "
                             "min_macs_reduction, max_params, min_params_reduction, max_latency_ms, min_latency_reduction, "
                             "or metric with metric_target")
        return self

    def limits(self) -> list[str]:
        """The conditions every kept step must satisfy."""
        return ["max_accuracy_drop"] if self.max_accuracy_drop is not None else []

    def targets(self) -> list[str]:
        """The conditions whose first reaching step ends the run."""
        names = ("max_macs", "min_macs_reduction", "max_params", "min_params_reduction", "max_latency_ms", "min_latency_reduction",
                 "metric_target")
        return [n for n in names if getattr(self, n) is not None]

    @property
    def needs_accuracy(self) -> bool:
        return self.max_accuracy_drop is not None

    @property
    def needs_macs(self) -> bool:
        return self.max_macs is not None or self.min_macs_reduction is not None

    @property
    def needs_params(self) -> bool:
        return self.max_params is not None or self.min_params_reduction is not None

    @property
    def needs_latency(self) -> bool:
        return self.max_latency_ms is not None or self.min_latency_reduction is not None


@dataclass
class StopMeasures:
    """What a step measured for its stop condition (``None``: not needed); saved as ``stop.json``."""

    validation_accuracy: float | None = None
    macs: int | None = None
    params: int | None = None
    metric: float | None = None
    metric_name: str | None = None
    latency_ms: float | None = None
    latency_reduction: float | None = None  # starting-model / step latency, timed side by side


@dataclass
class StopCheck:
    """One step's measurements and verdict: ``satisfied`` (the limits hold), ``failed`` (which limit
    not, and by how much), ``reached`` (the target it reached)."""

    step: int
    satisfied: bool
    reached: str | None = None
    failed: str | None = None
    accuracy_drop: float | None = None
    measures: StopMeasures = field(default_factory=StopMeasures)


@dataclass
class Reference:
    """The model the steps start from, as the condition compares against."""

    validation_accuracy: float | None = None
    macs: int | None = None
    params: int | None = None


class Stopper:
    """Follows the steps of one run through a :class:`StopCondition` (used by the pruning loops)."""

    def __init__(self, condition: StopCondition, reference: Reference) -> None:
        self.condition, self.reference = condition, reference
        self.checks: list[StopCheck] = []
        self.last_good_step: int | None = None
        self.stopped_at: int | None = None
        self.stop_reason: str | None = None
        self._failing: list[StopCheck] = []

    @property
    def kept_step(self) -> int | None:
        """The step whose model the run returns (``None``: the model before step 0)."""
        if self.condition.restore_best:
            return self.last_good_step
        return self.checks[-1].step if self.checks else None

    def complete(self, measures: StopMeasures) -> bool:
        """Whether ``measures`` hold everything the condition compares."""
        c = self.condition
        return not ((c.needs_accuracy and measures.validation_accuracy is None) or (c.needs_macs and measures.macs is None)
                    or (c.needs_params and measures.params is None)
                    or (c.max_latency_ms is not None and measures.latency_ms is None)
                    or (c.min_latency_reduction is not None and measures.latency_reduction is None)
                    or (c.metric is not None and (measures.metric is None or measures.metric_name != c.metric_name)))

    def observe(self, step: int, measures: StopMeasures) -> bool:
        """Judge ``step``; ``True`` when the run stops after it."""
        check = self._judge(step, measures)
        self.checks.append(check)
        if check.satisfied:
            self.last_good_step, self._failing = step, []
            if check.reached is not None:
                return self._stop(step, f"step {step} reached the target: {check.reached}")
            return False
        self._failing.append(check)
        if check.reached is not None or len(self._failing) > self.condition.patience:
            return self._stop(step, f"{self._failures()}; {self._kept()}")
        return False

    def finish(self, steps: int) -> None:
        """Record how a run that was not stopped ended (``steps``: how many its schedule has)."""
        if self.stopped_at is not None:
            return
        if self._failing:
            self.stop_reason = f"the schedule ended after {self._failures()}; {self._kept()}"
        else:
            self.stop_reason = f"the schedule ended after its {steps} step(s) with the condition still satisfied"
        if self.condition.targets():
            log.warning("stop condition: the schedule ended before %s was reached; raise the pruner's target (e.g. ratio=0.9) "
                        "or its steps so that the condition can end the run", " or ".join(self.condition.targets()))

    def _stop(self, step: int, reason: str) -> bool:
        self.stopped_at, self.stop_reason = step, reason
        log.info("stop condition: %s", reason)
        return True

    def _failures(self) -> str:
        first, last = self._failing[0], self._failing[-1]
        which = f"step {last.step}" if first is last else f"steps {first.step}–{last.step}"
        return f"{which} failed: {last.failed}" + (f" (and reached {last.reached})" if last.reached else "")

    def _kept(self) -> str:
        if not self.condition.restore_best:
            return "kept the last step run (restore_best=False)"
        if self.last_good_step is None:
            return "no step satisfied the condition, so the model before step 0 is kept"
        return f"kept step {self.last_good_step}, the last that satisfied it"

    def _judge(self, step: int, m: StopMeasures) -> StopCheck:
        c, ref = self.condition, self.reference
        failed = drop = None
        if c.max_accuracy_drop is not None and m.validation_accuracy is not None and ref.validation_accuracy is not None:
            drop = 100.0 * (ref.validation_accuracy - m.validation_accuracy)
            if drop > c.max_accuracy_drop + _EPS:
                failed = (f"validation accuracy {m.validation_accuracy:.2%} is {drop:.2f} points below the starting model's "
                          f"{ref.validation_accuracy:.2%} (max_accuracy_drop={c.max_accuracy_drop})")
        return StopCheck(step, failed is None, self._reached(m), failed, drop, m)

    def _reached(self, m: StopMeasures) -> str | None:
        c, ref = self.condition, self.reference
        if c.max_macs is not None and m.macs is not None and m.macs <= c.max_macs:
            return f"MACs {m.macs:,} ≤ max_macs {c.max_macs:,}"
        if c.min_macs_reduction is not None and m.macs and ref.macs and ref.macs / m.macs >= c.min_macs_reduction:
            return f"MACs reduction {ref.macs / m.macs:.3f}× ≥ min_macs_reduction {c.min_macs_reduction}×"
        if c.max_params is not None and m.params is not None and m.params <= c.max_params:
            return f"parameters {m.params:,} ≤ max_params {c.max_params:,}"
        if c.min_params_reduction is not None and m.params and ref.params and ref.params / m.params >= c.min_params_reduction:
            return f"parameter reduction {ref.params / m.params:.3f}× ≥ min_params_reduction {c.min_params_reduction}×"
        if c.max_latency_ms is not None and m.latency_ms is not None and m.latency_ms <= c.max_latency_ms:
            return f"latency {m.latency_ms:.4g} ms ≤ max_latency_ms {c.max_latency_ms:.4g}"
        if c.min_latency_reduction is not None and m.latency_reduction is not None and m.latency_reduction >= c.min_latency_reduction:
            return f"latency reduction {m.latency_reduction:.3f}× ≥ min_latency_reduction {c.min_latency_reduction}×"
        if c.metric_target is not None and m.metric is not None and m.metric <= c.metric_target:
            return f"{c.metric_name} {m.metric:.6g} ≤ metric_target {c.metric_target:.6g}"
        return None


@dataclass
class Measuring:
    """How a loop measures a model for its condition: validation accuracy (a fraction), MACs, parameters,
    latency (``(ms, reduction)``, see :func:`latency_measuring`)."""

    validate: Callable[[nn.Module], float | None] | None
    macs: Callable[[nn.Module], int] | None
    params: Callable[[nn.Module], int]
    latency: Callable[[nn.Module], tuple[float, float | None]] | None = None


def latency_measuring(condition: StopCondition, example_inputs: Any, reference: nn.Module | None) -> Callable[[nn.Module], tuple[float, float | None]]:
    """``model -> (median ms, reduction)`` on the condition's runtime; the reduction (``reference`` ms /
    model ms, timed side by side, interleaved) only when ``min_latency_reduction`` is set (then ``reference`` is required)."""
    if condition.min_latency_reduction is not None and reference is None:
        raise ValueError("min_latency_reduction is timed against the starting model: pass it as reference")
    inputs = batched(as_args(example_inputs), condition.latency_batch_size)
    runtime, threads = condition.latency_runtime, condition.latency_threads

    def latency(model: nn.Module) -> tuple[float, float | None]:
        was_training = model.training
        model.eval()
        try:
            if reference is None:
                return time_side_by_side({"model": model}, inputs, runtime, threads)["model"].median_ms, None
            t = time_side_by_side({"reference": reference, "model": model}, inputs, runtime, threads)
            return t["model"].median_ms, t["reference"].median_ms / t["model"].median_ms
        finally:
            model.train(was_training)
    return latency


def start(condition: StopCondition, model: nn.Module, how: Measuring, where: str) -> Stopper:
    """A :class:`Stopper` with the reference values measured on ``model`` (the one the steps start from).

    ``where`` names the call for error messages (e.g. ``"prune_finetune_structured"``).
    """
    if condition.needs_accuracy and how.validate is None:
        raise ConfigError(f"{where}: stop.max_accuracy_drop is measured on a validation split, but none was given; pass val= "
                          f"(a validation split, never the test set) or validate_fn=")
    if condition.needs_macs and how.macs is None:
        raise ConfigError(f"{where}: stop.max_macs / min_macs_reduction need the model's MACs; pass example_inputs= (a batch of inputs)")
    if condition.needs_latency and how.latency is None:
        raise ConfigError(f"{where}: stop.max_latency_ms / min_latency_reduction time the pruned model, which needs example_inputs= "
                          f"(a batch of inputs) and structured pruning (a masked model runs at dense speed)")
    return Stopper(condition, Reference(
        validation_accuracy=_accuracy(how.validate, model, where) if condition.needs_accuracy else None,
        macs=how.macs(model) if condition.min_macs_reduction is not None and how.macs is not None else None,
        params=how.params(model) if condition.min_params_reduction is not None else None,
    ))


def measure(stopper: Stopper, folder: Path | None, load: Callable[[], nn.Module], how: Measuring, where: str, *,
            fresh: bool = False) -> StopMeasures:
    """A step's measurements: read from ``folder/stop.json`` when complete (and not ``fresh``: a step
    that just ran), else measured on ``load()`` and saved there."""
    path = folder / "stop.json" if folder is not None else None
    if path is not None and path.exists() and not fresh:
        try:
            saved = StopMeasures(**{f.name: read_json(path, "stop measurements").get(f.name) for f in fields(StopMeasures)})
            if stopper.complete(saved):
                return saved
        except CheckpointError as exc:
            log.warning("%s; measuring again", exc)
    model, c = load(), stopper.condition
    latency_ms, reduction = how.latency(model) if c.needs_latency and how.latency is not None else (None, None)
    measures = StopMeasures(
        validation_accuracy=_accuracy(how.validate, model, where) if c.needs_accuracy else None,
        macs=how.macs(model) if c.needs_macs and how.macs is not None else None,
        params=how.params(model) if c.needs_params else None,
        metric=float(c.metric(model)) if c.metric is not None else None,
        metric_name=c.metric_name if c.metric is not None else None,
        latency_ms=latency_ms,
        latency_reduction=reduction,
    )
    if path is not None and distributed.is_main_process():
        write_json(path, asdict(measures))
    return measures


def _accuracy(validate: Callable[[nn.Module], float | None] | None, model: nn.Module, where: str) -> float:
    value = validate(model) if validate is not None else None
    if value is None or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{where}: the validation accuracy for the stop condition was {shorten(value)}; validate_fn must "
                          f"return a fraction in [0, 1] (e.g. 0.91 for 91%)")
    return float(value)


def stop_summary(result: Any) -> dict[str, Any]:
    """How a pruning loop's run ended, as JSON (for run summaries): a result with ``last_good_step``,
    ``stopped_at``, ``stop_reason`` and ``stop_checks`` (:class:`~prunekit.training.StructuredFinetuneResult`
    or :class:`~prunekit.training.prune_finetune.PruneFinetuneResult`)."""
    return {"last_good_step": result.last_good_step, "stopped_at": result.stopped_at, "stop_reason": result.stop_reason,
            "checks": [asdict(c) for c in result.stop_checks]}
