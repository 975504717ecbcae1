"""Models saved inside a run directory: plain safetensors weights + a JSON description.

A saved model can be rebuilt from its description alone (zoo name, constructor arguments, and,
for structurally pruned models, the architecture spec) — no code is ever unpickled.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from torch import nn

from prunekit._io import load_safetensors, read_json, save_safetensors, write_json
from prunekit.errors import CheckpointError, DamagedFileError
from prunekit.masks import MaskSet, strip
from prunekit.zoo import create_model


def model_description(name: str, num_classes: int, input_shape: tuple[int, ...], kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """What :func:`build_model` needs to re-create a zoo model."""
    return {"name": name, "num_classes": num_classes, "input_shape": list(input_shape), "kwargs": dict(kwargs or {})}


def build_model(description: dict[str, Any]) -> nn.Module:
    """A fresh (untrained) model from a description; shrunk to its architecture spec if it has one."""
    model = create_model(description["name"], description["num_classes"], tuple(description["input_shape"]), **description.get("kwargs", {}))
    architecture = description.get("architecture")
    if architecture is not None:
        from prunekit.structured.spec import rebuild

        model = rebuild(model, architecture)
    gated = description.get("gated")
    if gated is not None:  # a dynamic (gated) model: the gates go back on their channel groups
        from prunekit.dynamic import GatedModel

        model = GatedModel.from_description(model, gated)
    return model


def save_model(path: str | os.PathLike[str], model: nn.Module, description: dict[str, Any]) -> None:
    """Save weights (masks made permanent on a copy; attached masks also saved beside) and description."""
    path = Path(path)
    masks = MaskSet.from_model(model)
    plain = strip(copy.deepcopy(model)) if len(masks) else model
    save_safetensors(path.with_suffix(".safetensors"), plain.state_dict(), metadata={"format": "prunekit.model/1"})
    if len(masks):
        masks.save(path.with_suffix(".masks.safetensors"))
    from prunekit.dynamic import GatedModel

    if isinstance(model, GatedModel):  # the gates' sites and density, to put them back on load
        description = {**description, "gated": model.description()}
    write_json(path.with_suffix(".json"), {**description, "has_masks": bool(len(masks))})


def load_model(path: str | os.PathLike[str], attach_masks: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; optionally re-attach its masks."""
    path = Path(path)
    desc_file = path.with_suffix(".json")
    if not desc_file.exists():
        raise CheckpointError(f"no model description at {desc_file}; was this run finished?")
    description = read_json(desc_file, "model description")
    try:
        model = build_model(description)
    except (KeyError, TypeError, ValueError) as exc:  # also UnknownNameError and ConfigError
        raise DamagedFileError(f"model description {desc_file} is damaged (cannot rebuild the model from it: {exc})") from None
    try:
        model.load_state_dict(load_safetensors(path.with_suffix(".safetensors")))
    except RuntimeError as exc:
        raise CheckpointError(f"{path.with_suffix('.safetensors')} does not match its description: {exc}") from None
    if attach_masks and description.get("has_masks"):
        MaskSet.load(path.with_suffix(".masks.safetensors")).attach(model)
    return model, description
