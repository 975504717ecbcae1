"""The ``prunekit`` command: the typer app, its version option and its commands (defined in sibling modules)."""

from __future__ import annotations

from typing import Annotated

import typer

from prunekit.cli.analyze import analyze
from prunekit.cli.artifacts import compress, decompress, export, report
from prunekit.cli.common import configure_logging as _configure_logging  # noqa: F401 - tests import it from here
from prunekit.cli.common import console
from prunekit.cli.listing import list_
from prunekit.cli.run_commands import check, demo, prune, run

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Prune computer-vision networks and measure what it really gains.")


def _print_version(value: bool) -> None:
    if value:
        import torch

        from prunekit._version import __version__

        console.print(f"prunekit {__version__}, torch {torch.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the prunekit and torch versions and exit")] = False,
) -> None:
    """Prune computer-vision networks and measure what it really gains."""


# Registered in the order `prunekit --help` lists them.
app.command()(run)
app.command()(prune)
app.command()(check)
app.command()(demo)
app.command()(report)
app.command()(analyze)
app.command()(compress)
app.command()(decompress)
app.command()(export)
app.command("list")(list_)


def main() -> None:
    """Entry point of the ``prunekit`` console script."""
    app()
