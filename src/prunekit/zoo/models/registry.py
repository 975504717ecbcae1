"""The model registry and :func:`create_model`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from torch import nn

from prunekit._registry import Registry
from prunekit.errors import ConfigError, shorten

#: name → constructor ``(num_classes, input_shape, **kwargs) -> nn.Module``.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str, *, input_shape: tuple[int, int, int], description: str) -> Callable:
    """Register a model constructor taking ``(num_classes, input_shape, **kwargs)``.

    ``input_shape`` is the (channels, height, width) the model is designed for; ``create_model``
    passes the dataset's shape when it differs.
    """
    return MODELS.register(name, input_shape=tuple(input_shape), description=description)


def create_model(
    name: str,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``name`` may also be ``"timm/<timm model name>"`` (needs the ``timm`` extra) or
    ``"package.module:factory"``, a function of yours called as ``factory(num_classes=...,
    input_shape=..., **kwargs)`` (the module is imported: name only code you trust). ``input_shape``
    defaults to the model's own (see :func:`list_models`). Extra keyword arguments go to the
    constructor (e.g. ``width_mult`` for MobileNetV2).
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if name.startswith("timm/"):
        from prunekit.zoo.models.timm_adapter import create_timm_model

        return create_timm_model(name.removeprefix("timm/"), num_classes=num_classes, **kwargs)
    if ":" in name:
        if input_shape is None:
            raise ConfigError(f"model {name!r}: a user model needs input_shape (it comes from the dataset in recipes)")
        return import_factory(name)(num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)
    builder = MODELS.get(name)
    shape = tuple(input_shape) if input_shape is not None else MODELS.meta(name)["input_shape"]
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input_shape must be (channels, height, width) of positive ints, got {shape}")
    return builder(num_classes=num_classes, input_shape=shape, **kwargs)


_FACTORY_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def check_factory_path(path: str) -> str:
    """``path`` if it reads ``package.module:attribute`` (no relative imports), else :class:`ConfigError`."""
    if not _FACTORY_PATH.fullmatch(path):
        raise ConfigError(f"model factory {shorten(path)} must read package.module:function "
                          "(dotted Python identifiers, no leading dots), e.g. mypkg.models:build")
    return path


def import_factory(path: str) -> Callable[..., nn.Module]:
    """The callable named by ``"package.module:attribute"`` (imports the module: name only code you trust)."""
    import importlib

    module_name, _, attribute = check_factory_path(path).partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import model factory {path!r}: {exc}") from None
    except Exception as exc:  # the user's module itself failed while importing
        raise ConfigError(f"importing model factory {path!r} failed: {type(exc).__name__}: {shorten(str(exc), 300)}") from None
    if not callable(factory):
        raise ConfigError(f"model factory {path!r} is not callable")
    return factory


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The (C, H, W) a registered model was designed for."""
    return MODELS.meta(name)["input_shape"]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell wildcard."""
    return MODELS.names(pattern)
