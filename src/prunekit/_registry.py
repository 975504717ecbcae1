"""One generic registry: models, datasets, criteria, schedules and pruners all use it."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from prunekit.errors import UnknownNameError, shorten

T = TypeVar("T")


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (up to three close matches of ``name`` among ``choices``), or ``""``."""
    if not isinstance(name, str) or len(name) > 200:
        return ""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    """A name → object table with a decorator, lookups with helpful errors and wildcards.

    >>> criteria: Registry[Callable] = Registry("criterion")
    >>> @criteria.register("magnitude")
    ... def magnitude(w): return w.abs()
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator that registers its target under ``name`` (default: its ``__name__``)."""

        def decorator(obj: T) -> T:
            self.add(name or obj.__name__, obj, **meta)  # type: ignore[attr-defined]
            return obj

        return decorator

    def add(self, name: str, obj: T, *, overwrite: bool = False, **meta: Any) -> None:
        """Register ``obj`` under ``name``; refuses to replace an entry unless ``overwrite``."""
        if not overwrite and name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
        self._items[name] = obj
        self._meta[name] = dict(meta)

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise :class:`UnknownNameError` listing the allowed names."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def check(self, name: str) -> str:
        """``name`` if registered, else ``ValueError`` listing the allowed names (for pydantic validators)."""
        if name not in self._items:
            raise ValueError(self.unknown_message(name))
        return name

    def unknown_message(self, name: str, also: str = "") -> str:
        """``unknown <kind> '<name>'; allowed values: ...; did you mean ...?`` (``also`` names further accepted forms)."""
        allowed = ", ".join(self.names()) or "(none registered)"
        return f"unknown {self.kind} {shorten(name)}; allowed values: {allowed}{' or ' + also if also else ''}{did_you_mean(name, self.names())}"

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata given at registration (e.g. description, default input size)."""
        self.get(name)
        return dict(self._meta[name])

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order."""
        return list(self._items.items())

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style wildcard."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
