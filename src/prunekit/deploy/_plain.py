"""A plain inference copy of a model: every parametrization baked into ordinary parameters.

``torch.nn.utils.parametrize.remove_parametrizations`` deletes the property from the module's
*class*, and ``copy.deepcopy`` of a parametrized module shares that dynamically created class with
the original, so stripping a deep copy that way breaks the original model. Baking here swaps the
copy's instance back to its original class instead and never touches the shared class.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize


def bake_parametrizations(module: nn.Module) -> None:
    """Replace each parametrized tensor of ``module`` by its current value, in place, class untouched."""
    values = {}
    with torch.no_grad():
        for name, plist in module.parametrizations.items():  # type: ignore[attr-defined]
            values[name] = (getattr(module, name).detach().clone(), isinstance(plist.original, nn.Parameter))
    module.__class__ = module.__class__.__bases__[0]
    del module.parametrizations
    for name, (value, is_param) in values.items():
        if is_param:
            module.register_parameter(name, nn.Parameter(value))
        else:
            module.register_buffer(name, value)


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with masks and any other parametrization made permanent.

    ``model`` itself is left untouched.
    """
    work = copy.deepcopy(model).eval()
    for module in work.modules():
        if parametrize.is_parametrized(module):
            bake_parametrizations(module)
    return work
