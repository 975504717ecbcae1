"""What a per-group ratio search works on: the budget, scored candidates, and the JSONL that makes it resumable.

A strategy in :data:`SEARCH_STRATEGIES` is a function ``(problem) -> {group index: units removed}``.
It proposes candidates to :meth:`SearchProblem.evaluate`, which prunes a copy, re-calibrates its
BatchNorm statistics on a few training batches and measures the accuracy on a few validation
batches (EagleEye's adaptive-BN score), timing each one. Every evaluated candidate is appended to
the strategy's JSONL; on a rerun a candidate found there is answered from it, not evaluated again,
so a seeded strategy replays its first candidates and continues where a killed run stopped.
:meth:`SearchProblem.project` turns per-group preferences into counts that meet the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from prunekit._registry import Registry
from prunekit._settings import MAX_COUNT, Seed, Settings
from prunekit.analysis.group_space import (Batch, GroupSpace, RecordCache, data_fingerprint, model_fingerprint, recalibrate_bn,
                                           settings_fingerprint)
from prunekit.analysis.group_sensitivity import StructuredSensitivity, scan_groups
from prunekit.errors import ConfigError
from prunekit.metrics.accuracy import evaluate
from prunekit.progress import track

log = logging.getLogger(__name__)

Strategy = Callable[["SearchProblem"], dict[int, int]]

#: name → ``(problem) -> {group index: units removed}``: how per-group ratios are searched under a budget.
SEARCH_STRATEGIES: Registry[Strategy] = Registry("search strategy")


class SearchConfig(Settings):
    """Settings of a per-group ratio search (also the ``prune.search`` section of a structured recipe).

    ``trials`` candidates are scored (evolutionary and rl; sensitivity scores its one answer) by
    the accuracy on ``val_batches`` validation batches after re-estimating BatchNorm statistics on
    ``bn_batches`` training batches. ``sampler`` is optuna's (``nsga2``: a genetic algorithm with
    ``population`` candidates per generation; ``tpe``; ``random``). ``ratios`` are those the
    sensitivity strategy scans per group.
    """

    strategy: str = "evolutionary"
    trials: int = Field(40, ge=1, le=MAX_COUNT)
    seed: Seed = 0
    bn_batches: int = Field(4, ge=0, le=MAX_COUNT)
    val_batches: int = Field(4, ge=1, le=MAX_COUNT)
    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"
    population: int = Field(8, ge=2, le=10_000)
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        return SEARCH_STRATEGIES.check(value)

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values or any(not 0.0 < v < 1.0 for v in values) or len(set(values)) != len(values):
            raise ValueError(f"ratios must be distinct numbers in (0, 1), got {list(values)}")
        return values


@dataclass(frozen=True)
class Trial:
    """One scored candidate: its removal counts, estimated cost, validation accuracy/loss and seconds to score it."""

    number: int
    counts: dict[int, int]
    cost: float
    accuracy: float
    loss: float
    seconds: float
    cached: bool = False  # answered from the JSONL of an earlier run

    def record(self) -> dict[str, Any]:
        return {"kind": "trial", "key": counts_key(self.counts), "counts": sorted([g, k] for g, k in self.counts.items() if k),
                "cost": self.cost, "accuracy": self.accuracy, "loss": self.loss, "seconds": self.seconds}


def counts_key(counts: Mapping[int, int]) -> str:
    return ",".join(f"{g}:{k}" for g, k in sorted(counts.items()) if k)


class SearchProblem:
    """The budget, the scoring batches and the trial log of one search; see the module docstring."""

    def __init__(self, space: GroupSpace, config: SearchConfig, *, bn: list[Batch], val: list[Batch], cache_dir: str | Path | None = None,
                 device: str | torch.device | None = None, progress: bool = True) -> None:
        if not val:
            raise ConfigError("a ratio search needs validation batches (val=...); pass the validation split, never the test set")
        self.space, self.config, self.bn, self.val, self.progress = space, config, bn, val, progress
        self.device = device if device is not None else next((p.device for p in space.model.parameters()), torch.device("cpu"))
        self.metric = space.metric
        self.goal = space.goal()
        self.dense_cost = space.cost({})
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.trials: list[Trial] = []
        self.evaluated = 0
        self._known: dict[str, dict[str, Any]] = {}
        self._log: RecordCache | None = None
        if self.cache_dir is not None:
            self._log = RecordCache(self.cache_dir / f"{config.strategy}_trials.jsonl", self._header())
            self._known = {r["key"]: r for r in self._log.load() if r.get("kind") == "trial"}
        cheapest = space.cost(space.max_counts())
        if cheapest > self.goal:
            raise ConfigError(f"the budget {self.metric} ≤ {self.goal:.4g} cannot be met: every group at max_layer_ratio="
                              f"{space.config.max_layer_ratio} still costs {cheapest:.4g}; ask for less or raise max_layer_ratio")

    def _header(self) -> dict[str, Any]:
        settings = {"structured": self.space.config.model_dump(mode="json"), "search": self.config.model_dump(mode="json", exclude={"trials"}),
                    "round_to": self.space.round_to, "inputs": [list(getattr(x, "shape", ())) for x in self.space.inputs]}
        return {"what": f"{self.config.strategy} search", "version": 1, "model": model_fingerprint(self.space.model),
                "data": data_fingerprint(self.bn, self.val), "settings": settings_fingerprint(settings), "info": {"goal": self.goal, "metric": self.metric}}

    def steps(self, n: int, description: str) -> Iterator[int]:
        """``range(n)`` with a progress bar."""
        return track(range(n), description, enabled=self.progress)

    def cost(self, counts: Mapping[int, int]) -> float:
        return self.space.cost(counts)

    def project(self, preference: Mapping[int, float]) -> dict[int, int] | None:
        """Counts ``ratio_g = min(1, α · preference_g)`` (then capped and rounded) with the smallest α meeting the budget.

        Preferences lie in [0, 1]; a group at 0 is never pruned. None when even α → ∞ misses the budget.
        """
        w = {c.index: min(1.0, max(0.0, float(preference.get(c.index, 0.0)))) for c in self.space.candidates}

        def counts_at(alpha: float) -> dict[int, int]:
            return {g: k for g, k in self.space.counts({g: min(1.0, alpha * v) for g, v in w.items()}).items() if k}

        if self.cost({}) <= self.goal:
            return {}
        positive = [v for v in w.values() if v > 0]
        if not positive:
            return None
        lo, hi = 0.0, 1.0 / min(positive)
        if self.cost(counts_at(hi)) > self.goal:
            return None
        for _ in range(40):
            mid = (lo + hi) / 2
            if self.cost(counts_at(mid)) <= self.goal:
                hi = mid
            else:
                lo = mid
        return counts_at(hi)

    def evaluate(self, counts: Mapping[int, int]) -> Trial:
        """Score ``counts`` (answered from the log when an earlier run or this one already did)."""
        counts = {int(g): int(k) for g, k in counts.items() if k}
        key = counts_key(counts)
        known = self._known.get(key)
        if known is not None:
            trial = Trial(len(self.trials), counts, known["cost"], known["accuracy"], known["loss"], known["seconds"], cached=True)
        else:
            start = time.perf_counter()
            model = recalibrate_bn(self.space.pruned_copy(counts), self.bn, self.device)
            ev = evaluate(model, self.val, device=self.device)
            trial = Trial(len(self.trials), counts, self.cost(counts), ev.accuracy, ev.loss, time.perf_counter() - start)
            self.evaluated += 1
            self._known[key] = trial.record()
            if self._log is not None:
                self._log.append(self._known[key])
            log.debug("candidate %d: %s=%.4g, accuracy %.4f (%.2f s)", trial.number, self.metric, trial.cost, trial.accuracy, trial.seconds)
        self.trials.append(trial)
        return trial

    def best(self) -> Trial:
        """The highest accuracy so far (ties: lower loss, then the earlier trial)."""
        if not self.trials:
            raise ConfigError("the search evaluated no candidate; give trials >= 1")
        return max(self.trials, key=lambda t: (t.accuracy, -t.loss, -t.number))

    def sensitivity(self) -> StructuredSensitivity:
        """The per-group sensitivity table on the search's batches (cached beside the trial log)."""
        cache = self.cache_dir / "sensitivity_table.jsonl" if self.cache_dir is not None else None
        return scan_groups(self.space, self.val, self.config.ratios, cache=cache, calibration_batches=self.bn, device=self.device,
                           progress=self.progress, rank=0, world_size=1)
