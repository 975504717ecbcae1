"""``--set a.b=value`` overrides applied to a recipe's raw mapping before validation."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from prunekit.errors import ConfigError, shorten
from prunekit.experiment.recipe_file import parse_yaml


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"prune.sparsity=0.9"`` → ``(["prune", "sparsity"], 0.9)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key (e.g. prune.sparsity=0.9), got {shorten(text)}")
    parts = [part.strip() for part in key.split(".")]
    if not all(parts):
        raise ConfigError(f"--set {shorten(key)}: the dotted key has an empty part; write it as section.setting (e.g. prune.sparsity)")
    value = parse_yaml(raw, f"--set {shorten(key)}") if raw.strip() else None
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``KEY=VALUE`` override set (intermediate mappings are created)."""
    result: dict[str, Any] = copy.deepcopy(dict(raw))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {shorten(text)}: {'.'.join(path[: i + 1])} is a {type(child).__name__}, not a section")
            node = child
        node[path[-1]] = value
    return result
