"""What a trace changes for a while, on the model and on torch, and how each change is undone."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from prunekit.structured.values import TracedInt


@contextlib.contextmanager
def concrete_autocast(values: Callable[[Any], Any]) -> Iterator[None]:
    """While tracing, ``torch.autocast(x.device.type, dtype=x.dtype)`` gets the concrete values of its arguments.

    autocast checks its arguments in Python (a proxy is not a ``str``), so a region opened with
    values read from a tensor would otherwise make the module untraceable. The region itself runs
    for real (the tracer executes as it records) and the pruned model keeps its own ``forward``, so
    the autocast stays where it was. The patch is undone when tracing ends.
    """
    cls = torch.amp.autocast_mode.autocast
    original = cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *values(args), **values(kwargs))

    cls.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.__init__ = original  # type: ignore[method-assign]


def instrument(module: nn.Module, path: str) -> dict[str, Any]:
    """Replace the module's int (and int-tuple / int-list) attributes by :class:`TracedInt`; return the originals."""
    originals: dict[str, Any] = {}
    for name, value in list(vars(module).items()):
        if name.startswith("_") or name == "training":
            continue
        if type(value) is int:
            originals[name] = value
            module.__dict__[name] = TracedInt(value, path, name)
        elif type(value) in (tuple, list) and value and all(type(v) is int for v in value):
            originals[name] = value
            module.__dict__[name] = type(value)(TracedInt(v, path, name, i) for i, v in enumerate(value))
    return originals


def restore(module: nn.Module, originals: dict[str, Any]) -> None:
    module.__dict__.update(originals)


def container_state(model: nn.Module) -> list[tuple[Any, Any]]:
    """Shallow copies of modules' dict/list attributes (caches a forward might fill with proxies)."""
    saved = []
    for module in model.modules():
        for name, value in vars(module).items():
            if not name.startswith("_") and isinstance(value, (dict, list)):
                saved.append((value, copy.copy(value)))
    return saved


def restore_containers(saved: list[tuple[Any, Any]]) -> None:
    for value, before in saved:
        if isinstance(value, dict):
            value.clear()
            value.update(before)
        else:
            value[:] = before
