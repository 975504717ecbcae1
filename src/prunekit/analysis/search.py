"""Per-group ratio search under a budget (MACs, params or latency): the strategies of :data:`SEARCH_STRATEGIES`.

>>> result = search_ratios(model, x, StructuredConfig(macs_reduction=2.0), SearchConfig(strategy="evolutionary", trials=40),
...                        train=train_batches, val=val_batches, cache_dir="search")
>>> result.layer_ratios                              # {"layer1.0.conv1": 0.3125, ...}
>>> pruned = result.prune(model, x)                  # the normal StructuredPruner surgery, same units
>>> result.seconds_per_candidate

The budget is the structured config's resource target; the answer is per-group removal counts
(:attr:`SearchResult.plan`), also as ``layer_ratios`` in :attr:`SearchResult.config`, a
:class:`~prunekit.pruners.structured.StructuredConfig` that prunes exactly those units.
Candidates are scored on validation batches (never the test set) after BatchNorm re-calibration
on training batches; with ``cache_dir`` every scored candidate is kept, so a rerun (after a kill,
or with more ``trials``) does not score it again. Same seed, same data: same answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit.analysis.search_strategies  # noqa: F401  (registers the strategies)
from prunekit.analysis.group_space import Batch, GroupSpace, first_batches
from prunekit.analysis.search_problem import SEARCH_STRATEGIES, SearchConfig, SearchProblem, Trial
from prunekit.errors import ConfigError
from prunekit.importance.calibration import Calibration
from prunekit.pruners.plan import Plan
from prunekit.pruners.result import PruneResult
from prunekit.pruners.structured import StructuredPruner
from prunekit.pruners.structured_config import TARGETS, StructuredConfig

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """The chosen per-group removal counts, what they cost and score, and every candidate scored on the way."""

    strategy: str
    metric: str
    goal: float
    dense_cost: float
    cost: float
    counts: dict[int, int]
    ratios: dict[int, float]
    groups: dict[int, str]
    layer_ratios: dict[str, float] | None
    accuracy: float
    loss: float
    trials: list[Trial]
    evaluated: int
    seconds: float
    round_to: int
    plan: Plan = field(default_factory=Plan)
    config: StructuredConfig | None = None

    @property
    def reused(self) -> int:
        """Candidates answered from the log of an earlier run (or repeated within this one)."""
        return len(self.trials) - self.evaluated

    @property
    def seconds_per_candidate(self) -> float:
        """Mean seconds to score one candidate (pruned copy, BatchNorm re-calibration, validation)."""
        fresh = [t.seconds for t in self.trials if not t.cached] or [t.seconds for t in self.trials]
        return sum(fresh) / len(fresh) if fresh else 0.0

    def prune(self, model: nn.Module, example_inputs: Any) -> PruneResult:
        """Apply the searched ratios to ``model`` (the searched model, or an identical copy) in place with :class:`StructuredPruner`."""
        if self.config is None:
            raise ConfigError("some group has no module of its own to name in layer_ratios; apply result.plan instead: "
                              "result.plan.apply(DependencyGraph.build(model, x))")
        return StructuredPruner(self.config).prune(model, example_inputs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (ratios by group name, cost, score, seconds per candidate, every trial)."""
        return {"strategy": self.strategy, "metric": self.metric, "goal": self.goal, "dense_cost": self.dense_cost, "cost": self.cost,
                "reduction": self.dense_cost / self.cost if self.cost else None, "ratios": {self.groups[g]: r for g, r in self.ratios.items()},
                "layer_ratios": self.layer_ratios, "accuracy": self.accuracy, "loss": self.loss, "evaluated": self.evaluated,
                "reused": self.reused, "seconds": self.seconds, "seconds_per_candidate": self.seconds_per_candidate, "round_to": self.round_to,
                "trials": [{**asdict(t), "counts": {str(g): k for g, k in t.counts.items()}} for t in self.trials]}


def search_ratios(model: nn.Module, example_inputs: Any, config: StructuredConfig, search: SearchConfig | None = None, *,
                  val: Iterable[Batch], train: Iterable[Batch] | None = None, cache_dir: str | Path | None = None,
                  calibration: Calibration | None = None, device: str | torch.device | None = None, progress: bool = True) -> SearchResult:
    """Search per-group ratios of ``model`` meeting ``config``'s resource target; see the module docstring.

    ``val``: validation batches (the first ``search.val_batches`` score candidates); ``train``:
    training batches (the first ``search.bn_batches`` re-calibrate BatchNorm). ``model`` is not changed.
    """
    search = search or SearchConfig()
    if search.bn_batches and train is None:
        raise ConfigError(f"search.bn_batches={search.bn_batches} re-calibrates BatchNorm on training batches: pass train=..., or set bn_batches=0")
    start = time.perf_counter()
    space = GroupSpace(model, example_inputs, config, calibration)
    problem = SearchProblem(space, search, bn=first_batches(train, search.bn_batches), val=first_batches(val, search.val_batches),
                            cache_dir=cache_dir, device=device, progress=progress)
    counts = {g: k for g, k in SEARCH_STRATEGIES.get(search.strategy)(problem).items() if k}
    chosen = next((t for t in reversed(problem.trials) if t.counts == counts), None) or problem.evaluate(counts)
    layer_ratios = space.layer_ratios(counts)
    result = SearchResult(
        strategy=search.strategy, metric=problem.metric, goal=problem.goal, dense_cost=problem.dense_cost, cost=problem.cost(counts),
        counts=counts, ratios=space.ratios(counts), groups=dict(space.names), layer_ratios=layer_ratios, accuracy=chosen.accuracy,
        loss=chosen.loss, trials=list(problem.trials), evaluated=problem.evaluated, seconds=time.perf_counter() - start,
        round_to=space.round_to, plan=space.plan(counts), config=None if layer_ratios is None else searched_config(config, layer_ratios, space.round_to),
    )
    log.info("%s search: %s %.4g of %.4g (goal %.4g), accuracy %.4f on the search batches; %d candidates scored (%d reused), %.2f s each",
             search.strategy, result.metric, result.cost, result.dense_cost, result.goal, result.accuracy, result.evaluated, result.reused,
             result.seconds_per_candidate)
    return result


def searched_config(base: StructuredConfig, layer_ratios: dict[str, float], round_to: int) -> StructuredConfig:
    """``base`` with its target replaced by ``layer_ratios`` (unlisted groups: 0) and ``round_to`` pinned to the searched step."""
    data = base.model_dump(include=set(StructuredConfig.model_fields))
    data.update({name: None for name in TARGETS})
    data.update(ratio=0.0, layer_ratios=layer_ratios, round_to=round_to, allocation=None)
    return StructuredConfig(**data)


__all__ = ["SEARCH_STRATEGIES", "SearchConfig", "SearchResult", "Trial", "search_ratios", "searched_config"]
