"""Renamed public names keep working for one release: a module ``__getattr__`` that warns and returns the new object.

>>> __getattr__ = renamed(__name__, {"GraphOptions": ("GraphConfig", lambda: GraphConfig)})
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping


def renamed(module: str, names: Mapping[str, tuple[str, Callable[[], object]]]) -> Callable[[str], object]:
    """A module ``__getattr__``: ``old`` → ``(new name shown in the warning, function returning the new object)``."""

    def __getattr__(name: str) -> object:
        if name in names:
            new, get = names[name]
            warnings.warn(f"{module}.{name} is deprecated and will be removed in the next release; use {new}", DeprecationWarning, stacklevel=2)
            return get()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
