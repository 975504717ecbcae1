"""N:M pruner: permute channels (optional), compute N:M masks, attach them for fixed-mask fine-tuning.

Masks attach as parametrizations (``weight = original * mask``), so any later training keeps the
pruned weights at zero in every forward pass: the N:M pattern is fixed from here on. Layers whose
input dimension is not a multiple of M are skipped with a logged warning (see ``prunekit.masks.nm``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prunekit._registry import Registry
from prunekit.errors import ConfigError
from prunekit.importance.calibration import Calibration
from prunekit.masks.maskset import MaskSet, strip
from prunekit.masks.nm import check_nm, nm_maskset
from prunekit.masks.targets import effective_weight, prunable_parameters
from prunekit.pruners.lifecycle import check_fraction
from prunekit.pruners.nm_permutation import missing_example_inputs, permute_for_nm

logger = logging.getLogger(__name__)

#: name → scores for N:M selection (weight in, scores out). A callable may be passed instead.
NM_CRITERIA: Registry[Callable[[Tensor], Tensor]] = Registry("N:M criterion")
NM_CRITERIA.add("magnitude", torch.abs, description="|w|")


def _criterion(criterion: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(criterion):
        return criterion
    if criterion not in NM_CRITERIA:
        raise ConfigError(NM_CRITERIA.unknown_message(criterion, also="a callable"))
    return NM_CRITERIA.get(criterion)


def prune_nm(
    model: nn.Module,
    n: int = 2,
    m: int = 4,
    criterion: str | Callable[[Tensor], Tensor] = "magnitude",
    permute: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    max_passes: int = 2,
    max_partners: int = 32,
    seed: int = 0,
    *,
    example_inputs: Any = None,
    coupled: bool = False,
) -> MaskSet:
    """Prune ``model`` in place to N:M sparsity and attach the masks; returns them.

    ``criterion`` scores each weight (``"magnitude"`` or a callable ``weight -> scores``); the
    ``n`` highest scores of every ``m`` consecutive input channels are kept. With ``permute=True``
    the channel-permutation search (``prunekit.pruners.nm_permutation``, bounded by
    ``max_passes``/``max_partners``) first reorders channels where the dependency graph, traced on
    ``example_inputs`` (required then), proves that keeps the function, so more score survives;
    ``coupled=True`` extends it from plain chains to residual and other shared groups.
    ``include``/``exclude`` select parameters as in :func:`prunekit.masks.prunable_parameters`.
    Build the optimizer after this call.
    """
    check_nm(n, m)
    score_fn = _criterion(criterion)
    names = prunable_parameters(model, include, exclude)
    if permute:
        if example_inputs is None:
            raise missing_example_inputs("prune_nm(model, 2, 4, permute=True, example_inputs=torch.randn(1, 3, 32, 32)), "
                                         "or NMPruner(2, 4, permute=True).step(model, example_inputs)")
        permute_for_nm(model, n, m, example_inputs, names=names, score_fn=score_fn, coupled=coupled,
                       max_passes=max_passes, max_partners=max_partners, seed=seed)
    scores = {name: score_fn(effective_weight(model, name).detach()) for name in names}
    masks = nm_maskset(model, n, m, scores=scores, names=names)
    masks.attach(model)
    logger.info("N:M %d:%d masks attached to %d of %d selected weights", n, m, len(masks), len(names))
    return masks


def nm_prune(*args: Any, **kwargs: Any) -> MaskSet:
    """Deprecated name of :func:`prune_nm`."""
    warnings.warn("nm_prune is deprecated; call prune_nm (same arguments)", DeprecationWarning, stacklevel=2)
    return prune_nm(*args, **kwargs)


class NMPruner:
    """The :mod:`~prunekit.pruners.lifecycle` face of :func:`prune_nm`: one step, the pattern is all or nothing."""

    def __init__(self, n: int = 2, m: int = 4, **options: Any) -> None:
        """``options`` go to :func:`prune_nm` (``permute``, ``coupled``, ``criterion``, ...)."""
        check_nm(n, m)
        self.n, self.m, self.options = n, m, options

    def prepare(self, model: nn.Module, example_inputs: Any = None) -> None:
        """Nothing to measure: every group of M weights keeps N."""

    def schedule(self) -> list[float]:
        return [1.0]

    def step(self, model: nn.Module, example_inputs: Any = None, fraction: float = 1.0, calibration: Calibration | None = None) -> MaskSet:
        check_fraction(fraction)
        if fraction != 1.0:
            raise ConfigError(f"N:M pruning is one step (an {self.n}:{self.m} pattern has no partial form); got fraction {fraction}")
        options = self.options if example_inputs is None else {**self.options, "example_inputs": example_inputs}
        return prune_nm(model, self.n, self.m, **options)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Masks live in the model's state; there is nothing else to restore."""

    def finish(self, model: nn.Module) -> nn.Module:
        """Fold the masks into the weights (:func:`prunekit.masks.strip`)."""
        return strip(model)
