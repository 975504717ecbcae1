"""Models from timm, created through the same `create_model` (needs the ``timm`` extra)."""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.errors import ConfigError


def create_timm_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=...)``; weights are never fetched."""
    try:
        import timm
    except Exception as exc:  # ImportError, or a broken torchvision raising at import time
        raise ConfigError(
            f"timm models need the optional 'timm' package with a working torchvision "
            f"(pip install 'prunekit[timm]'); importing it failed: {exc}"
        ) from None
    if name not in timm.list_models():
        raise ConfigError(f"unknown timm model {name!r}; see timm.list_models() for the allowed names")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
