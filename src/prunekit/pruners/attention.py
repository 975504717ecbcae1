"""``attention="auto"``: whole heads or head dims, per attention block, chosen by the pruning target.

Whole-head pruning rounds to heads (3 heads at ratio 0.5 keep 2); head-dim pruning removes the same
dims from every head. :class:`AttentionOption` is one setting planned on its own dependency graph;
these pure functions compare options the way the target asks:

- ratio targets: the plan leaving fewer MACs (the ratio fixes how much importance goes); ties go
  to whole heads (fewer, larger products run faster);
- MACs/params/latency targets: among the plans reaching the goal, the one removing the least
  importance (else the one closest to the goal).

Per block (:func:`block_modes`), ratio targets take the mode removing more MACs inside the block;
resource targets the mode removing less importance per unit of cost removed there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from prunekit.pruners.allocation import Candidate
from prunekit.pruners.objective import Objective
from prunekit.pruners.plan import Plan
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.groups import Group

HEADS, HEAD_DIMS = "heads", "head_dims"


@dataclass(frozen=True)
class AttentionOption:
    """One graph setting planned (attention modes, grouped-conv modes): ``{block scope: mode}``, its graph, candidates and plan."""

    modes: Mapping[str, str]
    graph: DependencyGraph
    cands: Sequence[Candidate]
    plan: Plan
    reached: float | None = None  # resource targets: the cost the allocation reached
    objective: Objective | None = None  # resource targets: what the allocation priced plans with

    def importance_removed(self, groups: Sequence[int] | None = None, channels: Callable[[Group], int] | None = None) -> float:
        """Channel-weighted share of importance the plan removes: per group, the removed share of its
        scores times its channels (units × width, or ``channels(group)``), so whole heads and head dims
        compare. Where a normalisation made some scores negative they are shifted so that the lowest is 1."""
        by_index = {c.index: c for c in self.cands}
        total = 0.0
        for index, units in self.plan.removals.items():
            if groups is not None and index not in groups:
                continue
            c, g = by_index[index], self.graph.groups[index]
            low = float(c.scores.min())
            scores = c.scores - low + 1.0 if low < 0 else c.scores
            mass = float(scores.sum())
            share = float(scores[list(units)].sum()) / mass if mass > 0 else len(units) / c.size
            total += share * (channels(g) if channels is not None else g.size * g.width())
        return total


def block_groups(graph: DependencyGraph, scopes: Sequence[str]) -> dict[str, list[int]]:
    """Group indices inside each attention block: every member in the block's module (the innermost block holding them)."""
    out: dict[str, list[int]] = {s: [] for s in scopes}
    for g in graph.groups:
        modules = g.modules()
        inside = [s for s in scopes if all(_within(m, s) for m in modules)]
        if inside and modules:
            out[max(inside, key=len)].append(g.index)
    return out


def _within(module: str, scope: str) -> bool:
    return not scope or module == scope or module.startswith(scope + ".")


def removed_cost(objective: Objective, plan: Plan, groups: Sequence[int], dense: float) -> float:
    """What removing ``plan``'s units of ``groups`` only saves from ``dense`` (the unpruned cost) in ``objective``'s metric."""
    part = Plan({g: u for g, u in plan.removals.items() if g in groups})
    return dense - objective.cost(part) if part.removals else 0.0


def block_modes(heads: AttentionOption, dims: AttentionOption, objectives: Sequence[Objective], *, resource: bool) -> dict[str, str]:
    """The better mode of each block of ``heads.modes`` (see the module docstring); ties go to whole heads.

    ``objectives``: over the two options' graphs (in that order), in the target's metric.
    """
    stats = {}
    for option, objective in zip((heads, dims), objectives):
        dense = objective.cost(Plan())
        blocks = block_groups(option.graph, list(heads.modes))
        stats[id(option)] = {s: (removed_cost(objective, option.plan, gs, dense), option.importance_removed(gs)) for s, gs in blocks.items()}
    modes = {}
    for scope in heads.modes:
        (cost_h, loss_h), (cost_d, loss_d) = stats[id(heads)][scope], stats[id(dims)][scope]
        if resource:
            better = cost_d > 0 and (cost_h <= 0 or loss_d / cost_d < loss_h / cost_h)
        else:
            better = cost_d > cost_h
        modes[scope] = HEAD_DIMS if better else HEADS
    return modes


def best_option(options: Sequence[AttentionOption], costs: Sequence[float], *, goal: float | None, tolerance: float,
                channels: Callable[[Group], int] | None = None) -> AttentionOption:
    """The option the target prefers; ``costs`` are their costs after pruning (MACs for ratio
    targets), ``goal`` the resource goal (None for ratio targets); ``channels`` weighs importance
    (:meth:`AttentionOption.importance_removed`). Ties: whole heads for ratio targets, else the earlier option."""
    def key(i: int) -> tuple[float, ...]:
        option = options[i]
        if goal is None:
            return (costs[i], sum(mode == HEAD_DIMS for mode in option.modes.values()))
        loss = round(option.importance_removed(None, channels), 6)  # equal plans sum in another group order
        reached = option.reached if option.reached is not None else costs[i]
        if reached <= goal * (1 + tolerance):
            return (0.0, loss)
        return (1.0, reached)

    return options[min(range(len(options)), key=key)]


__all__ = ["HEADS", "HEAD_DIMS", "AttentionOption", "best_option", "block_groups", "block_modes", "removed_cost"]
