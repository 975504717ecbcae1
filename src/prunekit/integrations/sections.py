"""Which ``prune:`` section a recipe source holds: read, checked to be one :class:`RecipeManager` runs, validated as in a recipe."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, cast

from pydantic import ValidationError

from prunekit._settings import Settings
from prunekit.errors import ConfigError, shorten
from prunekit.experiment.method_sections import METHODS, DSTSection, GradualSection, NMSection, StructuredSection, UnstructuredSection
from prunekit.experiment.recipe import Recipe, resolve_recipe_path
from prunekit.experiment.recipe_file import parse_yaml, read_recipe_text

#: ``prune.method`` values a :class:`~prunekit.integrations.RecipeManager` runs.
SUPPORTED = ("unstructured", "gradual", "nm", "dst", "structured")

Section = UnstructuredSection | GradualSection | NMSection | DSTSection | StructuredSection
RecipeSource = str | os.PathLike[str] | Mapping[str, Any] | Recipe | Settings


def prune_section(source: RecipeSource) -> Section:
    """The validated ``prune:`` section of a recipe file, mapping, :class:`Recipe` or section object."""
    if isinstance(source, Recipe):
        return _supported(source.prune)
    if isinstance(source, Settings):
        return _supported(source)
    if isinstance(source, Mapping):
        raw: Any = source
        where = "the given recipe"
    else:
        path = resolve_recipe_path(source)
        raw = parse_yaml(read_recipe_text(path), str(path))
        where = str(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
    section = raw.get("prune", raw) if "method" not in raw else raw
    if not isinstance(section, Mapping) or "method" not in section:
        raise ConfigError(f"{where} has no prune section: give a recipe with `prune: {{method: ...}}` or the section itself "
                          f"(methods here: {', '.join(SUPPORTED)})")
    method = section["method"]
    if method not in SUPPORTED:
        raise ConfigError(f"{where}: prune.method {shorten(method)} cannot run in your own loop; supported: {', '.join(SUPPORTED)}")
    try:
        text = json.dumps(dict(section), allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: a prune section holds only text, numbers, booleans, null, lists and mappings ({exc})") from None
    try:
        return cast(Section, METHODS.get(method).section.model_validate_json(text, strict=True))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(('prune', *map(str, e['loc'])))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise ConfigError(f"{where}: invalid prune section: {problems}") from None


def _supported(section: Any) -> Section:
    if not isinstance(section, (UnstructuredSection, GradualSection, NMSection, DSTSection, StructuredSection)):
        raise ConfigError(f"{type(section).__name__} cannot run in your own loop; give a prune section of one of: {', '.join(SUPPORTED)}")
    return section
