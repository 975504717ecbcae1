"""Turning user errors into a clear message and exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

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
            msg = "unknown key (remove it or check its spelling)"
        elif kind == "union_tag_invalid":
            msg = f"unknown method {shorten(err['input'].get('method'))}; allowed values: {', '.join(sorted(tags))}"
        elif kind == "missing":
            msg = "required setting is missing"
        elif kind not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {shorten(err['input'])})"
        lines.append(f"{source}: {loc[:200]}: {msg}")
    if len(lines) > MAX_PROBLEMS:
        lines = [*lines[:MAX_PROBLEMS], f"… and {len(lines) - MAX_PROBLEMS} more problems"]
    return "\n".join(lines)


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
