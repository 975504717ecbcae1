"""Unstructured importance criteria: one score per weight entry, higher = more important (keep).

Every criterion is a pure function with the same signature,
``criterion(weight, *, grad=None, generator=None) -> scores`` (scores have ``weight``'s shape), so
pruners and contract tests call them uniformly. Criteria never see sparsities or masks.

Registry metadata says what a criterion needs and how its scores combine across layers:

- ``needs_grad``: the pruner must pass ``grad`` (the loss gradient w.r.t. the effective weight);
- ``normalize``: optional ``{name: scores} -> {name: scores}`` applied over all pruned layers
  together (SNIP divides by the global sum, as in Lee et al. 2019);
- ``gradient`` (optional; absent = the loss gradient): ``"synflow"`` means ``grad`` is the
  synaptic-flow gradient instead (:mod:`prunekit.importance.synflow`; data-free);
- ``gradient: "hessian_gradient"``: ``grad`` is the Hessian-gradient product ``Hg`` (GraSP);
- ``signed`` (optional; absent = false): scores may be negative (GraSP); others are ``>= 0``;
- ``at_init_iterations`` (optional; absent = 1): how many pruning rounds
  :func:`prunekit.pruners.at_init.prune_at_init` takes by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor

from prunekit._registry import Registry
from prunekit.errors import ConfigError


class Criterion(Protocol):
    """``(weight, *, grad=None, generator=None) -> scores`` with ``weight``'s shape."""

    def __call__(self, weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor: ...


#: name → criterion; metadata: ``needs_grad`` (bool), ``normalize`` (callable or None), ``description``.
UNSTRUCTURED_CRITERIA: Registry[Criterion] = Registry("unstructured criterion")


def _require_grad(name: str, weight: Tensor, grad: Tensor | None) -> Tensor:
    if grad is None:
        raise ConfigError(f"criterion {name!r} needs gradients: pass batches of (inputs, labels) to the pruner")
    if grad.shape != weight.shape:
        raise ConfigError(f"criterion {name!r}: gradient shape {tuple(grad.shape)} differs from weight shape {tuple(weight.shape)}")
    return grad.detach()


def normalize_by_global_sum(scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Divide every layer's scores by the sum over all layers (scores then sum to 1)."""
    total = sum(float(s.sum()) for s in scores.values())
    if total <= 0:
        return dict(scores)
    return {name: s / total for name, s in scores.items()}


@UNSTRUCTURED_CRITERIA.register("magnitude", needs_grad=False, normalize=None, description="|w| (Han et al. 2015)")
def magnitude(weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Absolute value of each weight."""
    return weight.detach().abs()


@UNSTRUCTURED_CRITERIA.register("random", needs_grad=False, normalize=None, description="uniform random scores (baseline)")
def random_scores(weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Uniform random scores drawn from ``generator`` (required, so results are reproducible)."""
    if generator is None:
        raise ConfigError("criterion 'random' needs a seeded torch.Generator (generator=...)")
    return torch.rand(weight.shape, generator=generator, device=generator.device).to(weight.device)


@UNSTRUCTURED_CRITERIA.register("taylor", needs_grad=True, normalize=None, description="|w·g|, gradients averaged over batches")
def taylor(weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """First-order Taylor estimate of the loss change when a weight is removed: ``|w · g|``."""
    return (weight.detach() * _require_grad("taylor", weight, grad)).abs()


@UNSTRUCTURED_CRITERIA.register(
    "snip", needs_grad=True, normalize=normalize_by_global_sum, description="connection sensitivity at initialisation (Lee et al. 2019)"
)
def snip(weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """SNIP connection sensitivity ``|∂L/∂c| = |w · g|`` (before the global normalisation).

    Lee et al. 2019 take the gradient w.r.t. a multiplicative mask ``c`` at ``c = 1``, which equals
    ``w · ∂L/∂w``; they compute it at initialisation from one mini-batch and normalise over all
    connections (the registry's ``normalize``).
    """
    return (weight.detach() * _require_grad("snip", weight, grad)).abs()


@UNSTRUCTURED_CRITERIA.register(
    "synflow", needs_grad=False, normalize=None, gradient="synflow", at_init_iterations=100,
    description="iterative synaptic flow, data-free (Tanaka et al. 2020)",
)
def synflow(weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """SynFlow score ``|∂R/∂w ⊙ w|``, with ``grad`` = ``∂R/∂w`` of the synaptic flow ``R = 1ᵀ(∏|W|)1``.

    The pruner computes that gradient (:func:`prunekit.importance.synflow.synflow_gradients`:
    absolute-valued weights, an all-ones input), not the loss gradient: registry metadata
    ``gradient="synflow"``. Tanaka et al. prune by it over 100 rounds of an exponential sparsity
    schedule (``at_init_iterations``), rescoring the surviving weights each round.
    """
    if grad is None:
        raise ConfigError("criterion 'synflow' needs the synaptic-flow gradient dR/dw: pass batches=... (only their input shape is used)")
    if grad.shape != weight.shape:
        raise ConfigError(f"criterion 'synflow': gradient shape {tuple(grad.shape)} differs from weight shape {tuple(weight.shape)}")
    return (weight.detach().abs() * grad.detach()).abs()


@UNSTRUCTURED_CRITERIA.register(
    "grasp", needs_grad=True, normalize=None, gradient="hessian_gradient", signed=True,
    description="gradient signal preservation at initialisation (Wang et al. 2020)",
)
def grasp(weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """GraSP score ``w ⊙ Hg``, with ``grad`` = the Hessian-gradient product ``Hg`` (``g = ∇L``).

    Wang et al. 2020 compute ``S(−w) = −w ⊙ Hg`` and remove the weights with the *largest* ``S``
    (removing them reduces the gradient flow least, or raises it); with prunekit's "higher = keep"
    that is the score ``w ⊙ Hg`` = ``−S``, pruned lowest first. Scores are signed (registry
    metadata ``signed``). The pruner computes ``Hg`` (:mod:`prunekit.importance.grasp`).
    """
    return weight.detach() * _require_grad("grasp", weight, grad)


@UNSTRUCTURED_CRITERIA.register("lamp", needs_grad=False, normalize=None, description="layer-adaptive magnitude (Lee et al. 2021)")
def lamp(weight: Tensor, *, grad: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """LAMP score ``W[u]² / Σ_{v ≥ u} W[v]²`` with the layer's entries sorted by ascending magnitude.

    The largest weight of a layer scores 1; scores are comparable across layers, so pruning
    globally by LAMP score chooses per-layer sparsities automatically. Ties in magnitude are
    ordered by position (a stable sort), which keeps the scores deterministic.
    """
    squared = weight.detach().flatten().double().pow(2)
    ordered, order = torch.sort(squared, stable=True)
    tail_sums = ordered.flip(0).cumsum(0).flip(0)
    ratio = torch.where(tail_sums > 0, ordered / tail_sums.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(ordered))
    scores = torch.empty_like(ratio)
    scores[order] = ratio
    return scores.view_as(weight).to(weight.dtype)
