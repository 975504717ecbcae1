"""Group importance: one score per unit of a group of coupled channels (higher = keep).

A criterion scores each member of the group (a dim of one parameter), sums the positions each unit
owns, reduces over members (``mean``/``sum``/``max``/``first``) and normalises over the group's
units (``none``/``mean``/``max``/``sum``/``standardize``) so that scores of different groups can
be ranked together. Criteria never see pruning ratios.

Criteria: ``l1``/``l2`` magnitude, ``taylor`` (first order, ``|w·∂L/∂w|`` from the mean
gradients), ``hessian`` (OBD's ``½·H_ii·w²`` with the Hessian diagonal approximated by the mean
squared gradient, i.e. the empirical Fisher), ``bn_scale`` (``|γ|`` of the group's norm layers,
network slimming), ``fpgm`` (distance of each filter to the others: filters near the geometric
median are redundant), ``activation``/``apoz`` (mean ``|activation|`` / fraction of non-zeros, from
calibration batches) and ``random``.

A criterion's ``needs`` names the statistics it reads from ``ScoringContext.calibration``
(see :func:`~prunekit.importance.calibration.collect_calibration`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunekit._registry import Registry
from prunekit.errors import ConfigError, StructureError
from prunekit.importance.calibration import ActivationStats, Calibration, collect_activation_stats
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.groups import Group, Member

Reduction = Literal["mean", "sum", "max", "first"]
Normalization = Literal["none", "mean", "max", "sum", "standardize"]


class NothingToScore(StructureError):
    """A criterion finds nothing it reads in a group (a model property: the pruner skips the group with a warning)."""


@dataclass
class ScoringContext:
    """What criteria may read: the model and graph, plus optional statistics."""

    model: nn.Module
    graph: DependencyGraph
    squared_grads: Mapping[str, torch.Tensor] | None = None
    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None


class GroupCriterion:
    """Base criterion: per-member unit scores, reduced over members, normalised over units.

    ``needs``: the calibration statistics it reads (a subset of ``grads``, ``squared_grads``, ``inputs``).
    """

    roles: tuple[str, ...] = ("out", "in")
    needs: frozenset[str] = frozenset()

    def __init__(self, reduction: Reduction = "mean", normalization: Normalization = "mean") -> None:
        if reduction not in ("mean", "sum", "max", "first"):
            raise ConfigError(f"unknown group reduction {reduction!r}; allowed: mean, sum, max, first")
        if normalization not in ("none", "mean", "max", "sum", "standardize"):
            raise ConfigError(f"unknown normalization {normalization!r}; allowed: none, mean, max, sum, standardize")
        self.reduction = reduction
        self.normalization = normalization

    def member_scores(self, member: Member, tensor: torch.Tensor, group: Group, ctx: ScoringContext) -> torch.Tensor | None:
        """Per-unit scores from one member, or None if this member does not inform the criterion."""
        raise NotImplementedError

    def members(self, group: Group) -> list[Member]:
        return [m for m in group.members if m.role in self.roles]

    def raw(self, group: Group, ctx: ScoringContext) -> torch.Tensor:
        """Scores reduced over members, before normalisation."""
        per_member = []
        for member in self.members(group):
            with torch.no_grad():
                scores = self.member_scores(member, member.tensor(ctx.model).detach(), group, ctx)
            if scores is not None:
                per_member.append(scores.double())
        if not per_member:
            raise NothingToScore(f"{type(self).__name__} has nothing to score in group {group.name!r}: it reads members of role "
                                 f"{'/'.join(self.roles)}, the group has {[f'{m.fqn} ({m.role})' for m in group.members]}")
        stacked = torch.stack(per_member)
        if self.reduction == "first":
            return stacked[0]
        return {"mean": stacked.mean(0), "sum": stacked.sum(0), "max": stacked.amax(0)}[self.reduction]

    def __call__(self, group: Group, ctx: ScoringContext) -> torch.Tensor:
        return normalize(self.raw(group, ctx), self.normalization)


def normalize(scores: torch.Tensor, how: Normalization) -> torch.Tensor:
    """Scale a group's scores so groups are comparable."""
    if how == "none":
        return scores
    if how == "standardize":
        return (scores - scores.mean()) / scores.std().clamp_min(1e-12) if scores.numel() > 1 else scores * 0
    denom = {"mean": scores.mean(), "max": scores.amax(), "sum": scores.sum()}[how]
    return scores / denom.abs().clamp_min(1e-12)


