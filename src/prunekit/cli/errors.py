"""Turning user errors into a clear message and exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from prunekit.errors import CheckpointError, ConfigError, DataError, PrunekitError

_stderr = Console(stderr=True)

#: exit codes: 2 = invalid input/settings, 3 = missing/corrupt data or artifacts.
EXIT_CONFIG = 2
EXIT_DATA = 3


def format_validation_error(exc: ValidationError, source: str = "recipe") -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        elif err["type"] == "literal_error":
            msg = f"{msg}"
        lines.append(f"{source}: {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


@contextmanager
def user_errors(source: str = "recipe") -> Iterator[None]:
    """Exit 2 on invalid settings, 3 on data/artifact problems, with the message only."""
    try:
        yield
    except ValidationError as exc:
        _stderr.print(f"[bold red]invalid settings[/]\n{format_validation_error(exc, source)}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    except ConfigError as exc:
        _stderr.print(f"[bold red]invalid settings:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    except (DataError, CheckpointError) as exc:
        _stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_DATA) from None
    except PrunekitError as exc:
        _stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
