"""Turning user errors into a clear message and exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from prunekit._registry import did_you_mean
from prunekit.errors import CheckpointError, ConfigError, DataError, PrunekitError, shorten

_stderr = Console(stderr=True, soft_wrap=True)

#: exit codes: 2 = invalid input/settings, 3 = missing/corrupt data or artifacts.
EXIT_CONFIG = 2
EXIT_DATA = 3
#: Longest message printed (a message echoing user input is cut here, whatever slipped through).
MAX_MESSAGE = 4000
#: Most problems listed for one invalid recipe.
MAX_PROBLEMS = 30


def format_validation_error(exc: ValidationError, source: str = "recipe") -> str:
    """One line per problem: ``source: field.path: message (got value)``."""
    from prunekit.experiment.recipe import method_names

    tags = set(method_names())
    lines = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        # a discriminated union puts the chosen tag into the path: prune.unstructured.x -> prune.x
        parts = [p for i, p in enumerate(parts) if not (i > 0 and parts[i - 1] == "prune" and p in tags)]
        loc = ".".join(parts) or "(top level)"
        kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = str(err["loc"][-1]) if err["loc"] else ""
            msg = f"unknown key (remove it or check its spelling){did_you_mean(key, known_keys(exc.title, err['loc'][:-1]))}"
        elif kind == "union_tag_invalid":
            method = err["input"].get("method")
            msg = f"unknown method {shorten(method)}; allowed values: {', '.join(sorted(tags))}{did_you_mean(method, tags)}"
        elif kind == "missing":
            msg = "required setting is missing"
        elif kind not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {shorten(err['input'])})"
        lines.append(f"{source}: {loc[:200]}: {msg}")
    if len(lines) > MAX_PROBLEMS:
        lines = [*lines[:MAX_PROBLEMS], f"… and {len(lines) - MAX_PROBLEMS} more problems"]
    return "\n".join(lines)


def known_keys(title: str, loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed at ``loc`` inside the settings model named ``title`` (a recipe or one of its
    sections), following nested sections and ``prune``'s method tag; ``[]`` where that is unknown."""
    from pydantic import BaseModel

    from prunekit.experiment import recipe as recipes
    from prunekit.experiment.method_sections import METHODS

    model = getattr(recipes, title, None)
    parts = list(loc)
    while isinstance(model, type) and issubclass(model, BaseModel) and parts:
        part = parts.pop(0)
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        if model is recipes.Recipe and part == "prune":
            tag = parts.pop(0) if parts else None
            model = METHODS.get(tag).section if tag in METHODS else None
        else:
            model = _settings_model(field.annotation)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) and not parts else []


def _settings_model(annotation: object) -> type | None:
    """The pydantic model inside ``annotation`` (itself, or an argument of ``X | None``)."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_settings_model, get_args(annotation)) if m is not None), None)


@contextmanager
def user_errors(source: str = "recipe") -> Iterator[None]:
    """Exit 2 on invalid settings, 3 on data/artifact problems, with the message only."""
    source = source if len(source) <= 300 else f"{source[:300]}…"
    try:
        yield
    except ValidationError as exc:
        _print("invalid settings\n", format_validation_error(exc, source))
        raise typer.Exit(EXIT_CONFIG) from None
    except ConfigError as exc:
        _print("invalid settings: ", str(exc))
        raise typer.Exit(EXIT_CONFIG) from None
    except (DataError, CheckpointError) as exc:
        _print("error: ", str(exc))
        raise typer.Exit(EXIT_DATA) from None
    except PrunekitError as exc:
        _print("error: ", str(exc))
        raise typer.Exit(1) from None


def _print(label: str, message: str) -> None:
    """``label`` in bold red, then ``message`` as plain text (escaped, cut to :data:`MAX_MESSAGE`)."""
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}… (message cut at {MAX_MESSAGE:,} characters)"
    _stderr.print(f"[bold red]{escape(label.rstrip())}[/]" + (" " if label.endswith(" ") else "\n") + escape(message), highlight=False)
