"""One structured step's plan toward the target, measured against the prepared model (:class:`Origin`).

Ratio targets remove units by uniform or global counts of each group's original size; resource targets
(MACs, params, latency) let :mod:`prunekit.pruners.allocation` meet a goal between the original and the
final cost, pricing plans with an :class:`~prunekit.pruners.objective.Objective`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prunekit.deployment.runtimes import Call
from prunekit.pruners.allocation import Candidate, allocate_knapsack, allocate_to_goal, global_order, prefix_counts, uniform_counts
from prunekit.pruners.attention import AttentionOption
from prunekit.pruners.latency import LatencyObjective, prepare_reference, time_alone
from prunekit.pruners.objective import Objective
from prunekit.pruners.plan import Plan
from prunekit.pruners.structured_config import StructuredConfig
from prunekit.pruners.structured_keys import group_key, override, size_key
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.groups import Group

log = logging.getLogger("prunekit.pruners.structured")  # the pruner's logger, which users filter its messages by


@dataclass
class Origin:
    """The model as :meth:`~prunekit.pruners.structured.StructuredPruner.prepare` saw it: targets are measured against it."""

    sizes: dict[str, int]
    costs: dict[str, float]
    reference: Call | None = None  # the model prepared on the target runtime, for latency targets and speed-up checks

    def original_size(self, group: Group) -> int:
        """``group``'s size in the prepared model (its size now where that model had no such group)."""
        return self.sizes.get(size_key(group), self.sizes.get(group_key(group), group.size))  # plain key: states saved before widths were keyed

    def goal(self, config: StructuredConfig, fraction: float) -> float:
        """The resource value after ``fraction`` of the target (geometrically between the original and the final value)."""
        start = self.costs[config.target_metric]
        return start * (config.final_cost(self.costs) / start) ** fraction


def candidates(graph: DependencyGraph, scores: Mapping[int, np.ndarray], config: StructuredConfig, origin: Origin, default_round_to: int,
               removed: Mapping[int, Sequence[int]]) -> list[Candidate]:
    """The prunable groups of ``graph`` to allocate among, with the ``removed`` units of each (zeroed already) scored lowest."""
    cands = []
    for g in graph.prunable_groups():
        original = origin.original_size(g)
        round_to = override(g, config.layer_round_to, default_round_to)
        cands.append(Candidate.make(g.index, scores[g.index], config.max_layer_ratio, round_to, g.width(), original - g.size, original))
    return _parts_kept(graph, _removed_first(cands, removed))


def _parts_kept(graph: DependencyGraph, cands: list[Candidate]) -> list[Candidate]:
    """``cands`` where a tensor holds only some of a group's units (a split's part): the best-scored unit of
    each such part scores above every unit and is never removed, so no tensor is left without channels."""
    parted = {c.index: graph.parts.of_group(graph.groups[c.index]) for c in cands}
    if not any(parted.values()):
        return cands
    ceiling = max(float(c.scores.max()) for c in cands if c.scores.size) + 1.0
    out = []
    for c in cands:
        if parted[c.index]:
            scores = c.scores.copy()
            kept = {int(part[np.argmax(scores[part])]) for part in parted[c.index]}
            scores[list(kept)] = ceiling
            c = dataclasses.replace(c, scores=scores, max_remove=min(c.max_remove, c.size - len(kept)))
        out.append(c)
    return out


def _removed_first(cands: list[Candidate], removed: Mapping[int, Sequence[int]]) -> list[Candidate]:
    """``cands`` with the ``removed`` units of each group scored below every unit of every group."""
    if not any(removed.get(c.index) for c in cands):
        return cands
    floor = min(float(c.scores.min()) for c in cands if c.scores.size) - 1.0
    out = []
    for c in cands:
        units = list(removed.get(c.index, ()))
        if units:
            scores = c.scores.copy()
            scores[units] = floor
            c = dataclasses.replace(c, scores=scores)
        out.append(c)
    return out


