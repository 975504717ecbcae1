"""Unstructured pruning: targets → scores (criterion) → exact-count selection → masks attached.

Masks are monotone: weights already pruned by an attached mask stay pruned (their score is −∞),
so repeated calls with growing sparsity only ever remove more. Counts are exact: layer scope
prunes ``round(s · n)`` entries in each layer, global scope ``round(s · N)`` over all
non-overridden layers together; equal scores are broken by position (layer order, then index).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from prunekit._settings import MAX_COUNT, Seed, Settings
from prunekit.errors import ConfigError, PrunekitError
from prunekit.importance.calibration import Calibration, collect_gradients
from prunekit.importance.grasp import hessian_gradient_products
from prunekit.importance.synflow import synflow_gradients
from prunekit.importance.unstructured import UNSTRUCTURED_CRITERIA
from prunekit.masks import MaskSet, effective_weight, prunable_parameters, strip
from prunekit.pruners.allocation import layer_sparsities, overridden, prune_count
from prunekit.pruners.lifecycle import check_fraction
from prunekit.schedules.fractions import Shape, target_fractions

log = logging.getLogger(__name__)

Batches = Iterable[tuple[Tensor, Tensor]]
_LayerSparsity = Annotated[float, Field(ge=0.0, lt=1.0)]


class UnstructuredConfig(Settings):
    """What to prune and how: criterion, target sparsity, scope, per-layer overrides, targets.

    ``overrides`` maps shell-wildcard patterns over parameter names to their own sparsity (first
    match wins), e.g. ``{"fc3.*": 0.45}``. ``include``/``exclude`` select targets as in
    :func:`prunekit.masks.prunable_parameters` (default: conv/linear weights; biases and norms
    are never pruned unless included). ``n_batches`` is how many batches gradient criteria
    (taylor, snip) average over; ``seed`` seeds the random criterion.
    """


    criterion: str = "magnitude"
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of the targeted weights to prune")
    scope: Literal["layer", "global"] = "layer"
    overrides: dict[str, _LayerSparsity] = Field(default_factory=dict)
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    n_batches: int = Field(1, ge=1, le=MAX_COUNT)
    seed: Seed = 0

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, value: str) -> str:
        return UNSTRUCTURED_CRITERIA.check(value)

    def at_sparsity(self, sparsity: float) -> UnstructuredConfig:
        """This config with target ``sparsity``; overrides scale by ``sparsity / self.sparsity``.

        Used when a schedule drives the sparsity: ``self.sparsity`` is then the final target, and
        a layer overridden to half of it stays at half of the schedule's value at every step.
        """
        if not self.overrides:
            return self.model_copy(update={"sparsity": sparsity})
        if sparsity > self.sparsity:
            raise ConfigError(
                f"with overrides, 'sparsity' ({self.sparsity}) is the final target and the schedule may not exceed it (asked for {sparsity})"
            )
        ratio = sparsity / self.sparsity if self.sparsity else 1.0
        scaled = {p: v * ratio for p, v in self.overrides.items()}
        return self.model_copy(update={"sparsity": sparsity, "overrides": scaled})


def compute_scores(model: nn.Module, config: UnstructuredConfig, names: Sequence[str], batches: Batches | None = None) -> dict[str, Tensor]:
    """Criterion scores for each named parameter (its effective, masked value), normalised as registered."""
    criterion = UNSTRUCTURED_CRITERIA.get(config.criterion)
    meta = UNSTRUCTURED_CRITERIA.meta(config.criterion)
    grads: dict[str, Tensor] = {}
    if meta.get("gradient") == "synflow":
        grads = synflow_gradients(model, names, _example_shape(batches, config.criterion))
    elif meta["needs_grad"]:
        if batches is None:
            raise ConfigError(f"criterion {config.criterion!r} needs gradients: pass batches=... (an iterable of (inputs, labels))")
        collect = hessian_gradient_products if meta.get("gradient") == "hessian_gradient" else collect_gradients
        grads = collect(model, batches, names, config.n_batches)
    generator = torch.Generator().manual_seed(config.seed)
    scores = {n: criterion(effective_weight(model, n).detach(), grad=grads.get(n), generator=generator) for n in names}
    for name, s in scores.items():
        if torch.isnan(s).any():
            raise PrunekitError(f"criterion {config.criterion!r} gave NaN scores for {name!r}; are the weights or gradients finite?")
    return meta["normalize"](scores) if meta["normalize"] else scores


def _example_shape(batches: Batches | None, criterion: str) -> tuple[int, ...]:
    """One example's input shape (the first batch's inputs without the batch dimension)."""
    first = next(iter(batches), None) if batches is not None else None
    if first is None:
        raise ConfigError(f"criterion {criterion!r} needs the input shape: pass batches=... (an iterable of (inputs, labels); only the shape is used)")
    return tuple(first[0].shape[1:])


def select(scores: Tensor, keep: Tensor, n_prune: int) -> Tensor:
    """New keep-mask ⊆ ``keep`` with the ``n_prune`` lowest-scoring entries pruned (ties: lower index first).

    Entries already pruned count towards ``n_prune``; if there are more of them, none is added.
    """
    flat = torch.where(keep.flatten().to(scores.device), scores.flatten().float(), torch.tensor(float("-inf"), device=scores.device))
    n_prune = max(n_prune, int((~keep).sum()))
    order = torch.argsort(flat, stable=True)
    new = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    new[order[:n_prune]] = False
    return new.view_as(keep).cpu()


def _select_layerwise(scores: Mapping[str, Tensor], keeps: Mapping[str, Tensor], config: UnstructuredConfig) -> dict[str, Tensor]:
    targets = layer_sparsities(list(scores), config.sparsity, config.overrides)
    return {n: select(scores[n], keeps[n], prune_count(keeps[n].numel(), targets[n])) for n in scores}


def _select_global(scores: Mapping[str, Tensor], keeps: Mapping[str, Tensor], config: UnstructuredConfig) -> dict[str, Tensor]:
    names = list(scores)
    targets = layer_sparsities(names, config.sparsity, config.overrides)
    fixed = overridden(names, config.overrides)
    out = {n: select(scores[n], keeps[n], prune_count(keeps[n].numel(), targets[n])) for n in fixed}
    shared = [n for n in names if n not in fixed]
    if shared:
        flat_scores = torch.cat([scores[n].flatten().float().cpu() for n in shared])
        flat_keep = torch.cat([keeps[n].flatten() for n in shared])
        flat_new = select(flat_scores, flat_keep, prune_count(flat_keep.numel(), config.sparsity))
        for name, part in zip(shared, torch.split(flat_new, [keeps[n].numel() for n in shared])):
            out[name] = part.view_as(keeps[name])
    return {n: out[n] for n in names}


_SCOPES = {"layer": _select_layerwise, "global": _select_global}


def prune_unstructured(model: nn.Module, config: UnstructuredConfig, batches: Batches | None = None) -> MaskSet:
    """Compute masks for ``config`` on ``model``'s current weights, attach them, and return them.

    ``batches`` (an iterable of ``(inputs, labels)``) is needed by gradient criteria (taylor,
    snip). Masks already attached are respected: pruned weights stay pruned.
    """
    names = prunable_parameters(model, config.include, config.exclude)
    if not names:
        raise ConfigError("no parameters to prune: 'include'/'exclude' leave nothing (conv/linear weights by default)")
    attached = MaskSet.from_model(model)
    keeps = {n: attached[n] if n in attached else torch.ones(effective_weight(model, n).shape, dtype=torch.bool) for n in names}
    scores = compute_scores(model, config, names, batches)
    masks = MaskSet(_SCOPES[config.scope](scores, keeps, config))
    masks.attach(model)
    log.info("%s pruning (%s scope, target %.4f): sparsity %.4f over %d parameters", config.criterion, config.scope, config.sparsity, masks.sparsity(), len(names))
    return masks


class UnstructuredPruner:
    """The :mod:`~prunekit.pruners.lifecycle` face of :func:`prune_unstructured`.

    Step ``k`` prunes to ``fraction · config.sparsity`` (overrides scaled alike); masks are monotone,
    so iterative steps only ever remove more. ``batches`` feed gradient criteria (taylor, snip).
    """

    def __init__(self, config: UnstructuredConfig | None = None, *, batches: Batches | None = None, steps: int = 1,
                 schedule: Shape = "linear", **settings: Any) -> None:
        if config is not None and settings:
            raise ConfigError("pass either an UnstructuredConfig or keyword settings, not both")
        try:
            self.config = config or UnstructuredConfig(**settings)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.batches = batches
        self.steps = steps
        self.shape: Shape = schedule

    def prepare(self, model: nn.Module, example_inputs: Any = None) -> None:
        """Nothing to measure: sparsities are fractions of each layer's own size."""

    def schedule(self) -> list[float]:
        return target_fractions(self.steps, self.shape)

    def step(self, model: nn.Module, example_inputs: Any = None, fraction: float = 1.0, calibration: Calibration | None = None) -> MaskSet:
        """Prune to ``fraction`` of the target sparsity; returns all masks now attached."""
        check_fraction(fraction)
        config = self.config if fraction == 1.0 else self.config.at_sparsity(self.config.sparsity * fraction)
        return prune_unstructured(model, config, self.batches)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Masks live in the model's state; there is nothing else to restore."""

    def finish(self, model: nn.Module) -> nn.Module:
        """Fold the masks into the weights (:func:`prunekit.masks.strip`)."""
        return strip(model)
