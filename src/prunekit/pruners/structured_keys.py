"""Groups and layers by name: keys of groups that survive pruning, and a config's per-layer patterns."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from torch import nn

from prunekit.errors import ConfigError
from prunekit.pruners.structured_config import StructuredConfig
from prunekit.structured.groups import Group


def group_key(group: Group) -> str:
    """A name for a group that survives pruning (module names of its output members)."""
    return ",".join(group.modules("out")) or ",".join(m.fqn for m in group.members)


def size_key(group: Group) -> str:
    """:func:`group_key` with the unit width when above 1, which also survives pruning (whole heads and head dims of one layer differ),
    and with the consuming layers where the group holds only part of a layer's outputs (the sections of one split layer differ)."""
    width = group.width()
    key = group_key(group) if width == 1 else f"{group_key(group)}@{width}"
    if any(m.role == "out" and (m.units < 0).any() for m in group.members):
        key += ">" + ",".join(group.modules("in"))
    return key


def override(group: Group, patterns: Mapping[str, Any], default: Any) -> Any:
    """The value of the first pattern matching one of the group's (output) modules, else ``default``."""
    names = group.modules("out") or group.modules()
    return next((v for p, v in patterns.items() if any(fnmatch.fnmatchcase(m, p) for m in names)), default)


def check_layer_patterns(model: nn.Module, config: StructuredConfig) -> None:
    """Every per-layer pattern must name at least one module, so a typo is not silently ignored."""
    names = [n for n, _ in model.named_modules() if n]
    for field_name in ("layer_ratios", "layer_round_to"):
        unmatched = [p for p in getattr(config, field_name) if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise ConfigError(f"{field_name}: pattern(s) {unmatched} match no module of the model; module names look like {names[:5]}")
