"""Rich progress bars for long loops, silent when disabled or not attached to a terminal/notebook."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def make_progress(enabled: bool = True, console: Console | None = None) -> Progress:
    """A Progress with description, bar, count, elapsed and remaining time; logs to stderr.

    Descriptions and status are plain text (never rich markup), so names with brackets show as they are."""
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    """Context manager yielding a started :class:`rich.progress.Progress`."""
    progress = make_progress(enabled)
    with progress:
        yield progress


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (a light wrapper for one-off loops)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(enabled) as progress:
        task = progress.add_task(description, total=total, status="")
        for item in items:
            yield item
            progress.advance(task)
