"""Paths in a recipe: relative to the recipe file's folder, made absolute before validation.

A recipe names files (``model.checkpoint``, ``data.root``, ``data.path``, a ``path/to/file.py:factory``
model or dataset, timm's ``model.kwargs.checkpoint_path`` and ``model.kwargs.pretrained_cfg_overlay.file``).
A relative path written in the recipe file is relative to the folder that holds the file, wherever
prunekit is started from; a relative path given with ``--set`` (or in a recipe given as a dict) is
relative to the working directory. ``~`` is expanded. The resolved recipe, written into the run
directory, holds absolute paths.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Dotted keys of recipe settings that hold a file or folder path.
PATH_KEYS = ("model.checkpoint", "data.root", "data.path")
#: Path-valued timm arguments under ``model.kwargs`` (for ``timm/<name>`` models).
TIMM_PATH_KEYS = ("model.kwargs.checkpoint_path", "model.kwargs.pretrained_cfg_overlay.file")


def resolve_paths(raw: Mapping[str, Any], base: str | os.PathLike[str]) -> dict[str, Any]:
    """A copy of the recipe data ``raw`` with every relative path setting made absolute against ``base``.

    Values that are not text are left for validation to report."""
    result: dict[str, Any] = copy.deepcopy(dict(raw))
    folder = Path(base).absolute()
    for section in ("model", "data"):
        if isinstance(result.get(section), dict) and isinstance(result[section].get("name"), str):
            result[section]["name"] = _factory_file(result[section]["name"], folder)
    model = result.get("model")
    keys = PATH_KEYS + (TIMM_PATH_KEYS if isinstance(model, dict) and str(model.get("name")).startswith("timm/") else ())
    for key in keys:
        *parents, leaf = key.split(".")
        node: Any = result
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), str) and node[leaf]:
            node[leaf] = absolute(node[leaf], folder)
    return result


def absolute(path: str, base: Path) -> str:
    """``path`` (``~`` expanded) as an absolute, normalised path; a relative one is relative to ``base``."""
    return os.path.normpath(base / Path(path).expanduser())


def _factory_file(name: str, base: Path) -> str:
    """``path/to/file.py:factory`` with an absolute path; any other model name unchanged."""
    source, sep, function = name.rpartition(":")
    return f"{absolute(source, base)}:{function}" if sep and source.endswith(".py") else name
