"""A plain inference copy of a model: every parametrization (masks, weight sharing) made permanent."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

from prunekit import _parametrize


def bake_parametrizations(module: nn.Module) -> None:
    """Replace each parametrized tensor of ``module`` by its current value, in place."""
    for name in list(module.parametrizations):  # type: ignore[attr-defined]
        _parametrize.remove(module, name, leave_parametrized=True)


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parametrization made permanent; ``model`` is untouched."""
    work = copy.deepcopy(model).eval()
    for module in work.modules():
        if parametrize.is_parametrized(module):
            bake_parametrizations(module)
    return work
