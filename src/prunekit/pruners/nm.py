"""N:M pruner: permute channels (optional), compute N:M masks, attach them for fixed-mask fine-tuning.

Masks attach as parametrizations (``weight = original * mask``), so any later training keeps the
pruned weights at zero in every forward pass: the N:M pattern is fixed from here on. Layers whose
input dimension is not a multiple of M are skipped with a logged warning (see ``prunekit.masks.nm``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks.maskset import MaskSet
from prunekit.masks.nm import check_nm, nm_maskset
from prunekit.masks.targets import effective_weight, prunable_parameters
from prunekit.pruners.nm_permutation import permute_for_nm

logger = logging.getLogger(__name__)

#: Built-in scores for N:M selection (tensor in, scores out). A callable may be passed instead.
CRITERIA: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType({"magnitude": torch.abs})


def _criterion(criterion: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(criterion):
        return criterion
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown N:M criterion {criterion!r}; allowed values: {', '.join(sorted(CRITERIA))}, or a callable")
    return CRITERIA[criterion]


def nm_prune(
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
) -> MaskSet:
    """Prune ``model`` in place to N:M sparsity and attach the masks; returns them.

    ``criterion`` scores each weight (``"magnitude"`` or a callable ``weight -> scores``); the
    ``n`` highest scores of every ``m`` consecutive input channels are kept. With ``permute=True``
    the channel-permutation search (``prunekit.pruners.nm_permutation``, bounded by
    ``max_passes``/``max_partners``) first reorders channels where that provably keeps the
    function, so more score survives. ``include``/``exclude`` select parameters as in
    :func:`prunekit.masks.prunable_parameters`. Build the optimizer after this call.
    """
    check_nm(n, m)
    score_fn = _criterion(criterion)
    names = prunable_parameters(model, include, exclude)
    if permute:
        permute_for_nm(model, n, m, names=names, score_fn=score_fn, max_passes=max_passes, max_partners=max_partners, seed=seed)
    scores = {name: score_fn(effective_weight(model, name).detach()) for name in names}
    masks = nm_maskset(model, n, m, scores=scores, names=names)
    masks.attach(model)
    logger.info("N:M %d:%d masks attached to %d of %d selected weights", n, m, len(masks), len(names))
    return masks
