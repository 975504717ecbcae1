"""The run directory: named by a hash of the resolved recipe; steps marked done are skipped."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from prunekit._io import check_links, read_json, read_jsonl, remove_temp_files, write_json, write_text
from prunekit.errors import CheckpointError, ConfigError, DamagedFileError, shorten
from prunekit.training.distributed import is_main_process

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What ``summary.json`` must hold for the report and the CLI's summary table.
SUMMARY_KEYS = ("run", "dense", "pruned")

#: A run's steps in order; ``report`` keeps no record (``summary.json`` and the report are rewritten every run).
STEPS = ("dense", "prune", "evaluate", "compress", "export", "deploy", "report")

#: What a step resumes from (shell patterns relative to the run directory): its partial training
#: checkpoints and the pruning methods' round folders, removed when the step is redone.
RESUMABLE = {
    "dense": ("checkpoints/dense-train.safetensors",),
    "prune": ("rounds", "structured", "lottery", "search", "checkpoints/gradual-train.safetensors", "checkpoints/dst-train.safetensors",
              "checkpoints/nm-*-train.safetensors", "checkpoints/depth-*-train.safetensors"),
    "compress": ("checkpoints/compress-finetune.safetensors",),
}


def steps_to_redo(force: bool = False, from_step: str | None = None) -> tuple[str, ...]:
    """The steps a run does again: every step with ``force``, ``from_step`` and the steps after it, else none."""
    if force and from_step is not None:
        raise ConfigError(f"give either force (redo every step) or from_step={from_step!r}, not both")
    if from_step is not None and from_step not in STEPS:
        raise ConfigError(f"unknown step {shorten(from_step)} to redo from; allowed values: {', '.join(STEPS)}")
    if force:
        return STEPS
    return STEPS[STEPS.index(from_step):] if from_step is not None else ()


def settings_hash(settings: dict[str, Any], length: int = 10) -> str:
    """Stable short hash of JSON-able settings (key order does not matter)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


class RunDir:
    """Paths and step bookkeeping of one run.

    Layout: ``recipe.yaml``, ``environment.json``, ``inputs.json`` (see :mod:`prunekit.experiment.inputs`), ``metrics.jsonl``, ``checkpoints/``, ``masks/``,
    ``steps/<step>.json`` (a step's result, written last, so its presence means "done"),
    ``summary.json``, ``report.md``, ``report.html``, ``plots/``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def redo_hint(self) -> str:
        """How to redo a damaged step of this run."""
        return f"re-run `prunekit run {self.path / 'recipe.yaml'} --out {self.path.parent}` to redo the step that wrote it"

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
        """The recorded result of a done step (:class:`CheckpointError` if missing or damaged)."""
        return read_json(self.step_file(step), "step record")

    def reuse(self, step: str, load: Callable[[dict[str, Any]], T]) -> T | None:
        """``load(result)`` of a done step (e.g. ``dict``, or reloading its checkpoint); ``None`` when
        the step has not run or a file it wrote is missing or damaged — logged as a warning naming
        the file, so that the caller redoes the step."""
        if not self.done(step):
            return None
        try:
            return load(self.result(step))
        except CheckpointError as exc:
            log.warning("%s; redoing step %r", exc, step)
            return None

    def mark_done(self, step: str, result: dict[str, Any]) -> None:
        """Record ``step``'s result (rank 0 only under torchrun; the others wait at the step's barrier)."""
        if is_main_process():
            write_json(self.step_file(step), result)

    def redo(self, steps: Iterable[str]) -> None:
        """Make ``steps`` run again from their start: remove what they would resume from
        (:data:`RESUMABLE`), then their records. Nothing outside this run directory is touched."""
        steps = list(steps)
        for step in steps:
            for pattern in RESUMABLE.get(step, ()):
                for path in sorted(self.path.glob(pattern)):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
        for step in steps:
            if self.done(step):
                log.info("%s: redoing (removed %s)", step, self.step_file(step))
                self.step_file(step).unlink()

    def records(self) -> list[dict[str, Any]]:
        """metrics.jsonl records, keeping the last of any duplicates left by a killed-and-resumed run."""
        unique: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl(self.metrics):
            key = json.dumps({k: rec.get(k) for k in ("kind", "phase", "method", "round", "epoch")}, sort_keys=True)
            unique.pop(key, None)
            unique[key] = rec
        return list(unique.values())

    def summary(self) -> dict[str, Any]:
        """``summary.json`` of a finished run (:class:`CheckpointError` if missing, damaged or not a summary)."""
        path = self.path / "summary.json"
        if not path.exists():
            raise CheckpointError(f"{path} not found: is {self.path} a finished run directory?")
        summary = read_json(path, "run summary", fix=self.redo_hint)
        missing = [k for k in SUMMARY_KEYS if not isinstance(summary.get(k), dict)]
        if missing:
            raise DamagedFileError(f"run summary {path} is damaged (no {', '.join(missing)} section); {self.redo_hint}")
        return summary

    def check_links(self) -> None:
        """Refuse symbolic links inside the run directory that lead out of it (:class:`CheckpointError`)."""
        check_links(self.path, what="the run directory")

    def open(self) -> RunDir:
        """Check an existing run directory before writing into it: no links out of it; temporary
        files left by a writer killed mid-write are removed."""
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path} is not a directory; give a run directory (runs/<name>-<hash>)")
        self.check_links()
        for path in remove_temp_files(self.path):
            log.info("removed %s (left by an interrupted write)", path)
        return self

    def initialise(self, resolved_recipe: dict[str, Any], environment: dict[str, Any]) -> None:
        """Write the resolved recipe and the environment (first time only for the environment)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.open()
        write_text(self.path / "recipe.yaml", yaml.safe_dump(resolved_recipe, sort_keys=False))
        env_file = self.path / "environment.json"
        if not env_file.exists():
            write_json(env_file, environment)
