"""The run directory: named by a hash of the resolved recipe; steps marked done are skipped."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from prunekit._io import read_jsonl, write_json, write_text


def settings_hash(settings: dict[str, Any], length: int = 10) -> str:
    """Stable short hash of JSON-able settings (key order does not matter)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


class RunDir:
    """Paths and step bookkeeping of one run.

    Layout: ``recipe.yaml``, ``environment.json``, ``metrics.jsonl``, ``checkpoints/``, ``masks/``,
    ``steps/<step>.json`` (a step's result, written last, so its presence means "done"),
    ``summary.json``, ``report.md``, ``report.html``, ``plots/``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def checkpoint(self, name: str) -> Path:
        return self.path / "checkpoints" / f"{name}.safetensors"

    def masks(self, name: str) -> Path:
        return self.path / "masks" / f"{name}.safetensors"

    def step_file(self, step: str) -> Path:
        return self.path / "steps" / f"{step}.json"

    def done(self, step: str) -> bool:
        return self.step_file(step).exists()

    def result(self, step: str) -> dict[str, Any]:
        return json.loads(self.step_file(step).read_text())

    def mark_done(self, step: str, result: dict[str, Any]) -> None:
        write_json(self.step_file(step), result)

    def records(self) -> list[dict[str, Any]]:
        """metrics.jsonl records, keeping the last of any duplicates left by a killed-and-resumed run."""
        unique: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl(self.metrics):
            key = json.dumps({k: rec.get(k) for k in ("kind", "phase", "method", "round", "epoch")}, sort_keys=True)
            unique.pop(key, None)
            unique[key] = rec
        return list(unique.values())

    def initialise(self, resolved_recipe: dict[str, Any], environment: dict[str, Any]) -> None:
        """Write the resolved recipe and the environment (first time only for the environment)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / "recipe.yaml", yaml.safe_dump(resolved_recipe, sort_keys=False))
        env_file = self.path / "environment.json"
        if not env_file.exists():
            write_json(env_file, environment)
