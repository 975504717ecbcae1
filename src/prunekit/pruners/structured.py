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

The pruner's parts: :mod:`~prunekit.pruners.structured_targets` (the plan toward the target),
:mod:`~prunekit.pruners.structured_modes` (``"auto"`` attention and grouped-conv modes),
:mod:`~prunekit.pruners.structured_checks` (costs and output shapes before and after, speed-up warnings),
:mod:`~prunekit.pruners.structured_untouched` (layers left untouched) and :mod:`~prunekit.pruners.structured_keys`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from prunekit.deployment.runtimes import SpeedupCheck, measured_speedup
from prunekit.errors import ConfigError
from prunekit.importance.calibration import Calibration
from prunekit.importance.group import GroupCriterion, ScoringContext, make_criterion
from prunekit.metrics._inputs import batched
from prunekit.metrics.macs import ForwardCounter
from prunekit.pruners.attention import AttentionOption
from prunekit.pruners.grouped_conv import conv_record, striped_convs
from prunekit.pruners.latency import prepare_reference, time_alone
from prunekit.pruners.lifecycle import check_fraction
from prunekit.pruners.plan import Plan
from prunekit.pruners.result import LayerChannels, PruneResult, layer_channels
from prunekit.pruners.structured_checks import checked_measure, measure, model_costs, slower_warning, speedup_warnings, traced_measure
from prunekit.pruners.structured_config import CHANNEL_STEP_ENV, TARGETS, StructuredConfig, pinned_channel_step
from prunekit.pruners.structured_keys import check_layer_patterns, size_key
from prunekit.pruners.structured_modes import attention_modes, choose_attention, choose_convs, replay
from prunekit.pruners.structured_targets import Origin, candidates, plan_step, warn_unreached
from prunekit.pruners.structured_untouched import group_scores, unnamed_untouched
from prunekit.schedules import target_fractions
from prunekit.structured.graph import DependencyGraph, GraphConfig
from prunekit.structured.propagate import AttentionModes
from prunekit.structured.trace import concrete_value

log = logging.getLogger(__name__)


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
        self._origin: Origin | None = None
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
                self._choose(self._option(graph, inputs, 1.0, None, {}), inputs, 1.0, None, convs=convs, attention=attention)

    def _make_origin(self, graph: DependencyGraph, model: nn.Module, inputs: tuple[Any, ...]) -> Origin:
        cfg = self.config
        measured = self._measured
        costs: dict[str, float] = dict(measured[1] if measured is not None and measured[0] is model else model_costs(model, inputs))
        reference = None
        if cfg.latency_target or cfg.resolved_measure_speedup:
            reference = prepare_reference(model, inputs, cfg.runtime_target)
            if cfg.latency_target:
                costs["latency"] = time_alone(reference, cfg.runtime_target)
        return Origin({size_key(g): g.size for g in graph.groups}, costs, reference)

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
        costs_before, reference = (measured[1], measured[2]) if measured is not None else measure(model, inputs)
        plan.apply(graph)
        costs_after = checked_measure(model, inputs, reference)
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
            warnings=list(graph.warnings) + speedup_warnings(speedup, costs_before["macs"] / max(1, costs_after["macs"])),
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
            assert self._origin is not None
            warn_unreached(option, fraction, self.config, self._origin)
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
            option = self._choose(self._option(graph, inputs, fraction, calibration, removed), inputs, fraction, calibration,
                                  convs=convs, attention=attention)
        if choosing:
            replay(caught or [], option.graph)
        return option

    def graph(self, model: nn.Module, example_inputs: Any) -> DependencyGraph:
        """The dependency graph this pruner plans on (its ``attention`` setting and ``ignored_layers`` applied;
        ``attention="auto"``: the modes the first plan chose, whole heads before that)."""
        return self._graph(model, _as_tuple(example_inputs))

    def _option(self, graph: DependencyGraph, inputs: tuple[Any, ...], fraction: float, calibration: Calibration | None,
                removed: Mapping[int, Sequence[int]]) -> AttentionOption:
        """The plan on ``graph``, with what choosing between attention modes compares."""
        cfg = self.config
        assert self._origin is not None
        ctx = ScoringContext(graph.model, graph, seed=cfg.seed, calibration=calibration)
        round_to = cfg.resolved_round_to()
        cands = candidates(graph, group_scores(graph, self.criterion, ctx), cfg, self._origin, round_to, removed)
        plan, reached, objective = plan_step(graph, cands, fraction, inputs, round_to, cfg, self._origin)
        return AttentionOption(attention_modes(graph), graph, cands, plan, reached, objective)

    def _goal(self, fraction: float) -> float:
        """The resource value after ``fraction`` of the target (:meth:`~prunekit.pruners.structured_targets.Origin.goal`)."""
        assert self._origin is not None
        return self._origin.goal(self.config, fraction)

    def _choose(self, option: AttentionOption, inputs: tuple[Any, ...], fraction: float, calibration: Calibration | None, *,
                convs: bool, attention: bool) -> AttentionOption:
        """``option`` with the grouped-conv and/or attention modes ``"auto"`` chooses (:mod:`prunekit.pruners.structured_modes`),
        the choice kept for the later steps."""
        assert self._origin is not None
        sizes = self._origin.sizes

        def planned(like: DependencyGraph, modes: AttentionModes | None = None, whole_groups: frozenset[str] | None = None) -> AttentionOption:
            return self._option(self._graph(like.model, inputs, modes, whole_groups=whole_groups, like=like), inputs, fraction, calibration, {})

        def goal() -> float:
            return self._goal(fraction)

        if convs:
            stripes = option.graph
            option = choose_convs(option, lambda whole: planned(stripes, whole_groups=whole), inputs, self.config, goal, sizes)
            self._whole_groups = option.graph.options.whole_group_convs
        if attention:
            heads = option.graph
            option = choose_attention(option, lambda modes: planned(heads, dict(modes)), inputs, self.config, goal, sizes)
            self._chosen = dict(option.modes)
        return option

    def _speedup(self, model: nn.Module, inputs: tuple[Any, ...]) -> SpeedupCheck | None:
        """Dense (the prepared model) and pruned timed side by side, when the config asks for it."""
        cfg = self.config
        if not cfg.resolved_measure_speedup or self._origin is None or self._origin.reference is None:
            return None
        check = measured_speedup(self._origin.reference, model, batched(inputs, cfg.batch_size), cfg.runtime_target.name, cfg.threads)
        log.info("measured speed-up: %s", check.describe())
        if check.speedup < 1.0:
            log.warning(slower_warning(check))
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
        self._origin = Origin(dict(state["sizes"]), dict(state["costs"])) if state else None
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
                self._measured = (model, *traced_measure(graph, counting, inputs))
        if self.config.ignored_layers:
            graph.fix_modules(self.config.ignored_layers)
        return graph


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


__all__ = ["CHANNEL_STEP_ENV", "TARGETS", "LayerChannels", "PruneResult", "StructuredConfig", "StructuredPruner", "check_layer_patterns",
           "group_scores", "layer_channels", "pinned_channel_step", "prune_structured", "unnamed_untouched"]
