"""Structured pruning: choose channels/heads by group importance and remove them for real.

>>> pruner = StructuredPruner(StructuredConfig(macs_reduction=2.0, round_to=8))
>>> result = pruner.prune(model, torch.randn(1, 3, 32, 32))
>>> result.macs_before / result.macs_after   # ≈ 2.0 (within the tolerance)

Iterative pruning: ``for fraction in pruner.schedule(): pruner.step(model, x, fraction); fine_tune(model)``.
Each step rebuilds the dependency graph of the (already pruned) model and moves toward the target
measured against the model the first step saw.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from prunekit._settings import MAX_BATCH, Seed, Settings
from prunekit.errors import ConfigError, StructureError
from prunekit.importance.calibration import Calibration
from prunekit.importance.group import GroupCriterion, ScoringContext, make_criterion
from prunekit.metrics import count_macs, count_parameters
from prunekit.pruners.budget import Candidate, closest_prefix, global_order, lowest_units, prefix_counts, refine_counts, uniform_counts
from prunekit.structured.cost import CostModel
from prunekit.structured.graph import DependencyGraph, GraphOptions
from prunekit.structured.groups import Group
from prunekit.structured.shapes import Invalid
from prunekit.structured.surgery import apply_plan, remove_units

log = logging.getLogger(__name__)


class StructuredConfig(Settings):
    """Settings of a structured pruner (also the ``prune`` section of a recipe).

    Give exactly one target: ``ratio`` (fraction of channels removed; with ``layer_ratios`` for
    fnmatch-pattern overrides), ``macs_reduction`` (2.0 = half the MACs), ``max_macs`` or
    ``max_params``. Resource targets are met within ``tolerance`` (relative). ``round_to`` keeps
    channel counts multiples of a hardware block; ``layer_round_to`` overrides it per layer pattern
    (e.g. ``{"layer1.*": 8}`` so a 16-channel stage can still be halved under ``round_to=16``).
    """


    ratio: float | None = Field(None, ge=0.0, lt=1.0)
    layer_ratios: dict[str, float] = Field(default_factory=dict)
    macs_reduction: float | None = Field(None, ge=1.0, le=1e6)
    max_macs: int | None = Field(None, gt=0, le=2**53)
    max_params: int | None = Field(None, gt=0, le=2**53)
    allocation: Literal["uniform", "global"] | None = None
    max_layer_ratio: float = Field(0.9, gt=0.0, le=1.0)
    round_to: int = Field(1, ge=1, le=MAX_BATCH)
    layer_round_to: dict[str, int] = Field(default_factory=dict)
    ignored_layers: tuple[str, ...] = ()
    importance: str = "l2"
    reduction: Literal["mean", "sum", "max", "first"] = "mean"
    normalization: Literal["none", "mean", "max", "sum", "standardize"] = "mean"
    tolerance: float = Field(0.02, gt=0.0, lt=0.5)
    steps: int = Field(1, ge=1, le=1000)
    schedule: Literal["linear", "cubic"] = "linear"
    attention: Literal["heads", "head_dims"] = "heads"
    seed: Seed = 0

    @model_validator(mode="after")
    def _one_target(self) -> StructuredConfig:
        targets = [n for n in ("ratio", "macs_reduction", "max_macs", "max_params") if getattr(self, n) is not None]
        if len(targets) > 1:
            raise ValueError(f"give one target, not {targets}")
        if not targets and not self.layer_ratios:
            raise ValueError("no target: set ratio, layer_ratios, macs_reduction, max_macs or max_params")
        bad = {k: v for k, v in self.layer_ratios.items() if not 0.0 <= v < 1.0}
        if bad:
            raise ValueError(f"layer_ratios must be in [0, 1): {bad}")
        bad = {k: v for k, v in self.layer_round_to.items() if not 1 <= v <= MAX_BATCH}
        if bad:
            raise ValueError(f"layer_round_to values must be ≥ 1 (and at most {MAX_BATCH}): {bad}")
        return self

    @property
    def resource_target(self) -> bool:
        return self.macs_reduction is not None or self.max_macs is not None or self.max_params is not None

    @property
    def resolved_allocation(self) -> str:
        return self.allocation or ("global" if self.resource_target else "uniform")


@dataclass
class LayerChannels:
    """Output channels (or features) of one conv/linear layer before and after pruning."""

    name: str
    kind: str
    before: int
    after: int


@dataclass
class PruneResult:
    """What one pruning step did."""

    model: nn.Module
    layers: list[LayerChannels]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    groups_pruned: int
    units_removed: int
    warnings: list[str] = field(default_factory=list)

    @property
    def macs_reduction(self) -> float:
        return self.macs_before / max(1, self.macs_after)

    @property
    def params_reduction(self) -> float:
        return self.params_before / max(1, self.params_after)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "model"}
        out.update(macs_reduction=self.macs_reduction, params_reduction=self.params_reduction)
        return out

    def table(self) -> str:
        """Markdown table of per-layer channel counts."""
        rows = ["| layer | type | before | after |", "|---|---|---:|---:|"]
        rows += [f"| {x.name} | {x.kind} | {x.before} | {x.after} |" for x in self.layers]
        return "\n".join(rows)


def layer_channels(model: nn.Module) -> dict[str, tuple[str, int]]:
    """``{name: (type, output channels)}`` of conv and linear layers."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out[name] = (type(m).__name__, m.weight.shape[0])
        elif isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            out[name] = (type(m).__name__, m.weight.shape[1] * m.groups)
        elif isinstance(m, nn.Linear):
            out[name] = (type(m).__name__, m.weight.shape[0])
    return out