#: name -> criterion class (constructed with ``reduction``/``normalization`` and its own options).
GROUP_CRITERIA: Registry[type[GroupCriterion]] = Registry("group criterion")


@GROUP_CRITERIA.register("l1", description="sum of |w| of the unit's weights")
class L1Magnitude(GroupCriterion):
    power = 1

    def member_scores(self, member: Member, tensor: torch.Tensor, group: Group, ctx: ScoringContext) -> torch.Tensor:
        values = tensor.abs() if self.power == 1 else tensor.square() if self.power == 2 else tensor.abs() ** self.power
        return member.unit_sum(member.per_position(values), group.size)


@GROUP_CRITERIA.register("l2", description="sum of w² of the unit's weights")
class L2Magnitude(L1Magnitude):
    power = 2


@GROUP_CRITERIA.register("taylor", description="first-order Taylor |w·dL/dw| (needs calibration grads)")
class Taylor(GroupCriterion):
    """Reads ``ctx.calibration.grads``; without them, ``.grad`` left by the caller (deprecated)."""

    roles = ("out", "in", "bias", "norm_weight", "norm_bias")
    needs = frozenset({"grads"})

    def member_scores(self, member: Member, tensor: torch.Tensor, group: Group, ctx: ScoringContext) -> torch.Tensor | None:
        grads = ctx.calibration.grads if ctx.calibration is not None else None
        grad = member.tensor(ctx.model).grad if grads is None else grads.get(member.fqn)
        if grad is None:
            return None
        return member.unit_sum(member.per_position((tensor * grad).abs()), group.size)

    def raw(self, group: Group, ctx: ScoringContext) -> torch.Tensor:
        no_calibration = ctx.calibration is None or ctx.calibration.grads is None
        if no_calibration and not any(p.grad is not None for p in ctx.model.parameters()):
            raise ConfigError("taylor importance needs gradients: pass calibration=collect_calibration(model, batches, "
                              "{'grads'}) to the pruner's step")
        scores = super().raw(group, ctx)
        if no_calibration:
            warnings.warn("taylor importance from the .grad fields is deprecated and will be removed in the next release; "
                          "pass calibration=collect_calibration(model, batches, {'grads'}) instead", DeprecationWarning, stacklevel=3)
        return scores


@GROUP_CRITERIA.register("hessian", description="OBD ½·H_ii·w² with the empirical Fisher diagonal")
class SecondOrder(GroupCriterion):
    """Reads ``ctx.calibration.squared_grads``, else ``ctx.squared_grads``."""

    roles = ("out", "in", "bias", "norm_weight", "norm_bias")
    needs = frozenset({"squared_grads"})

    def member_scores(self, member: Member, tensor: torch.Tensor, group: Group, ctx: ScoringContext) -> torch.Tensor | None:
        squared = ctx.calibration.squared_grads if ctx.calibration is not None else None
        squared = ctx.squared_grads if squared is None else squared
        if squared is None:
            raise ConfigError("hessian importance needs squared gradients: pass calibration=collect_calibration(model, batches, "
                              "{'squared_grads'}) to the pruner's step")
        h = squared.get(member.fqn)
        if h is None:
            return None
        return member.unit_sum(member.per_position(0.5 * h * tensor**2), group.size)


@GROUP_CRITERIA.register("bn_scale", description="|gamma| of the group's norm layers (network slimming)")
class BNScale(GroupCriterion):
    roles = ("norm_weight",)

    def member_scores(self, member: Member, tensor: torch.Tensor, group: Group, ctx: ScoringContext) -> torch.Tensor:
        return member.unit_sum(member.per_position(tensor.abs()), group.size)

    def raw(self, group: Group, ctx: ScoringContext) -> torch.Tensor:
        if not self.members(group):  # no norm layer in this group: fall back to weight magnitude
            return L1Magnitude(self.reduction, "none").raw(group, ctx)
        return super().raw(group, ctx)


