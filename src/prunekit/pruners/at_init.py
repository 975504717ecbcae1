"""Pruning at initialisation: masks chosen on the untrained network, then kept fixed while it trains.

:func:`prune_at_init` prunes a freshly initialised model with any unstructured criterion (SNIP,
Lee et al. 2019: ``|g ⊙ w|`` from one batch, global; SynFlow, Tanaka et al. 2020: data-free, 100
rounds of an exponential schedule; random; magnitude) through :func:`prune_unstructured`, so the
masks attach as parametrizations and stay fixed during training: pruned weights are exactly zero.
:func:`random_masks_like` is the control the papers ask for: random masks with the same number of
kept weights in every layer. :func:`reinitialize` gives the variance-scaling initialisation SNIP
uses (Glorot & Bengio 2010).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from prunekit._settings import MAX_COUNT, Seed, Settings
from prunekit.errors import ConfigError
from prunekit.importance.unstructured import UNSTRUCTURED_CRITERIA
from prunekit.masks import MaskSet, prunable_parameters, raw_parameter
from prunekit.masks.targets import owner
from prunekit.pruners.unstructured import UnstructuredConfig, prune_unstructured
from prunekit.schedules.iterative import cumulative_sparsity

log = logging.getLogger(__name__)

Batches = Iterable[tuple[Tensor, Tensor]]
InitScheme = Literal["default", "glorot_normal", "kaiming_normal"]
#: The name of the random-mask control with another mask's per-layer densities (a recipe baseline).
SAME_DENSITY = "random_same_density"

_INITS = {
    "glorot_normal": nn.init.xavier_normal_,
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
}


class AtInitConfig(Settings):
    """How to prune an untrained model: criterion, sparsity, scope, batches and rounds.

    ``batches``: how many training batches the gradient criteria average over (SNIP: one).
    ``iterations``: pruning rounds on an exponential schedule (round ``k`` of ``n`` keeps
    ``(1 − sparsity)^(k/n)`` of the weights, rescoring the survivors); ``None`` takes the
    criterion's default (SynFlow 100, others 1). ``include``/``exclude`` select targets as in
    :func:`prunekit.masks.prunable_parameters`; ``seed`` seeds the random criterion.
    """

    criterion: str = "snip"
    sparsity: float = Field(0.9, ge=0.0, lt=1.0, description="fraction of the targeted weights to prune")
    scope: Literal["layer", "global"] = "global"
    batches: int = Field(1, ge=1, le=MAX_COUNT, description="training batches the gradient criteria average over")
    iterations: int | None = Field(None, ge=1, le=10_000, description="pruning rounds (exponential schedule); None = the criterion's default")
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    seed: Seed = 0

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, value: str) -> str:
        return UNSTRUCTURED_CRITERIA.check(value)

    def rounds(self) -> int:
        """The number of pruning rounds: ``iterations``, else the criterion's registered default."""
        return self.iterations or int(UNSTRUCTURED_CRITERIA.meta(self.criterion).get("at_init_iterations", 1))

    def round_sparsities(self) -> list[float]:
        """Sparsity after each round: ``1 − (1 − s)^(k/n)`` for ``k = 1 … n`` (the last is exactly ``s``)."""
        n = self.rounds()
        rate = cumulative_sparsity(self.sparsity, 1 / n)  # each round prunes this share of the remaining weights
        return [cumulative_sparsity(rate, k) for k in range(1, n)] + [self.sparsity]


def prune_at_init(model: nn.Module, config: AtInitConfig, batches: Batches | None = None) -> MaskSet:
    """Prune ``model`` (meant to be untrained) per ``config``; attach and return the masks.

    ``batches`` of ``(inputs, labels)`` feed gradient criteria (SNIP uses the first
    ``config.batches``; SynFlow only reads the input shape); they are read once, so a data loader
    is fine. The masks attach as parametrizations: train the model as usual and pruned weights
    stay exactly zero.
    """
    if MaskSet.from_model(model):
        raise ConfigError("prune_at_init expects a model without masks; strip them (prunekit.masks.strip) or start from a fresh model")
    taken = list(itertools.islice(batches, config.batches)) if batches is not None else None
    base = UnstructuredConfig(criterion=config.criterion, scope=config.scope, include=config.include, exclude=config.exclude,
                              n_batches=config.batches, seed=config.seed)
    masks = MaskSet({})
    for sparsity in config.round_sparsities():
        masks = prune_unstructured(model, base.at_sparsity(sparsity), taken)
    log.info("%s at initialisation (%s, %d rounds): sparsity %.4f", config.criterion, config.scope, config.rounds(), masks.sparsity())
    return masks


def random_masks_like(masks: MaskSet, seed: int = 0) -> MaskSet:
    """Random masks keeping exactly as many entries as ``masks`` in every layer (positions uniform at random)."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}
    for name, mask in masks.items():
        keep = torch.zeros(mask.numel(), dtype=torch.bool)
        keep[torch.randperm(mask.numel(), generator=generator)[: int(mask.sum())]] = True
        out[name] = keep.view_as(mask)
    return MaskSet(out)


def reinitialize(model: nn.Module, scheme: InitScheme = "glorot_normal", include: tuple[str, ...] | None = None,
                 exclude: tuple[str, ...] = ()) -> nn.Module:
    """Redraw the prunable weights (conv/linear by default) from ``scheme`` with torch's global RNG;
    their layers' biases become zero. ``default`` leaves the model's own initialisation."""
    if scheme == "default":
        return model
    if scheme not in _INITS:
        raise ConfigError(f"unknown initialisation {scheme!r}; allowed values: default, {', '.join(_INITS)}")
    with torch.no_grad():
        for name in prunable_parameters(model, include, exclude):
            _INITS[scheme](raw_parameter(model, name))
            bias = getattr(owner(model, name)[0], "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    return model
