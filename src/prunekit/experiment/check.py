"""``prunekit check``: everything about a recipe that is knowable without data or training.

:func:`check_recipe` is also the first step of every run, so a recipe that would fail after the
dense model was trained (a misspelled layer pattern, a checkpoint of the wrong model, a model
factory that does not accept its arguments) fails in about a second instead, with nothing
written: no run directory, no data folder, no cache. The model is built on PyTorch's meta device
(shapes only, no memory, no weights), or on the CPU when a factory cannot build on meta.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from prunekit.errors import CheckpointError, ConfigError, shorten
from prunekit.experiment.recipe import Recipe
from prunekit.experiment.recipe_base import DataSection
from prunekit.zoo.data.registry import DatasetSpec

def check_recipe(recipe: Recipe, out_dir: str | os.PathLike[str] = "runs") -> nn.Module:
    """Raise :class:`ConfigError` (settings) or :class:`CheckpointError`/``DataError`` (files) for
    any problem found without data or training; writes nothing. Returns the model built on the
    meta device (or CPU), whose names the recipe's layer patterns were matched against."""
    from prunekit.zoo.data import DATASETS

    _check_out_dir(Path(out_dir))
    model = build_unloaded_model(recipe, *data_shape(recipe.data))
    if recipe.model.checkpoint:
        check_checkpoint(Path(recipe.model.checkpoint), model)
    if recipe.model.name.startswith("timm/"):
        _check_timm_weights(recipe.model.name, recipe.model.kwargs, model)
    for field, check in _pattern_checks(recipe).items():
        try:
            check(model)
        except ConfigError as exc:
            raise ConfigError(f"{field}: {exc}") from None
    if recipe.data.kind == "registered":
        _check_data_files(recipe, DATASETS.get(recipe.data.name))
    return model


def data_shape(data: DataSection) -> tuple[int, tuple[int, int, int]]:
    """Number of classes and input shape of a recipe's data: from the registry, or from user data
    cheaply (an image folder is listed, arrays' headers and labels read, a factory called)."""
    from prunekit.zoo.data import DATASETS, user_data_info

    if data.kind == "registered":
        spec = DATASETS.get(data.name)
        return spec.num_classes, spec.input_shape
    info = user_data_info(data.name, data.path, image_size=data.image_size, channels=data.channels or 3, layout=data.layout, kwargs=data.kwargs)
    return info.num_classes, info.input_shape


def build_unloaded_model(recipe: Recipe, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """The recipe's model with untrained weights, on the meta device when its factory allows."""
    from prunekit.zoo import create_model

    from prunekit.zoo.models.timm_adapter import WEIGHT_ARGS

    spec = recipe.model
    kwargs = {k: v for k, v in spec.kwargs.items() if not (spec.name.startswith("timm/") and k in WEIGHT_ARGS)}
    failure: Exception | None = None
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = create_model(spec.name, num_classes, input_shape, **kwargs)
        except ConfigError as exc:
            raise ConfigError(f"model: {exc}") from None
        except Exception as exc:  # the user's factory (or a zoo constructor) refused its arguments
            failure = exc
            continue
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model.name {shorten(spec.name)} returned a {type(model).__name__}, not a torch.nn.Module")
        return model
    raise ConfigError(f"model.name {shorten(spec.name)} with model.kwargs {shorten(spec.kwargs)} could not be built: "
                      f"{type(failure).__name__}: {shorten(str(failure), 300)}")


def check_checkpoint(path: Path, model: nn.Module, field: str = "model.checkpoint") -> None:
    """The checkpoint at ``path`` (safetensors or PyTorch, see :func:`prunekit.load_weights`) holds
    exactly the model's tensors, with the same shapes; read on the meta device (shapes only)."""
    from prunekit.zoo.checkpoints import load_weights

    try:
        load_weights(path, model, device="meta")
    except CheckpointError as exc:
        raise CheckpointError(f"{field}: {exc}") from None


def _check_timm_weights(name: str, kwargs: dict[str, object], model: nn.Module) -> None:
    """The local files timm's weight arguments name exist (and ``checkpoint_path`` fits the model);
    ``pretrained=True`` without a local file is only known to work when the hub answers at run time."""
    from prunekit.zoo.models.timm_adapter import check_weight_files

    try:
        check_weight_files(name.removeprefix("timm/"), bool(kwargs.get("pretrained")), kwargs.get("pretrained_cfg_overlay"))
    except ConfigError as exc:
        raise ConfigError(f"model.kwargs: {exc}") from None
    except CheckpointError as exc:
        raise CheckpointError(f"model.kwargs: {exc}") from None
    if kwargs.get("checkpoint_path"):
        check_checkpoint(Path(str(kwargs["checkpoint_path"])), model, "model.kwargs.checkpoint_path")


def _pattern_checks(recipe: Recipe) -> dict[str, Callable[[nn.Module], object]]:
    """Per recipe section, a check that its layer/parameter patterns match the model's names."""
    from prunekit.masks import prunable_parameters
    from prunekit.pruners.allocation import layer_sparsities
    from prunekit.pruners.structured import check_layer_patterns

    prune = recipe.prune
    checks: dict[str, Callable[[nn.Module], object]] = {}
    if prune.method in ("unstructured", "gradual"):
        checks["prune"] = lambda m: layer_sparsities(prunable_parameters(m, prune.include, prune.exclude), prune.sparsity, prune.overrides)
    elif prune.method == "lottery":
        checks["prune"] = lambda m: layer_sparsities(prunable_parameters(m, prune.include, prune.exclude), prune.rate, prune.rate_overrides)
    elif prune.method in ("nm", "dst"):
        checks["prune"] = lambda m: prunable_parameters(m, prune.include, prune.exclude)
    elif prune.method == "structured":
        checks["prune"] = lambda m: check_layer_patterns(m, prune)
    if recipe.compress is not None:
        from prunekit.compression.spec import iter_targets

        checks["compress"] = lambda m: list(iter_targets(m, recipe.compress))
    return checks


def _check_out_dir(out: Path) -> None:
    """The parent folder of run directories is a folder (or does not exist yet)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; run directories need a folder")


def _check_data_files(recipe: Recipe, spec: DatasetSpec) -> None:
    """``data.root`` is a folder if it exists; with ``data.download: false``, the dataset's files
    must already be in place (presence only)."""
    from prunekit.zoo.data.paths import resolve_data_root
    from prunekit.zoo.data.sources import is_complete, missing_files_error

    root = recipe.data.root
    data_root = resolve_data_root(root)
    if root is not None and data_root.exists() and not data_root.is_dir():
        raise ConfigError(f"data.root {shorten(root, 300)} is a file; give the folder that holds '{spec.folder}/'")
    if recipe.data.download or not spec.needs_files:
        return
    folder = data_root / spec.folder
    if not any(is_complete(fileset, folder) for fileset in spec.sources):
        raise missing_files_error(spec, folder, root, "download=False")