@GROUP_CRITERIA.register("fpgm", description="distance to the other filters (geometric median)")
class FPGM(GroupCriterion):
    roles = ("out",)

    def member_scores(self, member: Member, tensor: torch.Tensor, group: Group, ctx: ScoringContext) -> torch.Tensor:
        vectors = member.unit_vectors(tensor.float(), group.size)
        width = max(v.numel() for v in vectors)
        mat = torch.stack([torch.nn.functional.pad(v, (0, width - v.numel())) for v in vectors])
        return torch.cdist(mat[None], mat[None])[0].sum(1)


class _Activation(GroupCriterion):
    """Scores from calibration activations (collected once per graph) on ``batches``, or on
    ``ctx.calibration.inputs`` when constructed without them."""

    needs = frozenset({"inputs"})

    def __init__(self, batches: Iterable[Any] | None = None, max_batches: int | None = 8, reduction: Reduction = "mean", normalization: Normalization = "mean") -> None:
        super().__init__(reduction, normalization)
        self.batches = batches
        self.max_batches = max_batches

    def stats(self, ctx: ScoringContext) -> ActivationStats:
        key = f"activations:{id(ctx.graph)}"
        if key not in ctx.cache:
            batches = self.batches if self.batches is not None else ctx.calibration.inputs if ctx.calibration is not None else None
            if batches is None:
                raise ConfigError(f"{type(self).__name__} needs calibration batches: pass batches=... to it, or "
                                  "calibration=collect_calibration(model, batches, {'inputs'}) to the pruner's step")
            ctx.cache[key] = collect_activation_stats(ctx.model, ctx.graph, batches, self.max_batches)
        return ctx.cache[key]

    def site_scores(self, group: Group, ctx: ScoringContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(per-unit mean |a|, per-unit APoZ) for every module output carrying the group."""
        stats, out = self.stats(ctx), []
        for site in ctx.graph.activation_sites(group):
            key = (site.module, site.index, site.axis)
            if key not in stats.abs_sum:
                continue
            units = torch.as_tensor(site.units)
            mask = units >= 0
            counts = torch.zeros(group.size, dtype=torch.float64).index_add_(0, units[mask], torch.ones(int(mask.sum()), dtype=torch.float64))
            mean = torch.zeros(group.size, dtype=torch.float64).index_add_(0, units[mask], stats.mean_abs(key)[mask].double())
            apoz = torch.zeros(group.size, dtype=torch.float64).index_add_(0, units[mask], stats.apoz(key)[mask].double())
            out.append((mean / counts.clamp_min(1), apoz / counts.clamp_min(1)))
        if not out:
            raise NothingToScore(f"{type(self).__name__}: no activations observed for group {group.name!r} (no module output carries its channels)")
        return out


@GROUP_CRITERIA.register("activation", description="mean |activation| on calibration batches")
class ActivationMean(_Activation):
    def raw(self, group: Group, ctx: ScoringContext) -> torch.Tensor:
        stacked = torch.stack([mean for mean, _ in self.site_scores(group, ctx)])
        return stacked[0] if self.reduction == "first" else {"mean": stacked.mean(0), "sum": stacked.sum(0), "max": stacked.amax(0)}[self.reduction]


@GROUP_CRITERIA.register("apoz", description="1 - average percentage of zeros after the activation")
class APoZ(_Activation):
    def raw(self, group: Group, ctx: ScoringContext) -> torch.Tensor:
        sites = self.site_scores(group, ctx)
        _, apoz = max(sites, key=lambda s: float(s[1].mean()))  # the site after the nonlinearity has the zeros
        return 1.0 - apoz


@GROUP_CRITERIA.register("random", description="uniform random scores (baseline)")
class RandomScores(GroupCriterion):
    def raw(self, group: Group, ctx: ScoringContext) -> torch.Tensor:
        gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + group.index)
        return torch.rand(group.size, generator=gen, dtype=torch.float64)


def make_criterion(name_or_criterion: str | GroupCriterion, **options: Any) -> GroupCriterion:
    """A criterion object from a registered name (``options`` go to its constructor) or as given."""
    if isinstance(name_or_criterion, GroupCriterion):
        return name_or_criterion
    return GROUP_CRITERIA.get(name_or_criterion)(**options)
