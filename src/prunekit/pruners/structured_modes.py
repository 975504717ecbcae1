"""``attention="auto"`` / ``grouped_conv="auto"``: the pruner's choice, per model, between attention modes and grouped-conv modes.

The pruner plans the model one way; :func:`choose_convs` and :func:`choose_attention` re-plan it the other
ways (``planned``) and keep the plan the target prefers (:mod:`prunekit.pruners.grouped_conv`,
:mod:`prunekit.pruners.attention`). The graphs not chosen warn too: :func:`replay` keeps the chosen one's warnings.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prunekit.pruners.attention import HEAD_DIMS, HEADS, AttentionOption, best_option, block_modes
from prunekit.pruners.grouped_conv import GROUPS, STRIPES, conv_modes, conv_record, output_channels, striped_convs
from prunekit.pruners.objective import Objective
from prunekit.pruners.structured_config import StructuredConfig
from prunekit.pruners.structured_keys import size_key
from prunekit.structured.graph import DependencyGraph, PruningWarning
from prunekit.structured.propagate import attention_mode

log = logging.getLogger("prunekit.pruners.structured")  # the pruner's logger, which users filter its choices by


def choose_convs(stripes: AttentionOption, planned: Callable[[frozenset[str]], AttentionOption], inputs: tuple[Any, ...],
                 config: StructuredConfig, goal: Callable[[], float], sizes: dict[str, int]) -> AttentionOption:
    """``grouped_conv="auto"``: channel stripes or whole groups per unit of coupled grouped convs, by the objective.

    ``stripes`` is the plan with stripes wherever they fit, ``planned(nodes)`` the plan with those conv nodes by whole
    groups, ``goal()`` the resource goal; a model without such convs keeps ``stripes`` (one graph). The chosen graph's
    groups join ``sizes`` (the prepared model's group sizes).
    """
    graph = stripes.graph
    fitting = striped_convs(graph)
    if not fitting:
        return stripes
    base = graph.options.whole_group_convs
    groups = planned(base | set(fitting))
    objectives = [o.objective or Objective(o.graph, inputs, "macs") for o in (stripes, groups)]
    modes = conv_modes(stripes, groups, objectives)
    whole = frozenset(n for n, m in modes.items() if m == GROUPS)
    options = [stripes, groups]
    if whole and len(whole) < len(fitting):
        options.append(planned(base | whole))
    if config.resource_target:  # the per-conv choice re-planned may miss the goal: among the plans, the best at the goal
        costs = [o.reached if o.reached is not None else 0.0 for o in options]
        tolerance = max(config.tolerance, 0.05) if config.target_metric == "latency" else config.tolerance
        chosen = best_option(options, costs, goal=goal(), tolerance=tolerance, channels=output_channels)
    else:
        chosen = stripes if not whole else groups if len(whole) == len(fitting) else options[-1]
    _keep_sizes(chosen.graph, sizes)
    record = conv_record(chosen.graph)
    log.info("grouped_conv='auto': %d conv(s) by channel stripes, %d by whole groups", sum(m == STRIPES for m in record.values()),
             sum(m == GROUPS for m in record.values()))
    return chosen


def choose_attention(heads: AttentionOption, planned: Callable[[Mapping[str, str]], AttentionOption], inputs: tuple[Any, ...],
                     config: StructuredConfig, goal: Callable[[], float], sizes: dict[str, int]) -> AttentionOption:
    """``attention="auto"``: whole heads or head dims per block, by the target (latency targets: by the runtime's tables).

    ``heads`` is the whole-head plan, ``planned(modes)`` the plan with ``{block: mode}``, ``goal()`` the resource goal;
    a model without head-structured products keeps ``heads`` (one graph). The chosen graph's groups join ``sizes``.
    """
    if not heads.modes:
        return heads
    metric = config.target_metric if config.resource_target else "macs"
    dims = planned({s: HEAD_DIMS for s in heads.modes})
    options = [heads, dims]
    # resource plans carry the objective that priced them (latency: the runtime's tables); cost models are built on first use
    objectives = [o.objective or Objective(o.graph, inputs, metric) for o in options]
    mixed = block_modes(heads, dims, objectives, resource=config.resource_target)
    if len(set(mixed.values())) > 1:
        options.append(planned(mixed))
        objectives.append(options[-1].objective or Objective(options[-1].graph, inputs, metric))
    costs = [o.reached if o.reached is not None else objectives[i].cost(o.plan) for i, o in enumerate(options)]
    target = goal() if config.resource_target else None
    tolerance = max(config.tolerance, 0.05) if metric == "latency" else config.tolerance
    chosen = best_option(options, costs, goal=target, tolerance=tolerance)
    _keep_sizes(chosen.graph, sizes)
    log.info("attention='auto': %s (%s of %s: %s)", _describe(chosen.modes), metric if target is not None else "MACs left",
             " / ".join(_describe(o.modes) for o in options), ", ".join(f"{c:.4g}" for c in costs))
    return chosen


def _keep_sizes(chosen: DependencyGraph, sizes: dict[str, int]) -> None:
    """Add the chosen graph's groups, as the model is now, to ``sizes`` (the first plan sees the original)."""
    for g in chosen.groups:
        sizes.setdefault(size_key(g), g.size)


def replay(caught: Sequence[warnings.WarningMessage], chosen: DependencyGraph) -> None:
    """Warnings of an ``"auto"`` choice: the chosen graph's PruningWarnings, and every other warning once
    (the graphs not chosen warned about layers they would have left untouched)."""
    seen = set()
    for w in caught:
        if issubclass(w.category, PruningWarning) or (w.category, str(w.message)) in seen:
            continue
        seen.add((w.category, str(w.message)))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    for message in chosen.warnings:
        warnings.warn(message, PruningWarning, stacklevel=4)


def attention_modes(graph: DependencyGraph) -> dict[str, str]:
    """``{attention block: "heads" | "head_dims"}`` the graph was built with, for each block with head-structured products."""
    return {scope: attention_mode(graph.options.attention, scope) for scope in graph.head_scopes}


def _describe(modes: Mapping[str, str]) -> str:
    counts = {m: sum(1 for v in modes.values() if v == m) for m in (HEADS, HEAD_DIMS)}
    return ", ".join(f"{n} block(s) {m}" for m, n in counts.items() if n) or "no attention"
