"""Models from timm, created through the same `create_model` (needs the ``timm`` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.errors import CheckpointError, ConfigError, shorten

#: timm arguments that load weights: left out when ``prunekit check`` builds the model on the meta device.
WEIGHT_ARGS = ("pretrained", "checkpoint_path", "pretrained_cfg_overlay")

_LOCAL = ("download the weights where there is network (timm.create_model(name, pretrained=True), then "
          "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')) and pass the local file: "
          "pretrained_cfg_overlay={'file': 'weights.safetensors'} with pretrained=True (timm adapts the classifier), "
          "or checkpoint_path='weights.safetensors' (in a recipe: model.kwargs, or model.checkpoint)")


def create_timm_model(name: str, num_classes: int, pretrained: bool = False,
                      checkpoint_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=..., num_classes=..., **kwargs)``.

    ``pretrained=True`` fetches timm's weights from the Hugging Face hub, or reads the local file of
    ``pretrained_cfg_overlay=dict(file=...)``; offline, fetching fails with a :class:`CheckpointError`
    saying how to use a local file. ``checkpoint_path`` (weights of this very model, classifier
    included) is read with :func:`prunekit.load_weights` after the model is built.
    """
    timm = _import_timm()
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm model {name!r}; see timm.list_models() for the allowed names")
    local = check_weight_files(name, pretrained, kwargs.get("pretrained_cfg_overlay"))
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except OSError as exc:  # the hub is unreachable (huggingface_hub's errors are OSErrors) or a file unreadable
        if not pretrained:
            raise
        if local is not None:
            raise CheckpointError(f"timm model {name!r}: cannot read pretrained_cfg_overlay file {local}: {shorten(str(exc), 300)}") from None
        raise CheckpointError(f"timm model {name!r}: pretrained=True could not fetch the weights from the Hugging Face hub "
                              f"(is this machine offline? {type(exc).__name__}: {shorten(str(exc), 200)}); {_LOCAL}; "
                              "HF_HUB_OFFLINE=1 makes timm fail at once instead of retrying") from None
    except RuntimeError as exc:  # load_state_dict of a file made for another model
        if not pretrained:
            raise
        raise CheckpointError(f"timm model {name!r}: the pretrained weights do not fit it: {shorten(str(exc), 1000)}") from None
    if checkpoint_path is not None:
        from prunekit.zoo.checkpoints import load_weights

        try:
            model.load_state_dict(load_weights(checkpoint_path, model))
        except CheckpointError as exc:
            raise CheckpointError(f"timm model {name!r}: checkpoint_path: {exc}") from None
    return model


def _import_timm() -> Any:
    try:
        import timm
    except Exception as exc:  # ImportError, or a broken torchvision raising at import time
        raise ConfigError(
            f"timm models need the optional 'timm' package with a working torchvision "
            f"(pip install 'prunekit[timm]'); importing it failed: {exc}"
        ) from None
    return timm


def check_weight_files(name: str, pretrained: bool, overlay: object) -> str | None:
    """The local weights file named by ``pretrained_cfg_overlay`` (``None`` if none), checked to
    exist and to be read (``pretrained=True``)."""
    local = str(overlay["file"]) if isinstance(overlay, dict) and overlay.get("file") else None
    if local is not None and not pretrained:
        raise ConfigError(f"timm model {name!r}: pretrained_cfg_overlay names the file {shorten(local, 300)}, which timm reads "
                          "only with pretrained=True; set it (or pass the file as checkpoint_path)")
    if local is not None and not Path(local).is_file():
        raise CheckpointError(f"timm model {name!r}: pretrained_cfg_overlay file {shorten(local, 300)} does not exist")
    return local
