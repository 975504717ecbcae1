"""Architecture as data: save a pruned model's shapes as JSON, rebuild it from its constructor.

A spec lists, for every module, its class, the shapes of its parameters and buffers and its plain
attributes (ints, floats, strings, tuples of them). :func:`rebuild` creates the original model,
resizes every tensor whose shape differs and sets every attribute that differs, then loads weights
from a safetensors file or state dict. A module the spec records as one of the parameter-free
:data:`REPLACEMENT_MODULES` (a residual block removed by depth pruning) is replaced by a fresh one.
No code is pickled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit._io import load_safetensors, read_json, save_safetensors, write_json
from prunekit.errors import CheckpointError
from prunekit.structured.surgery import replace_module

SPEC_FORMAT = "prunekit-architecture/1"
SPEC_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"

Spec = dict[str, Any]

#: Parameter-free modules that may stand where a spec's original module was (depth pruning's
#: replacements of removed blocks); :func:`rebuild` creates them by these class names only.
REPLACEMENT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Sigmoid, nn.Tanh,
)


def _type_name(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return False


def _to_json(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def architecture_spec(model: nn.Module) -> Spec:
    """Per-module class, tensor shapes and plain attributes of ``model`` (JSON-able)."""
    modules: dict[str, Any] = {}
    for path, module in model.named_modules():
        tensors = {name: list(t.shape) for name, t in module.named_parameters(recurse=False)}
        tensors.update({name: list(t.shape) for name, t in module.named_buffers(recurse=False) if t is not None})
        attrs = {k: _to_json(v) for k, v in vars(module).items() if not k.startswith("_") and k != "training" and _plain(v)}
        modules[path] = {"type": _type_name(module), "tensors": tensors, "attrs": attrs}
    return {"format": SPEC_FORMAT, "model": _type_name(model), "modules": modules}


def save_spec(model_or_spec: nn.Module | Spec, path: str | os.PathLike[str]) -> Path:
    """Write a model's (or a ready) spec as JSON; returns the path."""
    spec = architecture_spec(model_or_spec) if isinstance(model_or_spec, nn.Module) else dict(model_or_spec)
    write_json(path, spec)
    return Path(path)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read a spec written by :func:`save_spec`."""
    spec = read_json(path, "architecture spec")
    if spec.get("format") != SPEC_FORMAT:
        raise CheckpointError(f"{path} is not a {SPEC_FORMAT} spec (format={spec.get('format')!r})")
    return spec


def rebuild(
    constructor_or_model: Callable[[], nn.Module] | nn.Module,
    spec: Spec | str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor] | str | os.PathLike[str] | None = None,
) -> nn.Module:
    """Create the original model and shrink it to ``spec``; then load ``state_dict`` (a mapping or a safetensors path)."""
    spec = load_spec(spec) if not isinstance(spec, Mapping) else spec
    if spec.get("format") != SPEC_FORMAT:
        raise CheckpointError(f"not a {SPEC_FORMAT} spec (format={spec.get('format')!r})")
    model = constructor_or_model if isinstance(constructor_or_model, nn.Module) else constructor_or_model()
    for path, entry in spec["modules"].items():
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError:
            raise CheckpointError(f"spec module {path!r} does not exist in {type(model).__name__}; wrong constructor?") from None
        if _type_name(module) != entry["type"]:
            replacement = next((cls for cls in REPLACEMENT_MODULES if f"{cls.__module__}.{cls.__qualname__}" == entry["type"]), None)
            if replacement is None or not path or entry["tensors"]:
                raise CheckpointError(f"spec module {path!r} is a {entry['type']} but the model has {_type_name(module)}")
            module = replacement()
            replace_module(model, path, module)
        for name, shape in entry["tensors"].items():
            _resize(module, path, name, tuple(shape))
        for name, value in entry["attrs"].items():
            current = getattr(module, name, None)
            wanted = _like(current, value)
            if current != wanted:
                setattr(module, name, wanted)
    if state_dict is not None:
        weights = load_safetensors(state_dict) if isinstance(state_dict, (str, os.PathLike)) else state_dict
        missing, unexpected = model.load_state_dict(dict(weights), strict=False)
        if missing or unexpected:
            raise CheckpointError(f"weights do not fit the rebuilt model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _like(current: Any, value: Any) -> Any:
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(_like(c, v) for c, v in zip(current, value)) if len(current) == len(value) else tuple(value)
    return value


def _resize(module: nn.Module, path: str, name: str, shape: tuple[int, ...]) -> None:
    tensor = getattr(module, name, None)
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{path}.{name} is missing in the rebuilt model")
    if tuple(tensor.shape) == shape:
        return
    fresh = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
    if name in module._parameters:
        module._parameters[name] = nn.Parameter(fresh, requires_grad=tensor.requires_grad)
    else:
        module._buffers[name] = fresh


def save_pruned(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write ``architecture.json`` and ``weights.safetensors`` for ``model`` into ``directory``."""
    target = Path(directory)
    save_spec(model, target / SPEC_FILE)
    save_safetensors(target / WEIGHTS_FILE, model.state_dict())
    return target


def load_pruned(constructor_or_model: Callable[[], nn.Module] | nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Rebuild a model saved with :func:`save_pruned` from its original constructor."""
    target = Path(directory)
    return rebuild(constructor_or_model, target / SPEC_FILE, target / WEIGHTS_FILE)