@dataclass
class _Origin:
    """The model as the first step saw it: targets are measured against it."""

    sizes: dict[str, int]
    macs: int
    params: int


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

    # --- public API ---------------------------------------------------------------------------
    def schedule(self) -> list[float]:
        """Fractions of the target to reach after each step (the last is 1.0)."""
        n = self.config.steps
        if self.config.schedule == "cubic":
            return [1.0 - (1.0 - k / n) ** 3 for k in range(1, n + 1)]
        return [k / n for k in range(1, n + 1)]

    def prune(self, model: nn.Module, example_inputs: Any, squared_grads: Mapping[str, torch.Tensor] | None = None) -> PruneResult:
        """One-shot: reach the whole target now."""
        self._origin = None
        return self.step(model, example_inputs, 1.0, squared_grads)

    def reset(self) -> None:
        """Forget the reference model (the next step measures targets against the model it sees)."""
        self._origin = None

    def anchor(self, model: nn.Module, example_inputs: Any) -> None:
        """Measure targets against ``model`` (the unpruned original) without pruning it.

        Needed when iterative pruning resumes after a restart: the next :meth:`step` then continues
        toward the same absolute target as the uninterrupted run.
        """
        inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        graph = DependencyGraph.build(model, inputs, GraphOptions(attention=self.config.attention))
        if self.config.ignored_layers:
            graph.fix_modules(self.config.ignored_layers)
        self._origin = _Origin({_key(g): g.size for g in graph.groups}, _macs(model, inputs), count_parameters(model).params)

    def step(self, model: nn.Module, example_inputs: Any, fraction: float = 1.0, squared_grads: Mapping[str, torch.Tensor] | None = None,
             calibration: Calibration | None = None) -> PruneResult:
        """Prune toward ``fraction`` (0..1] of the target, relative to the model of the first step."""
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
        inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        cfg = self.config
        check_layer_patterns(model, cfg)
        before = layer_channels(model)
        macs_before, params_before = _macs(model, inputs), count_parameters(model).params
        reference = _reference_output(model, inputs)
        graph = DependencyGraph.build(model, inputs, GraphOptions(attention=cfg.attention))
        if cfg.ignored_layers:
            graph.fix_modules(cfg.ignored_layers)
        if self._origin is None:
            self._origin = _Origin({_key(g): g.size for g in graph.groups}, macs_before, params_before)
        if calibration is not None and squared_grads is None:
            squared_grads = calibration.squared_grads
        ctx = ScoringContext(model, graph, squared_grads, cfg.seed, calibration=calibration)
        cands = self._candidates(graph, ctx)
        counts = self._allocate(graph, cands, fraction, inputs)
        by_index = {c.index: c for c in cands}
        selection = {gi: lowest_units(by_index[gi], k) for gi, k in counts.items() if k > 0}
        remove_units(graph, selection)
        _check_outputs(model, inputs, reference)
        after = layer_channels(model)
        layers = [LayerChannels(n, kind, c, after.get(n, (kind, c))[1]) for n, (kind, c) in before.items()]
        return PruneResult(
            model=model,
            layers=layers,
            macs_before=macs_before,
            macs_after=_macs(model, inputs),
            params_before=params_before,
            params_after=count_parameters(model).params,
            groups_pruned=len(selection),
            units_removed=sum(len(v) for v in selection.values()),
            warnings=list(graph.warnings),
        )

    # --- internals ----------------------------------------------------------------------------
    def _candidates(self, graph: DependencyGraph, ctx: ScoringContext) -> list[Candidate]:
        cfg = self.config
        assert self._origin is not None
        cands = []
        for g in graph.prunable_groups():
            scores = self.criterion(g, ctx).detach().cpu().numpy()
            original = self._origin.sizes.get(_key(g), g.size)
            round_to = _override(g, cfg.layer_round_to, cfg.round_to)
            cands.append(Candidate.make(g.index, scores, cfg.max_layer_ratio, round_to, g.width(), original - g.size, original))
        return cands

    def _group_ratio(self, graph: DependencyGraph, c: Candidate, fraction: float) -> float:
        """Ratio of the *current* units to remove so the group ends at its target fraction of the original."""
        cfg = self.config
        g = graph.groups[c.index]
        ratio = _override(g, cfg.layer_ratios, cfg.ratio or 0.0)
        assert self._origin is not None
        original = self._origin.sizes.get(_key(g), g.size)
        target_kept = original * (1.0 - ratio * fraction)
        return max(0.0, (g.size - target_kept) / g.size)

    def _allocate(self, graph: DependencyGraph, cands: list[Candidate], fraction: float, inputs: tuple[Any, ...]) -> dict[int, int]:
        cfg = self.config
        if not cands:
            return {}
        if not cfg.resource_target:
            if cfg.resolved_allocation == "uniform" or cfg.layer_ratios:
                return uniform_counts(cands, lambda c: self._group_ratio(graph, c, fraction))
            order = global_order(cands)
            assert self._origin is not None
            total_now = sum(c.size for c in cands)
            total_orig = sum(self._origin.sizes.get(_key(graph.groups[c.index]), c.size) for c in cands)
            k = max(0, min(order.size, int(round(total_now - total_orig * (1 - (cfg.ratio or 0.0) * fraction)))))
            return prefix_counts(cands, order, k)
        return self._resource_counts(graph, cands, fraction, inputs)

    def _resource_goal(self, fraction: float) -> tuple[str, float]:
        cfg = self.config
        assert self._origin is not None
        if cfg.max_params is not None:
            return "params", self._origin.params * (cfg.max_params / self._origin.params) ** fraction
        final = cfg.max_macs if cfg.max_macs is not None else self._origin.macs / float(cfg.macs_reduction or 1.0)
        return "macs", self._origin.macs * (final / self._origin.macs) ** fraction

    def _resource_counts(self, graph: DependencyGraph, cands: list[Candidate], fraction: float, inputs: tuple[Any, ...]) -> dict[int, int]:
        """Bisect the global ranking (or a uniform ratio) on the analytic cost, then correct with real counts."""
        cfg = self.config
        kind, goal = self._resource_goal(fraction)
        model = CostModel(graph)
        by_index = {c.index: c for c in cands}
        uniform = cfg.resolved_allocation == "uniform"
        order = global_order(cands)
        steps = 1000 if uniform else int(order.size)

        def plan(k: int) -> dict[int, int]:
            if uniform:
                return uniform_counts(cands, lambda c: cfg.max_layer_ratio * k / steps)
            return prefix_counts(cands, order, k)

        def analytic(k: int) -> float:
            counts = plan(k)
            removed = graph.removed_mask({gi: lowest_units(by_index[gi], n) for gi, n in counts.items() if n})
            return model.cost(removed)[kind]

        def analytic_counts(counts: dict[int, int]) -> float:
            removed = graph.removed_mask({gi: lowest_units(by_index[gi], n) for gi, n in counts.items() if n})
            return model.cost(removed)[kind]

        target, best = goal, None
        for _ in range(6):
            counts = plan(closest_prefix(analytic, target, steps))
            counts = refine_counts(cands, counts, analytic_counts, target, cfg.tolerance / 4)
            real = self._measure(graph, kind, counts, by_index, inputs)
            if best is None or abs(real - goal) < abs(best[0] - goal):
                best = (real, counts)
            if abs(real - goal) <= cfg.tolerance * goal * 0.9 or real <= 0:
                break
            target *= goal / real
        assert best is not None
        if abs(best[0] - goal) > cfg.tolerance * goal:
            narrow = [c for c in cands if 1 < c.size <= c.step]
            hint = ""
            if narrow:
                layer = _key(graph.groups[narrow[0].index]).split(",")[0]
                hint = (f"; {len(narrow)} group(s) have no more channels than their rounding step and stay whole (e.g. the one of "
                        f"{layer!r}, {narrow[0].size} channels): a smaller multiple via layer_round_to, e.g. {{{layer!r}: {narrow[0].step // 2}}}, frees them")
            log.warning("resource target %s=%.4g reached only %.4g (granularity/limits of the model)%s", kind, goal, best[0], hint)
        return best[1]

    def _measure(self, graph: DependencyGraph, kind: str, counts: dict[int, int], by_index: dict[int, Candidate], inputs: tuple[Any, ...]) -> float:
        """Real MACs/params of the plan, measured on a pruned copy."""
        removed = graph.removed_mask({gi: lowest_units(by_index[gi], n) for gi, n in counts.items() if n})
        if kind == "params":
            return CostModel(graph).cost(removed)["params"]  # exact
        trial = copy.deepcopy(graph.model)
        try:
            apply_plan(graph, removed, graph.validate(removed), trial)
        except Invalid as exc:
            raise StructureError(f"the chosen plan would break the model: {exc}") from None
        return float(_macs(trial, inputs))


def _macs(model: nn.Module, inputs: tuple[Any, ...]) -> int:
    return count_macs(model, inputs).dense


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


def _flatten_outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten_outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten_outputs(o)]
    return []


def _reference_output(model: nn.Module, inputs: tuple[Any, ...]) -> list[tuple[int, ...]]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [tuple(t.shape) for t in _flatten_outputs(model(*inputs))]
    finally:
        model.train(was)


def _check_outputs(model: nn.Module, inputs: tuple[Any, ...], reference: Sequence[tuple[int, ...]]) -> None:
    """The pruned model must still run and produce outputs of the same shapes."""
    try:
        got = _reference_output(model, inputs)
    except Exception as exc:
        raise StructureError(f"the pruned model no longer runs ({type(exc).__name__}: {exc}); please report this model") from exc
    if list(got) != list(reference):
        raise StructureError(f"the pruned model's outputs changed shape: {reference} -> {got}")


__all__ = ["LayerChannels", "PruneResult", "StructuredConfig", "StructuredPruner", "layer_channels"]
