"""A whole recipe from a few facts: what ``prunekit prune MODEL --data DATA --checkpoint W`` runs.

:func:`quick_recipe` returns plain recipe data (validated by :func:`~prunekit.experiment.recipe.load_recipe`
like any YAML file), so the one-command path writes exactly the run directory a recipe would, and
``--save-recipe`` hands the user the YAML to grow from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prunekit.errors import ConfigError

#: Fine-tuning after pruning a trained model: gentle enough for a checkpoint trained elsewhere.
FINETUNE_OPTIMIZER = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
#: Dense training when no checkpoint is given (one-cycle reaches a usable model in few epochs).
TRAIN_OPTIMIZER = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}


def quick_recipe(
    model: str,
    data: str,
    *,
    checkpoint: str | None = None,
    macs_reduction: float | None = None,
    latency_reduction: float | None = None,
    ratio: float | None = None,
    sparsity: float | None = None,
    finetune_epochs: float = 2.0,
    epochs: float = 10.0,
    batch_size: int | None = None,
    runtime: str | None = None,
    device: str = "cpu",
    name: str | None = None,
) -> dict[str, Any]:
    """Recipe data for pruning ``model`` on ``data``, fine-tuning, evaluating and reporting.

    ``model``: a zoo name, ``timm/<name>``, ``package.module:function`` or ``path/file.py:function``;
    ``data``: a registered dataset, ``imagefolder:PATH``, ``arrays:PATH`` or ``package.module:function``.
    Without ``checkpoint`` the dense model is trained first (``epochs``, one-cycle SGD).
    The target decides the method: ``sparsity`` gives unstructured global magnitude pruning;
    otherwise channels are removed for real (structured) to ``macs_reduction`` (default 2×),
    ``latency_reduction`` (timed on ``runtime``) or a uniform ``ratio``. Relative paths are made
    absolute (they are relative to the working directory).
    """
    from prunekit.zoo.data import parse_data_argument

    targets = {k: v for k, v in (("macs_reduction", macs_reduction), ("latency_reduction", latency_reduction),
                                 ("ratio", ratio), ("sparsity", sparsity)) if v is not None}
    if len(targets) > 1:
        raise ConfigError(f"give one pruning target, not {' and '.join('--' + k.replace('_', '-') for k in targets)}")
    data_section = parse_data_argument(data)
    for key in ("path", "root"):
        if data_section.get(key):
            data_section[key] = str(Path(data_section[key]).expanduser().absolute())
    if batch_size is not None:
        data_section["batch_size"] = batch_size
    finetune = {"epochs": finetune_epochs, "optimizer": FINETUNE_OPTIMIZER, "lr_schedule": {"name": "cosine"}}
    if sparsity is not None:
        prune: dict[str, Any] = {"method": "unstructured", "sparsity": sparsity, "scope": "global", "finetune": finetune}
    else:
        prune = {"method": "structured", **(targets or {"macs_reduction": 2.0}), "finetune": finetune}
        if runtime is not None:
            prune["runtime"] = runtime
    model_section: dict[str, Any] = {"name": _absolute_factory_file(model)}
    if checkpoint is not None:
        model_section["checkpoint"] = str(Path(checkpoint).expanduser().absolute())
    recipe: dict[str, Any] = {
        "name": name or default_name(model, data_section),
        "device": device,
        "model": model_section,
        "data": data_section,
        "prune": prune,
    }
    if checkpoint is None:
        recipe["train"] = {"epochs": epochs, "optimizer": TRAIN_OPTIMIZER, "lr_schedule": {"name": "onecycle"}}
    if runtime is not None:
        recipe["evaluate"] = {"latency_runtime": runtime}
    return recipe


def default_name(model: str, data_section: dict[str, Any]) -> str:
    """A run name from the model and dataset, e.g. ``my_model.build-on-flowers``."""
    source, sep, function = model.rpartition(":")
    if sep:
        module = Path(source).stem if source.endswith(".py") else source.rsplit(".", 1)[-1]
        model_part = f"{module}.{function}"
    else:
        model_part = model.removeprefix("timm/")
    data_part = Path(str(data_section["path"])).name if data_section.get("path") else str(data_section["name"])
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model_part}-on-{data_part}").strip("_.-") or "prune"
    return text[:80]


def _absolute_factory_file(model: str) -> str:
    """``model`` with a relative ``file.py:function`` path made absolute (other forms unchanged)."""
    file, sep, function = model.rpartition(":")
    if sep and file.endswith(".py"):
        return f"{Path(file).expanduser().absolute()}:{function}"
    return model
