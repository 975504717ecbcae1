"""Latency as a structured pruning objective: per-layer tables for the estimate, the runtime for the truth.

:class:`LatencyModel` prices a plan on one runtime (:data:`prunekit.deployment.runtimes.RUNTIMES`)
as the sum of its conv/linear layers' measured latencies at their kept channel counts
(:func:`prunekit.deployment.latency_tables.measure_tables`, looked up through the cost model's
channel factors) plus a remainder: the whole model's measured latency minus its layers' sum (pooling,
additions, overheads). :func:`latency_metric` wraps it as a :class:`~prunekit.pruners.objective.CostMetric`
whose ``measure`` times a pruned model side by side with the reference model, so that a noisy
machine moves both alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from prunekit.deployment.latency_tables import LayerTable, measure_staircase, measure_tables, sample_grid
from prunekit.deployment.layer_probe import LayerConfig
from prunekit.deployment.runtimes import Call, default_runtime, prepare_on, time_side_by_side
from prunekit.metrics._inputs import batched
from prunekit.pruners.objective import CostMetric
from prunekit.structured.cost import CostModel
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.values import TensorMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeTarget:
    """Where latency is measured: runtime (None: the default), batch size, threads, table points per axis."""

    runtime: str | None = None
    batch_size: int = 1
    threads: int = 1
    points: int = 6

    @property
    def name(self) -> str:
        return self.runtime or default_runtime()

    def step(self, progress: bool = False) -> int:
        """The channel step of this runtime's measured staircase (cached per machine)."""
        return measure_staircase(self.name, self.batch_size, self.threads, progress=progress).step


@dataclass(frozen=True)
class _Site:
    module: str
    config: LayerConfig
    c_in: int | float  # factor id (int) or constant (float)
    c_out: int | float
    in_groups: int = 1  # c_in counts one group's inputs (a conv pruned by channel stripes): the layer has this many times more

    def inputs(self, values: np.ndarray) -> float:
        return _value(values, self.c_in) * self.in_groups


class LatencyModel:
    """Estimated latency (ms) of ``graph.model`` after a removal mask; see the module docstring."""

    def __init__(self, graph: DependencyGraph, target: RuntimeTarget, dense_ms: float, *, step: int, progress: bool = False) -> None:
        self.cost_model = CostModel(graph)
        self.sites = layer_sites(graph, self.cost_model)
        dense = self.cost_model.dense_sizes()
        requests: dict[LayerConfig, tuple[set[int], set[int]]] = {}
        for s in self.sites:
            grid_in = sample_grid(int(s.inputs(dense)), step, target.points, isinstance(s.c_in, int))
            grid_out = sample_grid(int(_value(dense, s.c_out)), step, target.points, isinstance(s.c_out, int))
            have = requests.setdefault(s.config, (set(), set()))
            have[0].update(grid_in)
            have[1].update(grid_out)
        self.tables: dict[LayerConfig, LayerTable] = measure_tables(
            {c: (sorted(i), sorted(o)) for c, (i, o) in requests.items()}, target.name, target.batch_size, target.threads, progress=progress)
        self.layers_dense_ms = self._layers(dense)
        self.remainder_ms = dense_ms - self.layers_dense_ms

    def _layers(self, values: np.ndarray) -> float:
        return float(sum(self.tables[s.config](s.inputs(values), _value(values, s.c_out)) for s in self.sites))

    def estimate(self, removed: np.ndarray) -> float:
        """Remainder plus the tables' latency of every layer at its kept channel counts."""
        return self.estimate_sizes(self.cost_model.factor_values(removed))

    def estimate_sizes(self, sizes: np.ndarray) -> float:
        """:meth:`estimate` from the cost model's kept factor sizes."""
        return max(1e-6, self.remainder_ms + self._layers(sizes))


def _value(values: np.ndarray, size: int | float) -> float:
    return float(size) if isinstance(size, float) else float(values[size])


def layer_sites(graph: DependencyGraph, cost_model: CostModel) -> list[_Site]:
    """Every plain conv/linear call of the traced model with its layer config and its channel factors (or fixed sizes)."""
    sites = []
    for call in graph.prop.leaf_calls:
        meta = call.node.args[0].meta.get("value") if call.node.args else None
        if not isinstance(meta, TensorMeta):
            continue
        stripes = call.node.name in graph.prop.stripe_convs
        config = LayerConfig.of(call.module, tuple(meta.shape), stripes=stripes)
        if config is None:
            continue
        c_out = cost_model.weight_size(call.path, 0)
        c_in = c_out if config.grouped else cost_model.weight_size(call.path, 1)
        sites.append(_Site(call.path, config, c_in, c_out, config.groups))
    return sites


class LatencyObjective:
    """The latency metric of one step: the table estimate and side-by-side measurements against ``reference``."""

    def __init__(self, graph: DependencyGraph, inputs: tuple[Any, ...], reference: Call, reference_ms: float, target: RuntimeTarget,
                 *, step: int, current_ms: float | None = None, progress: bool = False) -> None:
        self.target = target
        self.inputs = batched(inputs, target.batch_size)
        self.reference = reference
        self.reference_ms = reference_ms
        current_ms = current_ms if current_ms is not None else self.measure(graph.model, inputs)
        self.model = LatencyModel(graph, target, current_ms, step=step, progress=progress)
        log.info("latency model on %s: %.3g ms now (%.3g ms in %d conv/linear layers, %.3g ms elsewhere)", target.name, current_ms,
                 self.model.layers_dense_ms, len(self.model.sites), self.model.remainder_ms)

    def measure(self, model: nn.Module, inputs: tuple[Any, ...]) -> float:
        """``reference_ms`` × (model ÷ reference), both timed interleaved on the target runtime now."""
        t = time_side_by_side({"reference": self.reference, "model": prepare_on(self.target.name, model, self.inputs, self.target.threads)},
                              self.inputs, self.target.name, self.target.threads, repeats=9, min_time_s=0.5)
        return self.reference_ms * t["model"].median_ms / t["reference"].median_ms

    def metric(self) -> CostMetric:
        """The metric for an :class:`~prunekit.pruners.objective.Objective` built on ``self.model.cost_model``."""
        return CostMetric(lambda _cost_model, removed: self.model.estimate(removed), self.measure,
                          from_sizes=lambda _cost_model, sizes: self.model.estimate_sizes(sizes))


def prepare_reference(model: nn.Module, inputs: tuple[Any, ...], target: RuntimeTarget) -> Call:
    """``model`` (a snapshot) prepared on the target runtime at its batch size."""
    return prepare_on(target.name, model, batched(inputs, target.batch_size), target.threads)


def time_alone(call: Call, target: RuntimeTarget) -> float:
    """Median latency (ms) of a prepared ``call`` on the target runtime, timed alone."""
    return time_side_by_side({"model": call}, (), target.name, target.threads, repeats=9, min_time_s=0.5)["model"].median_ms