def plan_step(graph: DependencyGraph, cands: list[Candidate], fraction: float, inputs: tuple[Any, ...], round_to: int,
              config: StructuredConfig, origin: Origin) -> tuple[Plan, float | None, Objective | None]:
    """The units to remove now: ratio targets by uniform or global counts, resource targets by the
    objective (with the cost reached and the objective; None for ratio targets)."""
    if not cands:
        return Plan(), None, None
    scores = {c.index: c.scores for c in cands}
    if config.resource_target:
        return _resource_plan(graph, cands, fraction, inputs, round_to, config, origin)
    if config.resolved_allocation == "uniform" or config.layer_ratios:
        counts = uniform_counts(cands, lambda c: _group_ratio(graph.groups[c.index], fraction, config, origin))
        return Plan.from_counts(scores, counts), None, None
    order = global_order(cands)
    total_now = sum(c.size for c in cands)
    total_orig = sum(origin.original_size(graph.groups[c.index]) for c in cands)
    k = max(0, min(order.size, int(round(total_now - total_orig * (1 - (config.ratio or 0.0) * fraction)))))
    return Plan.from_counts(scores, prefix_counts(cands, order, k)), None, None


def _group_ratio(group: Group, fraction: float, config: StructuredConfig, origin: Origin) -> float:
    """Ratio of the *current* units to remove so the group ends at its target fraction of the original."""
    ratio = override(group, config.layer_ratios, config.ratio or 0.0)
    target_kept = origin.original_size(group) * (1.0 - ratio * fraction)
    return max(0.0, (group.size - target_kept) / group.size)


def _resource_plan(graph: DependencyGraph, cands: list[Candidate], fraction: float, inputs: tuple[Any, ...], round_to: int,
                   config: StructuredConfig, origin: Origin) -> tuple[Plan, float, Objective]:
    """Meet ``fraction`` of the resource target; returns the plan, the cost it reaches and the objective that priced it."""
    metric = config.target_metric
    goal = origin.goal(config, fraction)
    tolerance = max(config.tolerance, 0.05) if metric == "latency" else config.tolerance
    objective = _objective(graph, inputs, metric, round_to, config, origin)
    if config.resolved_allocation == "knapsack":
        plan, reached = allocate_knapsack(cands, objective, goal, tolerance=tolerance)
    else:
        plan, reached = allocate_to_goal(cands, objective, goal, uniform=config.resolved_allocation == "uniform",
                                         max_layer_ratio=config.max_layer_ratio, tolerance=tolerance)
    return plan, reached, objective


def _objective(graph: DependencyGraph, inputs: tuple[Any, ...], metric: str, round_to: int, config: StructuredConfig, origin: Origin) -> Objective:
    if metric != "latency":
        return Objective(graph, inputs, metric)
    target = config.runtime_target
    unpruned = all(origin.original_size(g) == g.size for g in graph.groups)
    if origin.reference is not None:
        reference, reference_ms = origin.reference, origin.costs["latency"]
    else:  # resumed from a state_dict without prepare(): time against the model as it is now
        reference = prepare_reference(graph.model, inputs, target)
        reference_ms = time_alone(reference, target)
        unpruned = True
    latency = LatencyObjective(graph, inputs, reference, reference_ms, target, step=round_to,
                               current_ms=reference_ms if unpruned else None)
    return Objective(graph, inputs, latency.metric(), cost_model=latency.model.cost_model)


def warn_unreached(option: AttentionOption, fraction: float, config: StructuredConfig, origin: Origin) -> None:
    """Log a resource target the plan missed by more than the tolerance (with why, where the rounding steps are the cause)."""
    goal, reached = origin.goal(config, fraction), option.reached
    tolerance = max(config.tolerance, 0.05) if config.target_metric == "latency" else config.tolerance
    if reached is not None and abs(reached - goal) > tolerance * goal:
        log.warning("resource target %s=%.4g reached only %.4g (granularity/limits of the model)%s", config.target_metric, goal, reached,
                    _narrow_hint(option.graph, option.cands))


def _narrow_hint(graph: DependencyGraph, cands: Sequence[Candidate]) -> str:
    """Why a target may be out of reach: groups no wider than their rounding step stay whole."""
    narrow = [c for c in cands if 1 < c.size <= c.step]
    if not narrow:
        return ""
    layer = group_key(graph.groups[narrow[0].index]).split(",")[0]
    return (f"; {len(narrow)} group(s) have no more channels than their rounding step and stay whole (e.g. the one of "
            f"{layer!r}, {narrow[0].size} channels): a smaller multiple via layer_round_to, e.g. {{{layer!r}: {narrow[0].step // 2}}}, frees them")
