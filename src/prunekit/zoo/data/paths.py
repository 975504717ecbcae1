"""Where datasets live on disk."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the data root.
DATA_ENV = "PRUNEKIT_DATA"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/prunekit/data``, or ``~/.cache/prunekit/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "prunekit" / "data"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$PRUNEKIT_DATA``, else :func:`default_cache_dir`.

    A dataset lives in ``<data root>/<folder>`` (``mnist``, ``fashion-mnist``, ``cifar-10``).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return default_cache_dir()
