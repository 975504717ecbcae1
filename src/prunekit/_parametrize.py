"""Safe edits of ``torch.nn.utils.parametrize`` state on modules that may have been deep-copied.

``parametrize`` gives a parametrized module a generated class holding one property per
parametrized tensor; ``copy.deepcopy`` shares that class between original and copy, so
removing (or adding) a parametrization on one would delete (or add) the property on both.
Before any such edit we give the module a private copy of its generated class.
"""

from __future__ import annotations

import copy
from typing import TypeVar

from torch import nn
from torch.nn.utils import parametrize

P = TypeVar("P", bound=nn.Module)


def own_parametrized_class(module: nn.Module) -> None:
    """Give a parametrized ``module`` its own generated class (no-op for plain modules)."""
    if not parametrize.is_parametrized(module):
        return
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def find(module: nn.Module, name: str, kind: type[P]) -> P | None:
    """The first parametrization of type ``kind`` on ``module.<name>``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    return next((p for p in module.parametrizations[name] if isinstance(p, kind)), None)  # type: ignore[index]


def register(module: nn.Module, name: str, parametrization: nn.Module) -> None:
    """``register_parametrization`` (unsafe=True) that never touches another module's class."""
    own_parametrized_class(module)
    parametrize.register_parametrization(module, name, parametrization, unsafe=True)


def remove(module: nn.Module, name: str, leave_parametrized: bool) -> None:
    """``remove_parametrizations`` that never touches another module's class."""
    own_parametrized_class(module)
    parametrize.remove_parametrizations(module, name, leave_parametrized=leave_parametrized)


def bake_parametrizations(module: nn.Module) -> None:
    """Replace each parametrized tensor of ``module`` by its current value, in place."""
    for name in list(module.parametrizations):  # type: ignore[attr-defined]
        remove(module, name, leave_parametrized=True)


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parametrization (masks, weight sharing) made
    permanent, as one would deploy it; ``model`` itself is untouched."""
    work = copy.deepcopy(model).eval()
    for module in work.modules():
        if parametrize.is_parametrized(module):
            bake_parametrizations(module)
    return work
