"""Structured pruning: choose channels/heads by group importance and remove them for real.

>>> pruner = StructuredPruner(StructuredConfig(macs_reduction=2.0, round_to=8))
>>> result = pruner.prune(model, torch.randn(1, 3, 32, 32))
>>> result.macs_before / result.macs_after   # ≈ 2.0 (within the tolerance)

Iterative pruning follows the lifecycle of :mod:`prunekit.pruners.lifecycle`: ``pruner.prepare(model, x)``,
then ``for fraction in pruner.schedule(): pruner.step(model, x, fraction); fine_tune(model)`` (or
:func:`prunekit.training.prune_finetune_structured`, which does that with calibration and resume).
Each step rebuilds the dependency graph of the (already pruned) model, scores the groups, lets
:mod:`prunekit.pruners.allocation` choose a :class:`~prunekit.pruners.plan.Plan` (priced by an
:class:`~prunekit.pruners.objective.Objective` for resource targets) and applies it, moving toward
the target measured against the model :meth:`StructuredPruner.prepare` saw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from prunekit.deployment.runtimes import Call, SpeedupCheck, measured_speedup
from prunekit.errors import ConfigError, StructureError
from prunekit.importance.calibration import Calibration
from prunekit.importance.group import GroupCriterion, NothingToScore, ScoringContext, make_criterion
from prunekit.pruners.allocation import Candidate, allocate_knapsack, allocate_to_goal, global_order, prefix_counts, uniform_counts
from prunekit.pruners.attention import HEAD_DIMS, HEADS, AttentionOption, best_option, block_modes
from prunekit.pruners.grouped_conv import GROUPS, STRIPES, conv_modes, conv_record, output_channels, striped_convs
from prunekit.metrics._inputs import batched
from prunekit.metrics.macs import ForwardCounter, counted_forward
from prunekit.pruners.latency import LatencyObjective, prepare_reference, time_alone
from prunekit.pruners.lifecycle import check_fraction
from prunekit.pruners.objective import Objective, measure_model
from prunekit.pruners.plan import Plan
from prunekit.pruners.result import LayerChannels, PruneResult, layer_channels
from prunekit.pruners.structured_config import CHANNEL_STEP_ENV, TARGETS, StructuredConfig, pinned_channel_step
from prunekit.schedules import target_fractions
from prunekit.structured.graph import IGNORED, DependencyGraph, GraphConfig, PruningWarning
from prunekit.structured.groups import Group
from prunekit.structured.propagate import AttentionModes, attention_mode
from prunekit.structured.trace import concrete_value
from prunekit.structured.values import TensorMeta

log = logging.getLogger(__name__)


@dataclass
class _Origin:
    """The model as :meth:`StructuredPruner.prepare` saw it: targets are measured against it."""

    sizes: dict[str, int]
    costs: dict[str, float]
    reference: Call | None = None  # the model prepared on the target runtime, for latency targets and speed-up checks


class StructuredPruner:
    """Group-importance structured pruner; see the module docstring."""

    def __init__(self, config: StructuredConfig | None = None, importance: str | GroupCriterion | None = None, **settings: Any) -> None:
        if config is not None and settings:
            raise ConfigError("pass either a StructuredConfig or keyword settings, not both")
        try:
            self.config = config or StructuredConfig(**settings)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        cfg = self.config
        self.criterion = make_criterion(importance or cfg.importance, reduction=cfg.reduction, normalization=cfg.normalization) if not isinstance(importance, GroupCriterion) else importance
        self._origin: _Origin | None = None
        self._chosen: dict[str, str] | None = None  # attention="auto": {block: mode} chosen by the first plan, kept after
        self._whole_groups: frozenset[str] | None = None  # grouped_conv="auto": conv nodes the first plan prunes by whole groups
        self._measured: tuple[nn.Module, dict[str, int], list[tuple[int, ...]]] | None = None  # costs and output shapes step() counted
        self._counting: ForwardCounter | None = None  # step(): counts MACs on the forward its graph's tracer runs

    # --- lifecycle ----------------------------------------------------------------------------
    def prepare(self, model: nn.Module, example_inputs: Any) -> None:
        """Measure targets against ``model`` (the unpruned original) without pruning it.

        Also what a resumed iterative run calls, so that the next :meth:`step` continues toward the
        same absolute target as the uninterrupted run. With ``attention="auto"`` / ``grouped_conv="auto"``
        it also chooses the attention modes / grouped-conv modes here, for the whole target (unless the
        criterion needs calibration: then the first step chooses).
        """
        inputs = _as_tuple(example_inputs)
        self._chosen, self._whole_groups = None, None
        graph = self._graph(model, inputs)
        self._origin = self._make_origin(graph, model, inputs)
        cfg = self.config
        if self.criterion.needs:
            return
        attention, convs = cfg.attention == "auto", cfg.grouped_conv == "auto"
        if convs and not striped_convs(graph):
            self._whole_groups, convs = graph.options.whole_group_convs, False
        if attention and not graph.head_scopes:
            self._chosen, attention = {}, False
        if attention or convs:
            with warnings.catch_warnings():  # the steps warn about the graph they prune
                warnings.simplefilter("ignore")
                option = self._option(graph, inputs, 1.0, None, {})
                if convs:
                    option = self._choose_convs(option, inputs, 1.0, None)
                if attention:
                    self._chosen = dict(self._choose_attention(option, inputs, 1.0, None).modes)

    def _make_origin(self, graph: DependencyGraph, model: nn.Module, inputs: tuple[Any, ...]) -> _Origin:
        cfg = self.config
        measured = self._measured
        costs: dict[str, float] = dict(measured[1] if measured is not None and measured[0] is model else _costs(model, inputs))
        reference = None
        if cfg.latency_target or cfg.resolved_measure_speedup:
            reference = prepare_reference(model, inputs, cfg.runtime_target)
            if cfg.latency_target:
                costs["latency"] = time_alone(reference, cfg.runtime_target)
        return _Origin({_size_key(g): g.size for g in graph.groups}, costs, reference)

    def schedule(self) -> list[float]:
        """Fractions of the target to reach after each step (the last is 1.0)."""
        return target_fractions(self.config.steps, self.config.schedule)

    def step(self, model: nn.Module, example_inputs: Any, fraction: float = 1.0, calibration: Calibration | None = None, *,
             squared_grads: Mapping[str, torch.Tensor] | None = None) -> PruneResult:
        """Prune toward ``fraction`` (0..1] of the target, relative to the prepared model (else this one).

        ``calibration`` holds what the criterion declares in ``criterion.needs``
        (:func:`prunekit.importance.collect_calibration`); ``squared_grads=`` is its deprecated older form.
        """
        check_fraction(fraction)
        calibration = _with_squared_grads(calibration, squared_grads)
        inputs = _as_tuple(example_inputs)
        check_layer_patterns(model, self.config)
        before = layer_channels(model)
        self._counting, self._measured = ForwardCounter(model, inputs, resolve=concrete_value), None
        try:
            graph, plan = self.plan(model, inputs, fraction, calibration)
            measured = self._measured
        finally:
            self._counting, self._measured = None, None
        costs_before, reference = (measured[1], measured[2]) if measured is not None else _measure(model, inputs)
        plan.apply(graph)
        costs_after = _checked_measure(model, inputs, reference)
        after = layer_channels(model)
        unnamed = unnamed_untouched(graph, [n for n, (_, c) in before.items() if after.get(n, ("", c))[1] == c], self.config.ignored_layers)
        if unnamed:
            log.error("structured pruning left layer(s) %s untouched without a warning naming them; please report this model", unnamed)
        speedup = self._speedup(model, inputs)
        return PruneResult(
            model=model,
            layers=[LayerChannels(n, kind, c, after.get(n, (kind, c))[1]) for n, (kind, c) in before.items()],
            macs_before=costs_before["macs"],
            macs_after=costs_after["macs"],
            params_before=costs_before["params"],
            params_after=costs_after["params"],
            groups_pruned=plan.groups_pruned,
            units_removed=plan.units_removed,
            warnings=list(graph.warnings) + _speedup_warnings(speedup, costs_before["macs"] / max(1, costs_after["macs"])),
            speedup=speedup,
            attention=attention_modes(graph),
            grouped_conv=conv_record(graph),
        )

    def plan(self, model: nn.Module, example_inputs: Any, fraction: float = 1.0, calibration: Calibration | None = None, *,
             removed: Mapping[int, Sequence[int]] | None = None) -> tuple[DependencyGraph, Plan]:
        """What :meth:`step` would remove from ``model`` (left unchanged), with the graph the plan's group indices refer to.

        ``removed`` (``{group index: units}`` of that graph) names units already zeroed but still
        present (channel masks, as :mod:`prunekit.integrations` trains with): they rank below every
        other unit, so the plan for a larger fraction removes them again.
        """
        check_fraction(fraction)
        inputs = _as_tuple(example_inputs)
        check_layer_patterns(model, self.config)
        option = self._planned(model, inputs, fraction, calibration, removed or {})
        if self.config.resource_target and option.reached is not None:
            self._warn_unreached(option, fraction)
        return option.graph, option.plan

    def _planned(self, model: nn.Module, inputs: tuple[Any, ...], fraction: float, calibration: Calibration | None,
                 removed: Mapping[int, Sequence[int]]) -> AttentionOption:
        """The plan on the graph of ``model`` (choosing the attention modes first where ``"auto"`` has not yet)."""
        attention = self.config.attention == "auto" and self._chosen is None
        convs = self.config.grouped_conv == "auto" and self._whole_groups is None
        choosing = attention or convs
        with warnings.catch_warnings(record=True) if choosing else contextlib.nullcontext() as caught:
            if choosing:
                warnings.simplefilter("always")
            graph = self._graph(model, inputs)
            if self._origin is None:
                self._origin = self._make_origin(graph, model, inputs)
            option = self._option(graph, inputs, fraction, calibration, removed)
            if convs:
                option = self._choose_convs(option, inputs, fraction, calibration)
            if attention:
                option = self._choose_attention(option, inputs, fraction, calibration)
                self._chosen = dict(option.modes)
        if choosing:
            _replay(caught or [], option.graph)
        return option

    def graph(self, model: nn.Module, example_inputs: Any) -> DependencyGraph:
        """The dependency graph this pruner plans on (its ``attention`` setting and ``ignored_layers`` applied;
        ``attention="auto"``: the modes the first plan chose, whole heads before that)."""
        return self._graph(model, _as_tuple(example_inputs))

    def _option(self, graph: DependencyGraph, inputs: tuple[Any, ...], fraction: float, calibration: Calibration | None,
                removed: Mapping[int, Sequence[int]]) -> AttentionOption:
        """The plan on ``graph``, with what choosing between attention modes compares."""
        ctx = ScoringContext(graph.model, graph, seed=self.config.seed, calibration=calibration)
        round_to = self.config.resolved_round_to()
        cands = _removed_first(self._candidates(graph, ctx, round_to), removed)
        plan, reached, objective = self._plan(graph, cands, fraction, inputs, round_to)
        return AttentionOption(attention_modes(graph), graph, cands, plan, reached, objective)

    def _choose_convs(self, stripes: AttentionOption, inputs: tuple[Any, ...], fraction: float, calibration: Calibration | None) -> AttentionOption:
        """``grouped_conv="auto"``: channel stripes or whole groups per unit of coupled grouped convs, by the objective
        (:mod:`prunekit.pruners.grouped_conv`). ``stripes`` is the plan with stripes wherever they fit; a model without
        such convs keeps it (one graph). Records the choice for the later steps."""
        graph = stripes.graph
        fitting = striped_convs(graph)
        if not fitting:
            self._whole_groups = graph.options.whole_group_convs
            return stripes

        def planned(whole: frozenset[str]) -> AttentionOption:
            return self._option(self._graph(graph.model, inputs, whole_groups=whole, like=graph), inputs, fraction, calibration, {})

        cfg = self.config
        base = graph.options.whole_group_convs
        groups = planned(base | set(fitting))
        objectives = [o.objective or Objective(o.graph, inputs, "macs") for o in (stripes, groups)]
        modes = conv_modes(stripes, groups, objectives)
        whole = frozenset(n for n, m in modes.items() if m == GROUPS)
        options = [stripes, groups]
        if whole and len(whole) < len(fitting):
            options.append(planned(base | whole))
        if cfg.resource_target:  # the per-conv choice re-planned may miss the goal: among the plans, the best at the goal
            costs = [o.reached if o.reached is not None else 0.0 for o in options]
            tolerance = max(cfg.tolerance, 0.05) if cfg.target_metric == "latency" else cfg.tolerance
            chosen = best_option(options, costs, goal=self._goal(fraction), tolerance=tolerance, channels=output_channels)
        else:
            chosen = stripes if not whole else groups if len(whole) == len(fitting) else options[-1]
        self._whole_groups = chosen.graph.options.whole_group_convs
        assert self._origin is not None
        for g in chosen.graph.groups:  # as in _choose_attention: the chosen graph's groups, as the model is now
            self._origin.sizes.setdefault(_size_key(g), g.size)
        record = conv_record(chosen.graph)
        log.info("grouped_conv='auto': %d conv(s) by channel stripes, %d by whole groups", sum(m == STRIPES for m in record.values()),
                 sum(m == GROUPS for m in record.values()))
        return chosen

    def _choose_attention(self, heads: AttentionOption, inputs: tuple[Any, ...], fraction: float, calibration: Calibration | None) -> AttentionOption:
        """``attention="auto"``: whole heads or head dims per block, by the target (latency targets: by the runtime's tables).

        ``heads`` is the whole-head plan; a model without head-structured products keeps it (one graph).
        """
        if not heads.modes:
            return heads
        model = heads.graph.model

        def planned(modes: Mapping[str, str]) -> AttentionOption:
            return self._option(self._graph(model, inputs, dict(modes), like=heads.graph), inputs, fraction, calibration, {})

        cfg = self.config
        metric = cfg.target_metric if cfg.resource_target else "macs"
        dims = planned({s: HEAD_DIMS for s in heads.modes})
        options = [heads, dims]
        # resource plans carry the objective that priced them (latency: the runtime's tables); cost models are built on first use
        objectives = [o.objective or Objective(o.graph, inputs, metric) for o in options]
        mixed = block_modes(heads, dims, objectives, resource=cfg.resource_target)
        if len(set(mixed.values())) > 1:
            options.append(planned(mixed))
            objectives.append(options[-1].objective or Objective(options[-1].graph, inputs, metric))
        costs = [o.reached if o.reached is not None else objectives[i].cost(o.plan) for i, o in enumerate(options)]
        goal = self._goal(fraction) if cfg.resource_target else None
        tolerance = max(cfg.tolerance, 0.05) if metric == "latency" else cfg.tolerance
        chosen = best_option(options, costs, goal=goal, tolerance=tolerance)
        assert self._origin is not None
        for g in chosen.graph.groups:  # the chosen graph's groups, as the model is now (the first plan sees the original)
            self._origin.sizes.setdefault(_size_key(g), g.size)
        log.info("attention='auto': %s (%s of %s: %s)", _describe_modes(chosen.modes), metric if goal is not None else "MACs left",
                 " / ".join(_describe_modes(o.modes) for o in options), ", ".join(f"{c:.4g}" for c in costs))
        return chosen

    def _speedup(self, model: nn.Module, inputs: tuple[Any, ...]) -> SpeedupCheck | None:
        """Dense (the prepared model) and pruned timed side by side, when the config asks for it."""
        cfg = self.config
        if not cfg.resolved_measure_speedup or self._origin is None or self._origin.reference is None:
            return None
        check = measured_speedup(self._origin.reference, model, batched(inputs, cfg.batch_size), cfg.runtime_target.name, cfg.threads)
        log.info("measured speed-up: %s", check.describe())
        if check.speedup < 1.0:
            log.warning(_slower_warning(check))
        return check

    def prune(self, model: nn.Module, example_inputs: Any, calibration: Calibration | None = None, *,
              squared_grads: Mapping[str, torch.Tensor] | None = None) -> PruneResult:
        """One-shot: reach the whole target now, measured against ``model`` as it is."""
        self._origin, self._chosen, self._whole_groups = None, None, None
        return self.step(model, example_inputs, 1.0, _with_squared_grads(calibration, squared_grads, stacklevel=3))

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: the prepared model's group sizes and costs, and the attention modes and
        grouped convs by whole groups (``"grouped_conv"``: fx node names) ``"auto"`` chose (JSON-able; call :meth:`prepare` again for latency targets, which time against
        a copy of that model)."""
        if self._origin is None:
            return {}
        state: dict[str, Any] = {"sizes": dict(self._origin.sizes), "costs": dict(self._origin.costs)}
        if self._chosen is not None:
            state["attention"] = dict(self._chosen)
        if self._whole_groups is not None:
            state["grouped_conv"] = sorted(self._whole_groups)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._origin = _Origin(dict(state["sizes"]), dict(state["costs"])) if state else None
        self._chosen = dict(state["attention"]) if state and "attention" in state else None
        self._whole_groups = frozenset(state["grouped_conv"]) if state and "grouped_conv" in state else None

    def finish(self, model: nn.Module) -> nn.Module:
        """Structured pruning leaves nothing attached: the pruned model is final as it is."""
        return model

    def reset(self) -> None:
        """Forget the reference model (the next step measures targets against the model it sees) and the attention and grouped-conv choices."""
        self._origin, self._chosen, self._whole_groups = None, None, None

    def anchor(self, model: nn.Module, example_inputs: Any) -> None:
        """Deprecated name of :meth:`prepare`."""
        warnings.warn("StructuredPruner.anchor is deprecated; call prepare(model, example_inputs)", DeprecationWarning, stacklevel=2)
        self.prepare(model, example_inputs)

    # --- one step -----------------------------------------------------------------------------
    def _graph(self, model: nn.Module, inputs: tuple[Any, ...], attention: AttentionModes | None = None, *,
               whole_groups: frozenset[str] | None = None, like: DependencyGraph | None = None) -> DependencyGraph:
        """The graph to plan on (``like``: of the same model, whose trace is reused; ``whole_groups``: grouped-conv
        nodes by whole groups, default what ``grouped_conv="auto"`` chose)."""
        if attention is None:
            attention = self._chosen if self.config.attention == "auto" and self._chosen is not None else self.config.graph_attention
        if whole_groups is None:
            whole_groups = self._whole_groups or frozenset()
        if like is not None and like.options.whole_group_convs == whole_groups:
            graph = like.with_attention(attention)
        elif like is not None:
            graph = like.with_options(attention=attention, whole_group_convs=whole_groups)
        else:
            counting, self._counting = self._counting, None
            graph = DependencyGraph.build(model, inputs, GraphConfig(attention=attention, grouped_conv=self.config.grouped_conv,
                                                                     whole_group_convs=whole_groups), observer=counting)
            if counting is not None:
                self._measured = (model, *_traced_measure(graph, counting, inputs))
        if self.config.ignored_layers:
            graph.fix_modules(self.config.ignored_layers)
        return graph

    def _original_size(self, group: Group) -> int:
        assert self._origin is not None
        sizes = self._origin.sizes
        return sizes.get(_size_key(group), sizes.get(_key(group), group.size))  # plain key: states saved before widths were keyed

    def _candidates(self, graph: DependencyGraph, ctx: ScoringContext, default_round_to: int) -> list[Candidate]:
        cfg = self.config
        cands = []
        scores = group_scores(graph, self.criterion, ctx)
        for g in graph.prunable_groups():
            original = self._original_size(g)
            round_to = _override(g, cfg.layer_round_to, default_round_to)
            cands.append(Candidate.make(g.index, scores[g.index], cfg.max_layer_ratio, round_to, g.width(), original - g.size, original))
        return cands

    def _plan(self, graph: DependencyGraph, cands: list[Candidate], fraction: float, inputs: tuple[Any, ...],
              round_to: int) -> tuple[Plan, float | None, Objective | None]:
        """The units to remove now: ratio targets by uniform or global counts, resource targets by the
        objective (with the cost reached and the objective; None for ratio targets)."""
        cfg = self.config
        if not cands:
            return Plan(), None, None
        scores = {c.index: c.scores for c in cands}
        if cfg.resource_target:
            return self._resource_plan(graph, cands, fraction, inputs, round_to)
        if cfg.resolved_allocation == "uniform" or cfg.layer_ratios:
            return Plan.from_counts(scores, uniform_counts(cands, lambda c: self._group_ratio(graph.groups[c.index], fraction))), None, None
        order = global_order(cands)
        total_now = sum(c.size for c in cands)
        total_orig = sum(self._original_size(graph.groups[c.index]) for c in cands)
        k = max(0, min(order.size, int(round(total_now - total_orig * (1 - (cfg.ratio or 0.0) * fraction)))))
        return Plan.from_counts(scores, prefix_counts(cands, order, k)), None, None

    def _group_ratio(self, group: Group, fraction: float) -> float:
        """Ratio of the *current* units to remove so the group ends at its target fraction of the original."""
        ratio = _override(group, self.config.layer_ratios, self.config.ratio or 0.0)
        target_kept = self._original_size(group) * (1.0 - ratio * fraction)
        return max(0.0, (group.size - target_kept) / group.size)

    def _goal(self, fraction: float) -> float:
        """The resource value after ``fraction`` of the target (geometrically between the original and the final value)."""
        assert self._origin is not None
        start = self._origin.costs[self.config.target_metric]
        return start * (self.config.final_cost(self._origin.costs) / start) ** fraction

    def _warn_unreached(self, option: AttentionOption, fraction: float) -> None:
        cfg = self.config
        goal, reached = self._goal(fraction), option.reached
        tolerance = max(cfg.tolerance, 0.05) if cfg.target_metric == "latency" else cfg.tolerance
        if reached is not None and abs(reached - goal) > tolerance * goal:
            log.warning("resource target %s=%.4g reached only %.4g (granularity/limits of the model)%s", cfg.target_metric, goal, reached,
                        _narrow_hint(option.graph, option.cands))

    def _resource_plan(self, graph: DependencyGraph, cands: list[Candidate], fraction: float, inputs: tuple[Any, ...],
                       round_to: int) -> tuple[Plan, float, Objective]:
        """Meet ``fraction`` of the resource target; returns the plan, the cost it reaches and the objective that priced it."""
        cfg = self.config
        metric = cfg.target_metric
        goal = self._goal(fraction)
        tolerance = max(cfg.tolerance, 0.05) if metric == "latency" else cfg.tolerance
        objective = self._objective(graph, inputs, metric, round_to)
        if cfg.resolved_allocation == "knapsack":
            plan, reached = allocate_knapsack(cands, objective, goal, tolerance=tolerance)
        else:
            plan, reached = allocate_to_goal(cands, objective, goal, uniform=cfg.resolved_allocation == "uniform",
                                             max_layer_ratio=cfg.max_layer_ratio, tolerance=tolerance)
        return plan, reached, objective

    def _objective(self, graph: DependencyGraph, inputs: tuple[Any, ...], metric: str, round_to: int) -> Objective:
        if metric != "latency":
            return Objective(graph, inputs, metric)
        cfg = self.config
        assert self._origin is not None
        target = cfg.runtime_target
        unpruned = all(self._original_size(g) == g.size for g in graph.groups)
        if self._origin.reference is not None:
            reference, reference_ms = self._origin.reference, self._origin.costs["latency"]
        else:  # resumed from a state_dict without prepare(): time against the model as it is now
            reference = prepare_reference(graph.model, inputs, target)
            reference_ms = time_alone(reference, target)
            unpruned = True
        latency = LatencyObjective(graph, inputs, reference, reference_ms, target, step=round_to,
                                   current_ms=reference_ms if unpruned else None)
        return Objective(graph, inputs, latency.metric(), cost_model=latency.model.cost_model)


#: A latency target that needed this many times more MACs reduction than speed-up hit the runtime's per-layer overhead.
OVERHEAD_BOUND = 2.5


def _replay(caught: Sequence[warnings.WarningMessage], chosen: DependencyGraph) -> None:
    """Warnings of an ``attention="auto"`` choice: the chosen graph's PruningWarnings, and every other warning once
    (the graphs not chosen warned about layers they would have left untouched)."""
    seen = set()
    for w in caught:
        if issubclass(w.category, PruningWarning) or (w.category, str(w.message)) in seen:
            continue
        seen.add((w.category, str(w.message)))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    for message in chosen.warnings:
        warnings.warn(message, PruningWarning, stacklevel=4)


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


def group_scores(graph: DependencyGraph, criterion: GroupCriterion, ctx: ScoringContext) -> dict[int, np.ndarray]:
    """``{group index: scores}`` of every prunable group. A group the criterion has nothing to score
    in (a model property) is made unprunable and named in a PruningWarning; it never aborts the call."""
    scores = {}
    for g in graph.prunable_groups():
        try:
            scores[g.index] = criterion(g, ctx).detach().cpu().numpy()
        except NothingToScore as exc:
            _skip_unscored(graph, g, str(exc))
    return scores


def _skip_unscored(graph: DependencyGraph, group: Group, reason: str) -> None:
    """Leave ``group`` untouched because the criterion cannot score it, naming its layers in a warning."""
    group.prunable, group.reason = False, reason
    message = f"{group.name}: channels coupled to it are left untouched: {reason} (layers left untouched: {', '.join(group.modules())})"
    graph.warnings.append(message)
    warnings.warn(message, PruningWarning, stacklevel=4)


def unnamed_untouched(graph: DependencyGraph, unchanged: Sequence[str], ignored: Sequence[str] = ()) -> list[str]:
    """Layers of ``unchanged`` (width kept) that no prunable group holds and no warning names: a bug by construction.

    Layers fixed only by the model's inputs/outputs and those matching ``ignored`` patterns are fine.
    """
    chosen = [g for g in graph.groups if g.prunable or g.reason == IGNORED]  # the plan's or the caller's choice
    fine = {m.module for g in chosen for m in g.members} | set(graph.fixed_by_model())
    named = {n for message in graph.warnings for n in _names_in(message)}
    layers = set(graph.layers())
    return [n for n in unchanged if n in layers and n not in fine and n not in named and not any(fnmatch.fnmatchcase(n, p) for p in ignored)]


def _names_in(message: str) -> list[str]:
    """Module names a structured warning names: its subject and its 'layers left untouched' list."""
    subject, _, rest = message.partition(": ")
    _, _, listed = rest.rpartition("(layers left untouched: ")
    return [subject, *(n.strip() for n in listed.rstrip(")").split(","))] if listed else [subject]


def _speedup_warnings(check: SpeedupCheck | None, macs_ratio: float) -> list[str]:
    """What a measured speed-up says the user should know: slower than dense, or bought with far more MACs than it saved time."""
    if check is None:
        return []
    if check.speedup < 1.0:
        return [_slower_warning(check)]
    if macs_ratio > OVERHEAD_BOUND * check.speedup:
        message = (f"{check.speedup:.2f}× faster on {check.runtime} took {macs_ratio:.1f}× fewer MACs: at batch {check.batch_size} this model's "
                   f"time is mostly per-layer overhead, not arithmetic. Fewer layers (prunekit.prune_depth), a larger batch or another "
                   f"runtime gains more than narrower layers")
        log.warning(message)
        return [message]
    return []


def _slower_warning(check: SpeedupCheck) -> str:
    return (f"the pruned model is SLOWER than the dense one: {check.describe()}. Prune for the runtime instead: "
            f"latency_reduction=... with runtime={check.runtime!r}, batch_size={check.batch_size} (channel counts then follow its measured "
            f"staircase), or round_to='auto'")


def prune_structured(model: nn.Module, example_inputs: Any, config: StructuredConfig | None = None, *, importance: str | GroupCriterion | None = None,
                     calibration: Calibration | None = None, **settings: Any) -> PruneResult:
    """One-shot structured pruning of ``model`` in place: ``prune_structured(model, x, macs_reduction=2.0)``.

    Settings are a :class:`StructuredConfig` or its fields as keywords; ``calibration`` carries the
    statistics gradient/activation criteria need (:func:`prunekit.importance.collect_calibration`).
    """
    return StructuredPruner(config, importance, **settings).prune(model, example_inputs, calibration=calibration)


def _with_squared_grads(calibration: Calibration | None, squared_grads: Mapping[str, torch.Tensor] | None, stacklevel: int = 3) -> Calibration | None:
    """``calibration`` with the deprecated ``squared_grads=`` argument folded in (with a warning)."""
    if squared_grads is None:
        return calibration
    warnings.warn("squared_grads= is deprecated; pass calibration=Calibration(squared_grads=...) or collect_calibration(model, batches, {'squared_grads'})",
                  DeprecationWarning, stacklevel=stacklevel)
    return dataclasses.replace(calibration or Calibration(), squared_grads=squared_grads)


def _as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def _costs(model: nn.Module, inputs: tuple[Any, ...]) -> dict[str, int]:
    return {metric: int(measure_model(metric, model, inputs)) for metric in ("macs", "params")}


def _measure(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    """:func:`_costs` and the shapes of the model's outputs, from one forward (eval mode, no gradients).

    MACs are counted as the ``"macs"`` cost metric measures them (:func:`prunekit.metrics.count_macs`).
    """
    report, output = counted_forward(model, inputs, effective=False)
    return {"macs": int(report.dense), "params": int(measure_model("params", model, inputs))}, [tuple(t.shape) for t in _flatten_outputs(output)]


def _traced_measure(graph: DependencyGraph, counter: ForwardCounter, inputs: tuple[Any, ...]) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    """:func:`_measure` of the unpruned model from the forward ``graph``'s tracer ran (``counter`` watched it):
    the same counts and output shapes without another forward (one when the counter could not count)."""
    model = graph.model
    dense = counter.dense()
    if dense is None:
        return _measure(model, inputs)
    output = next(n for n in graph.prop.trace.graph.nodes if n.op == "output")
    return {"macs": dense, "params": int(measure_model("params", model, inputs))}, [tuple(m.shape) for m in _flatten_outputs(output.args[0])]


def _checked_measure(model: nn.Module, inputs: tuple[Any, ...], reference: Sequence[tuple[int, ...]]) -> dict[str, int]:
    """:func:`_measure` of the pruned model, which must still run and produce outputs of the ``reference`` shapes."""
    try:
        costs, got = _measure(model, inputs)
    except Exception as exc:
        raise StructureError(f"the pruned model no longer runs ({type(exc).__name__}: {exc}); please report this model") from exc
    if list(got) != list(reference):
        raise StructureError(f"the pruned model's outputs changed shape: {reference} -> {got}")
    return costs


def _narrow_hint(graph: DependencyGraph, cands: Sequence[Candidate]) -> str:
    """Why a target may be out of reach: groups no wider than their rounding step stay whole."""
    narrow = [c for c in cands if 1 < c.size <= c.step]
    if not narrow:
        return ""
    layer = _key(graph.groups[narrow[0].index]).split(",")[0]
    return (f"; {len(narrow)} group(s) have no more channels than their rounding step and stay whole (e.g. the one of "
            f"{layer!r}, {narrow[0].size} channels): a smaller multiple via layer_round_to, e.g. {{{layer!r}: {narrow[0].step // 2}}}, frees them")


def _override(group: Group, patterns: Mapping[str, Any], default: Any) -> Any:
    """The value of the first pattern matching one of the group's (output) modules, else ``default``."""
    names = group.modules("out") or group.modules()
    return next((v for p, v in patterns.items() if any(fnmatch.fnmatchcase(m, p) for m in names)), default)


def check_layer_patterns(model: nn.Module, config: StructuredConfig) -> None:
    """Every per-layer pattern must name at least one module, so a typo is not silently ignored."""
    names = [n for n, _ in model.named_modules() if n]
    for field_name in ("layer_ratios", "layer_round_to"):
        unmatched = [p for p in getattr(config, field_name) if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise ConfigError(f"{field_name}: pattern(s) {unmatched} match no module of the model; module names look like {names[:5]}")


def _key(group: Group) -> str:
    """A name for a group that survives pruning (module names of its output members)."""
    return ",".join(group.modules("out")) or ",".join(m.fqn for m in group.members)


def _size_key(group: Group) -> str:
    """:func:`_key` with the unit width when above 1, which also survives pruning (whole heads and head dims of one layer differ),
    and with the consuming layers where the group holds only part of a layer's outputs (the sections of one split layer differ)."""
    width = group.width()
    key = _key(group) if width == 1 else f"{_key(group)}@{width}"
    if any(m.role == "out" and (m.units < 0).any() for m in group.members):
        key += ">" + ",".join(group.modules("in"))
    return key


def attention_modes(graph: DependencyGraph) -> dict[str, str]:
    """``{attention block: "heads" | "head_dims"}`` the graph was built with, for each block with head-structured products."""
    return {scope: attention_mode(graph.options.attention, scope) for scope in graph.head_scopes}


def _describe_modes(modes: Mapping[str, str]) -> str:
    counts = {m: sum(1 for v in modes.values() if v == m) for m in (HEADS, HEAD_DIMS)}
    return ", ".join(f"{n} block(s) {m}" for m, n in counts.items() if n) or "no attention"


def _flatten_outputs(out: Any) -> list[Any]:
    """Tensors of a forward's output in order (of a traced output: the tensors' :class:`TensorMeta` summaries)."""
    if isinstance(out, fx.Node):
        out = out.meta.get("value")
    if isinstance(out, (torch.Tensor, TensorMeta)):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten_outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten_outputs(o)]
    return []


__all__ = ["CHANNEL_STEP_ENV", "TARGETS", "LayerChannels", "PruneResult", "StructuredConfig", "StructuredPruner", "layer_channels",
           "pinned_channel_step", "prune_structured"]
