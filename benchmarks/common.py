"""Shared benchmark helpers: data location, cached dense checkpoints, result writing.

Dense models are trained once per settings and cached under ``benchmarks/work/`` (git-ignored),
keyed by a hash of the settings, so several benchmarks start from the same checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from prunekit._io import load_safetensors, save_safetensors, write_json, write_text  # noqa: E402
from prunekit.experiment.env import environment  # noqa: E402
from prunekit.experiment.rundir import settings_hash  # noqa: E402
from prunekit.report.tables import Table  # noqa: E402
from prunekit.training import TrainConfig, fit  # noqa: E402
from prunekit.zoo import create_model, get_loaders  # noqa: E402

WORK = ROOT / "work"
RESULTS = ROOT / "results"
log = logging.getLogger("benchmarks")


def data_root() -> Path:
    """``PRUNEKIT_DATA`` if set, else ``../shared/data`` beside the repository, else the user cache."""
    env = os.environ.get("PRUNEKIT_DATA")
    if env:
        return Path(env)
    shared = ROOT.parent.parent / "shared" / "data"
    return shared if shared.is_dir() else Path.home() / ".cache" / "prunekit" / "data"


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def dense_checkpoint(model: str, dataset: str, train: TrainConfig, *, batch_size: int = 128, val_fraction: float = 0.1, seed: int = 0,
                     subset: int | None = None, progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (or load the cached) dense ``model`` on ``dataset``; returns the model and its record."""
    settings = {"model": model, "dataset": dataset, "train": _train_key(train), "batch_size": batch_size, "val_fraction": val_fraction, "seed": seed}
    if subset is not None:
        settings["subset"] = subset
    key = f"dense-{model}-{dataset}-{settings_hash(settings)}"
    data = get_loaders(dataset, data_root(), batch_size=batch_size, val_fraction=val_fraction, seed=seed, subset=subset, progress=False)
    torch.manual_seed(seed)
    net = create_model(model, data.num_classes, data.input_shape)
    weights, record_file = WORK / f"{key}.safetensors", WORK / f"{key}.json"
    if weights.exists() and record_file.exists():
        net.load_state_dict(load_safetensors(weights))
        return net, {**json.loads(record_file.read_text()), "key": key}
    start = time.perf_counter()
    result = fit(net, data.train, train, val=data.val, checkpoint=WORK / f"{key}.train.safetensors", progress=progress, description=f"dense {model}")
    from prunekit.metrics import evaluate

    record = {"key": key, "settings": settings, "history": result.history, "test_accuracy": evaluate(net, data.test).accuracy, "train_seconds": time.perf_counter() - start}
    save_safetensors(weights, net.state_dict())
    write_json(record_file, record)
    return net, record


#: TrainConfig fields added after dense checkpoints were first cached: left out of the key at their defaults.
_LATER_TRAIN_FIELDS = ("precision", "channels_last", "compile", "grad_accumulation", "augment")


def _train_key(train: TrainConfig) -> dict[str, Any]:
    """``train``'s settings as cached checkpoints are keyed (keys of existing caches stay valid)."""
    dump = train.model_dump(mode="json")
    return {k: v for k, v in dump.items() if not (k in _LATER_TRAIN_FIELDS and v == TrainConfig.model_fields[k].default)}


def write_results(name: str, payload: dict[str, Any], tables: list[Table], preamble: str = "", command: str | None = None) -> None:
    """Write ``results/<name>.json`` (payload + environment) and ``results/<name>.md`` (tables).

    ``command`` is what produced them (default ``python benchmarks/<name>.py``).
    """
    command = command or f"python benchmarks/{name}.py"
    payload = {**payload, "environment": environment(), "generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(RESULTS / f"{name}.json", payload)
    body = [f"# Benchmark: {name}", "", preamble.strip(), ""] if preamble else [f"# Benchmark: {name}", ""]
    body += [t.to_markdown() for t in tables]
    body.append(f"_Generated {payload['generated']} by `{command}`; environment in `{name}.json`._\n")
    write_text(RESULTS / f"{name}.md", "\n".join(body))
