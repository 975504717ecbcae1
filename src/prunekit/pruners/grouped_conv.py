"""``grouped_conv="auto"``: channel stripes or whole groups, per grouped convolution, chosen by the objective.

Both granularities are exact: a *stripe* is the same channel of every group (``groups`` is kept,
both per-group sizes shrink), a *whole group* removes one group's input and output channels. The
pruner plans the model both ways (:class:`~prunekit.pruners.attention.AttentionOption`: every
grouped conv that stripes fit by stripes, then by whole groups) and decides per *unit*: the grouped
convs that share a channel group in either plan (one conv, as a rule). For each unit it compares,
over the channel groups touching the unit's convs, the importance each plan removes (per group, the
removed share of its scores times the output channels it spans, :func:`output_channels`: a whole
group spans the outputs of the layer before the conv and of the conv, a stripe group one of them)
per unit of cost it removes there, in the
objective's metric (MACs for ratio targets; for resource targets the target's metric: MACs, params,
or the latency tables' estimate). The lower wins; ties go to the plan removing more cost, then to stripes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prunekit.pruners.attention import AttentionOption, removed_cost
from prunekit.pruners.objective import Objective
from prunekit.pruners.plan import Plan
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.groups import Group

STRIPES, GROUPS = "channels", "groups"


def striped_convs(graph: DependencyGraph) -> dict[str, str]:
    """``{node: module}`` of the grouped convs ``graph`` prunes by channel stripes."""
    return {node: module for node, (module, mode) in graph.grouped_conv_modes().items() if mode == STRIPES}


def conv_record(graph: DependencyGraph) -> dict[str, str]:
    """``{conv module: "channels" | "groups"}`` of every grouped conv stripes would fit, as ``graph`` prunes it
    (what :attr:`~prunekit.pruners.result.PruneResult.grouped_conv` reports)."""
    return {module: mode for module, mode in graph.grouped_conv_modes().values()}


def touching(graph: DependencyGraph, modules: set[str]) -> list[int]:
    """Indices of the groups with a member in one of ``modules``."""
    return [g.index for g in graph.groups if any(m.module in modules for m in g.members)]


def conv_units(graphs: Sequence[DependencyGraph], convs: Mapping[str, str]) -> list[list[str]]:
    """The conv nodes of ``convs`` (``{node: module}``) that share a channel group in one of ``graphs``, unit by unit."""
    parent = {n: n for n in convs}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for graph in graphs:
        for g in graph.groups:
            modules = {m.module for m in g.members}
            inside = [n for n, module in convs.items() if module in modules]
            for n in inside[1:]:
                parent[root(n)] = root(inside[0])
    units: dict[str, list[str]] = {}
    for n in convs:
        units.setdefault(root(n), []).append(n)
    return list(units.values())


def output_channels(group: Group) -> int:
    """Output channels (positions of ``out`` members) a group spans; units × width where it has none."""
    return sum(int((m.units >= 0).sum()) for m in group.members if m.role == "out") or group.size * group.width()


def unit_stats(option: AttentionOption, objective: Objective, modules: set[str]) -> tuple[float, float]:
    """(cost removed, importance removed) of ``option``'s plan on the groups touching ``modules``."""
    groups = touching(option.graph, modules)
    return removed_cost(objective, option.plan, groups, objective.cost(Plan())), option.importance_removed(groups, output_channels)


def groups_win(stripes: tuple[float, float], groups: tuple[float, float]) -> bool:
    """Whether whole groups beat stripes, given each plan's (cost removed, importance removed); see the module docstring."""
    (cost_s, loss_s), (cost_g, loss_g) = stripes, groups
    if cost_g <= 0:
        return False
    if cost_s <= 0:
        return True
    lhs, rhs = loss_g * cost_s, loss_s * cost_g  # loss_g / cost_g vs loss_s / cost_s, without dividing
    if abs(lhs - rhs) <= 1e-9 * max(abs(lhs), abs(rhs), 1e-12):
        return cost_g > cost_s
    return lhs < rhs


def conv_modes(stripes: AttentionOption, groups: AttentionOption, objectives: Sequence[Objective]) -> dict[str, str]:
    """``{conv node: "channels" | "groups"}`` for every conv ``stripes`` prunes by stripes (see the module docstring).

    ``groups`` is the plan with those convs by whole groups; ``objectives`` price the two options' plans (in that order).
    """
    convs = striped_convs(stripes.graph)
    modes = {}
    for unit in conv_units([stripes.graph, groups.graph], convs):
        modules = {convs[n] for n in unit}
        mode = GROUPS if groups_win(unit_stats(stripes, objectives[0], modules), unit_stats(groups, objectives[1], modules)) else STRIPES
        modes.update({n: mode for n in unit})
    return modes


__all__ = ["GROUPS", "STRIPES", "conv_modes", "conv_record", "conv_units", "groups_win", "output_channels", "striped_convs", "touching",
           "unit_stats"]
