"""A small finished run (digits, one-shot 50%, compressed) to damage, copied per test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from prunekit.experiment.recipe import Recipe, load_recipe
from prunekit.experiment.runner import run_recipe

from tests.experiment.recipes import tiny_recipe


def small_recipe() -> Recipe:
    raw = tiny_recipe(baselines=[], schedule=None, sparsity=0.5)
    raw["evaluate"] = {"latency": False}  # every result is deterministic
    return load_recipe(raw, ["compress.fc_bits=4"])


def finish(out: Path) -> Path:
    """Run :func:`small_recipe` under ``out``; returns the run directory."""
    return run_recipe(small_recipe(), out, progress=False)


def copy_out(run: Path, dest: Path) -> Path:
    """Copy the run's output folder (run directory and dense cache) to ``dest``; returns the copied run directory."""
    shutil.copytree(run.parent, dest, symlinks=True)
    return dest / run.name


def summary(run: Path) -> dict[str, Any]:
    """summary.json without what depends on where the run directory is."""
    data = json.loads((run / "summary.json").read_text())
    data.get("compression", {}).pop("path", None)
    return data
