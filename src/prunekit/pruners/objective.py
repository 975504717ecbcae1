"""The objective: what a structured plan costs, estimated and measured.

An :class:`Objective` is bound to one dependency graph, its example inputs and one resource, a
:class:`CostMetric`. :meth:`Objective.cost` is the metric's estimate of a plan (for MACs and params
the analytic cost model: cheap enough for searches that try thousands of plans);
:meth:`Objective.measure` is the real value of the pruned model, which the pruner checks the
chosen plan with (on a pruned copy, cached per plan). MACs and params are registered in
:data:`COST_METRICS`; a measured cost (latency on a runtime, :mod:`prunekit.pruners.latency`) is
passed as a :class:`CostMetric` bound to its runtime and reference model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from prunekit._registry import Registry
from prunekit.errors import StructureError
from prunekit.metrics import count_macs, effective_parameters
from prunekit.pruners.plan import Plan
from prunekit.structured.cost import CostModel
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.shapes import Invalid
from prunekit.structured.surgery import apply_plan


@dataclass(frozen=True)
class CostMetric:
    """One resource: ``estimate(cost_model, removed_mask)`` of a plan, ``measure(model, inputs)`` of a model.

    ``exact``: the estimate equals the measurement, so a plan is checked without a pruned copy.
    ``from_sizes(cost_model, kept sizes)``: the estimate from the cost model's factor sizes, when the
    metric depends on nothing else (searches then price removal counts without building plans).
    """

    estimate: Callable[[CostModel, np.ndarray], float]
    measure: Callable[[nn.Module, tuple[Any, ...]], float]
    exact: bool = False
    from_sizes: Callable[[CostModel, np.ndarray], float] | None = None


def _dense_macs(model: nn.Module, inputs: tuple[Any, ...]) -> float:
    return float(count_macs(model, inputs).dense)


def _params(model: nn.Module, inputs: tuple[Any, ...]) -> float:
    """``count_parameters(model).params`` without its nonzero counts (no forward, no pass over the values)."""
    return float(sum(p.numel() for p in effective_parameters(model).values()))


#: name → cost metric a structured target can be given in.
COST_METRICS: Registry[CostMetric] = Registry("cost metric")
COST_METRICS.add("macs", CostMetric(lambda model, removed: model.cost(removed)["macs"], _dense_macs,
                                    from_sizes=lambda model, sizes: model.cost_of_sizes(sizes)["macs"]),
                 description="multiply-accumulates per forward of the example inputs (counted like prunekit.metrics.count_macs)")
COST_METRICS.add("params", CostMetric(lambda model, removed: model.cost(removed)["params"], _params, exact=True,
                                      from_sizes=lambda model, sizes: model.cost_of_sizes(sizes)["params"]),
                 description="parameters (exact from the cost model)")


def measure_model(metric: str, model: nn.Module, inputs: tuple[Any, ...]) -> float:
    """The real value of ``metric`` for ``model`` (an unpruned model, or the result of a step)."""
    return COST_METRICS.get(metric).measure(model, inputs)


class Objective:
    """Cost of plans over ``graph`` in one metric (a :data:`COST_METRICS` name or a :class:`CostMetric`); see the module docstring."""

    def __init__(self, graph: DependencyGraph, inputs: tuple[Any, ...], metric: str | CostMetric = "macs", *,
                 cost_model: CostModel | None = None) -> None:
        self.graph = graph
        self.inputs = inputs
        self._cost = COST_METRICS.get(metric) if isinstance(metric, str) else metric
        self._model: CostModel | None = cost_model
        self._measured: dict[tuple[tuple[int, tuple[int, ...]], ...], float] = {}

    @property
    def cost_model(self) -> CostModel:
        if self._model is None:
            self._model = CostModel(self.graph)
        return self._model

    def cost(self, plan: Plan) -> float:
        """The metric's estimate for ``plan``."""
        return float(self._cost.estimate(self.cost_model, plan.removed_mask(self.graph)))

    def counts_cost(self, scores: Mapping[int, np.ndarray]) -> Callable[[Mapping[int, int]], float] | None:
        """A fast ``cost(counts)``: the estimate of removing each group's ``counts[g]`` lowest ``scores``
        (what :meth:`Plan.from_counts` plans), from precomputed factor shrinkage; None if the metric
        has no ``from_sizes``."""
        from_sizes = self._cost.from_sizes
        if from_sizes is None:
            return None
        model = self.cost_model
        dense = model.dense_sizes()
        deltas = {g: model.removal_deltas(self.graph.groups[g].labels[np.argsort(s, kind="stable")]) for g, s in scores.items()}

        def cost(counts: Mapping[int, int]) -> float:
            sizes = dense - sum((deltas[g][k] for g, k in counts.items() if k), np.zeros_like(dense))
            return float(from_sizes(model, sizes))

        return cost

    def measure(self, plan: Plan) -> float:
        """The real value for ``plan``, from a pruned copy of the model (exact estimates need none)."""
        if self._cost.exact:
            return self.cost(plan)
        key = tuple(plan.removals.items())
        if key not in self._measured:
            removed = plan.removed_mask(self.graph)
            trial = copy.deepcopy(self.graph.model)
            try:
                apply_plan(self.graph, removed, self.graph.validate(removed), trial)
            except Invalid as exc:
                raise StructureError(f"the chosen plan would break the model: {exc}") from None
            self._measured[key] = float(self._cost.measure(trial, self.inputs))
        return self._measured[key]
