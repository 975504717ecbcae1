"""The ``list`` command: registered models, datasets, criteria, schedules, methods, corruptions, recipes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from prunekit.cli.common import console
from prunekit.cli.errors import user_errors

#: What ``prunekit list datasets`` shows besides the registered datasets: your own data.
USER_DATA_KINDS = [
    ("imagefolder", "your images: data.path holds <class>/*.jpg|png (or train/, val/, test/ of them); --data imagefolder:PATH"),
    ("arrays", "your arrays: data.path is a .npz file (or a folder of .npy) with x_train, y_train, x_test, y_test; --data arrays:PATH"),
    ("package.module:function", "your dataset factory, returning (train, val, test) pairs of (images, labels)"),
]


def list_(what: Annotated[str, typer.Argument(help="models | datasets | criteria | schedules | methods | corruptions | recipes | all")] = "all") -> None:
    """List registered models, datasets, criteria, schedules, pruning methods, corruptions and shipped recipes."""
    from prunekit.experiment.method_sections import METHODS
    from prunekit.experiment.recipe import shipped_recipes
    from prunekit.importance import GROUP_CRITERIA, UNSTRUCTURED_CRITERIA
    from prunekit.metrics import CORRUPTIONS
    from prunekit.schedules import SCHEDULES
    from prunekit.zoo import MODELS
    from prunekit.zoo.data import DATASETS

    tables = {
        "models": [(n, MODELS.meta(n)["description"]) for n in MODELS.names()],
        "datasets": [(n, DATASETS.meta(n).get("description", "")) for n in DATASETS.names()] + USER_DATA_KINDS,
        "criteria": [(n, "unstructured: " + UNSTRUCTURED_CRITERIA.meta(n).get("description", "")) for n in UNSTRUCTURED_CRITERIA.names()]
        + [(n, "structured (group): " + GROUP_CRITERIA.meta(n).get("description", "")) for n in GROUP_CRITERIA.names()],
        "schedules": [(n, "") for n in SCHEDULES.names()],
        "methods": [(n, METHODS.meta(n)["description"]) for n in METHODS.names()],
        "corruptions": [(n, f"{CORRUPTIONS.meta(n).get('family', 'other')}: " + (CORRUPTIONS.get(n).__doc__ or "").strip().splitlines()[0])
                        for n in CORRUPTIONS.names()],
        "recipes": [(name, _first_comment(path)) for name, path in sorted(shipped_recipes().items())],
    }
    with user_errors("list"):
        if what != "all" and what not in tables:
            from prunekit._registry import did_you_mean
            from prunekit.errors import ConfigError

            raise ConfigError(f"unknown listing {what!r}; allowed values: {', '.join(tables)}, all{did_you_mean(what, [*tables, 'all'])}")
    for name, rows in tables.items():
        if what in ("all", name):
            table = RichTable(title=name, show_header=False)
            table.add_column("name", style="bold")
            table.add_column("description")
            for row in rows:
                table.add_row(*row)
            console.print(table)


def _first_comment(path: Path) -> str:
    """The first sentence of a recipe's leading comment block."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0] if text else ""
