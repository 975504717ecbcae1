"""What the commands share: the console, logging set-up and option types."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

#: Everything printed is plain text, never rich markup: paths and messages may hold brackets (``[/bold]``, ``prunekit[onnx]``).
console = Console(markup=False)

OutOption = Annotated[Path, typer.Option("--out", "-o", help="parent folder of run directories")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override a setting: KEY=VALUE (dotted key, YAML value); repeatable")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
TrustOption = Annotated[bool, typer.Option("--trust-code", help="let the run's recipe import its model factory (package.module:function): only for run directories you trust")]
ForceOption = Annotated[bool, typer.Option("--force", help="redo every step (other runs and the dense cache's other models stay)")]
FromStepOption = Annotated[Optional[str], typer.Option("--from-step", metavar="STEP",
                           help="redo STEP and the steps after it: dense, prune, evaluate, compress, export, deploy, report")]
RunDirArgument = Annotated[Path, typer.Argument(help="a finished run directory")]


def configure_logging(quiet: bool) -> None:
    """Warnings from everything; step-level progress messages from the experiment runner."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False, show_time=False, markup=False)], force=True)
    logging.getLogger("prunekit.experiment").setLevel(logging.WARNING if quiet else logging.INFO)
