"""The settings of a structured pruner: targets, allocation, channel rounding and the runtime latency is measured on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator

from prunekit._settings import MAX_BATCH, Seed, Settings
from prunekit.deployment.runtimes import RUNTIMES
from prunekit.errors import ConfigError
from prunekit.pruners.latency import RuntimeTarget

#: The target fields of :class:`StructuredConfig` (give one).
TARGETS = ("ratio", "macs_reduction", "max_macs", "max_params", "latency_reduction", "max_latency_ms")
#: Environment variable that pins ``round_to="auto"`` to one channel step (e.g. for reproducible runs across machines).
CHANNEL_STEP_ENV = "PRUNEKIT_CHANNEL_STEP"


def pinned_channel_step() -> int | None:
    """The channel step ``$PRUNEKIT_CHANNEL_STEP`` pins, or None when it is unset."""
    value = os.environ.get(CHANNEL_STEP_ENV)
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_BATCH:
        raise ConfigError(f"${CHANNEL_STEP_ENV}={value!r} is not a channel step; set an integer in [1, {MAX_BATCH}] or unset it")
    return int(value)


class StructuredConfig(Settings):
    """Settings of a structured pruner (also the ``prune`` section of a recipe).

    Give exactly one target: ``ratio`` (fraction of channels removed; with ``layer_ratios`` for
    fnmatch-pattern overrides), ``macs_reduction`` (2.0 = half the MACs), ``max_macs``,
    ``max_params``, ``latency_reduction`` (2.0 = twice as fast, measured) or ``max_latency_ms``.
    Resource targets are met within ``tolerance`` (relative; at least 5% for latency, which is
    measured). Latency is that of ``runtime`` (default: onnxruntime when installed, else torch) at
    ``batch_size`` and ``threads`` on this machine; latency targets allocate by a knapsack over
    measured per-layer tables (``allocation="knapsack"``). ``round_to`` keeps channel counts
    multiples of a hardware block; ``"auto"`` (the default) takes the step of the runtime's measured
    channel staircase (``$PRUNEKIT_CHANNEL_STEP`` pins it); ``layer_round_to`` overrides it per layer
    pattern (e.g. ``{"layer1.*": 8}`` so a 16-channel stage can still be halved under ``round_to=16``).
    ``measure_speedup`` times dense and pruned side by side on the runtime after pruning (default:
    for latency targets and whenever ``runtime`` is given). ``attention``: ``"auto"`` (default)
    chooses whole ``"heads"`` or ``"head_dims"`` per attention block by the target (more MACs
    removed at a ratio; less importance removed per unit of the target's cost for resource
    targets, latency priced by the runtime's tables); a mode or ``{block pattern: mode}`` (as
    :attr:`PruneResult.attention` reports) forces it.
    ``grouped_conv``: grouped convolutions lose channel stripes (``"channels"``: the same channel of
    every group, ``groups`` kept) or whole ``"groups"``; ``"auto"`` (default) chooses per grouped
    conv the one removing less importance per unit of cost removed (MACs at a ratio, else the
    target's metric; ties: the one removing more), and whole groups where a conv's stripes merge
    into one unit (:mod:`prunekit.pruners.grouped_conv`; :attr:`PruneResult.grouped_conv` reports it).
    """


    ratio: float | None = Field(None, ge=0.0, lt=1.0)
    layer_ratios: dict[str, float] = Field(default_factory=dict)
    macs_reduction: float | None = Field(None, ge=1.0, le=1e6)
    max_macs: int | None = Field(None, gt=0, le=2**53)
    max_params: int | None = Field(None, gt=0, le=2**53)
    latency_reduction: float | None = Field(None, ge=1.0, le=1e3)
    max_latency_ms: float | None = Field(None, gt=0.0, le=1e7)
    runtime: str | None = None
    batch_size: int = Field(1, ge=1, le=MAX_BATCH)
    threads: int = Field(1, ge=1, le=1024)
    measure_speedup: bool | None = None
    allocation: Literal["uniform", "global", "knapsack"] | None = None
    max_layer_ratio: float = Field(0.9, gt=0.0, le=1.0)
    round_to: int | Literal["auto"] = Field("auto")
    layer_round_to: dict[str, int] = Field(default_factory=dict)
    ignored_layers: tuple[str, ...] = ()
    importance: str = "l2"
    reduction: Literal["mean", "sum", "max", "first"] = "mean"
    normalization: Literal["none", "mean", "max", "sum", "standardize"] = "mean"
    tolerance: float = Field(0.02, gt=0.0, lt=0.5)
    steps: int = Field(1, ge=1, le=1000)
    schedule: Literal["linear", "cubic"] = "linear"
    attention: Literal["auto", "heads", "head_dims"] | dict[str, Literal["heads", "head_dims"]] = "auto"
    grouped_conv: Literal["auto", "channels", "groups"] = "auto"
    seed: Seed = 0

    @model_validator(mode="after")
    def _one_target(self) -> StructuredConfig:
        targets = [n for n in TARGETS if getattr(self, n) is not None]
        if len(targets) > 1:
            raise ValueError(f"give one target, not {targets}")
        if not targets and not self.layer_ratios:
            raise ValueError(f"no target: set layer_ratios or one of {', '.join(TARGETS)}")
        if isinstance(self.round_to, int) and not 1 <= self.round_to <= MAX_BATCH:
            raise ValueError(f"round_to must be 'auto' or an integer in [1, {MAX_BATCH}], got {self.round_to}")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.runtime!r}; choose one of {sorted(RUNTIMES)}")
        if self.allocation == "knapsack" and not self.resource_target:
            raise ValueError("allocation='knapsack' needs a resource target (macs_reduction, max_macs, max_params, latency_reduction or max_latency_ms)")
        bad = {k: v for k, v in self.layer_ratios.items() if not 0.0 <= v < 1.0}
        if bad:
            raise ValueError(f"layer_ratios must be in [0, 1): {bad}")
        bad = {k: v for k, v in self.layer_round_to.items() if not 1 <= v <= MAX_BATCH}
        if bad:
            raise ValueError(f"layer_round_to values must be ≥ 1 (and at most {MAX_BATCH}): {bad}")
        return self

    @property
    def graph_attention(self) -> str | dict[str, str]:
        """``attention`` for building one graph (``"auto"`` builds whole heads: the choice needs a plan, see StructuredPruner)."""
        return "heads" if self.attention == "auto" else self.attention

    @property
    def resource_target(self) -> bool:
        return any(getattr(self, n) is not None for n in TARGETS[1:])

    @property
    def latency_target(self) -> bool:
        return self.latency_reduction is not None or self.max_latency_ms is not None

    @property
    def resolved_allocation(self) -> str:
        if self.allocation:
            return self.allocation
        return "knapsack" if self.latency_target else "global" if self.resource_target else "uniform"

    @property
    def resolved_measure_speedup(self) -> bool:
        return self.measure_speedup if self.measure_speedup is not None else self.latency_target or self.runtime is not None

    @property
    def runtime_target(self) -> RuntimeTarget:
        return RuntimeTarget(self.runtime, self.batch_size, self.threads)

    @property
    def target_metric(self) -> str:
        """The cost metric a resource target is given in (``"macs"``, ``"params"`` or ``"latency"``, in ms)."""
        return "latency" if self.latency_target else "params" if self.max_params is not None else "macs"

    def final_cost(self, origin: Mapping[str, float]) -> float:
        """The resource value the last step must reach, given the original model's values."""
        if self.max_params is not None:
            return self.max_params
        if self.max_latency_ms is not None:
            return self.max_latency_ms
        if self.latency_reduction is not None:
            return origin["latency"] / self.latency_reduction
        return self.max_macs if self.max_macs is not None else origin["macs"] / float(self.macs_reduction or 1.0)

    def resolved_round_to(self) -> int:
        """``round_to``, with ``"auto"`` read from ``$PRUNEKIT_CHANNEL_STEP`` or the runtime's measured staircase."""
        if isinstance(self.round_to, int):
            return self.round_to
        return pinned_channel_step() or self.runtime_target.step()


__all__ = ["CHANNEL_STEP_ENV", "TARGETS", "StructuredConfig", "pinned_channel_step"]
