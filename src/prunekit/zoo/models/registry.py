"""The model registry and :func:`create_model`."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
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

    ``name`` may also be ``"timm/<timm model name>"`` (needs the ``timm`` extra; ``pretrained=True``,
    ``pretrained_cfg_overlay=dict(file=...)`` and ``checkpoint_path=`` pass through, see
    :func:`~prunekit.zoo.models.timm_adapter.create_timm_model`), ``"package.module:factory"`` or
    ``"path/to/file.py:factory"``, a function of yours called as ``factory(num_classes=...,
    input_shape=..., **kwargs)`` (the module is imported, from the working directory or the import
    path, see :func:`import_factory`: name only code you trust). ``input_shape``
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
_FILE_FACTORY = re.compile(r".+\.py:[A-Za-z_]\w*", re.DOTALL)


def check_factory_path(path: str, what: str = "model factory") -> str:
    """``path`` if it reads ``package.module:attribute`` (no relative imports) or ``path/to/file.py:attribute``,
    else :class:`ConfigError` (naming the callable as ``what``)."""
    if not (_FACTORY_PATH.fullmatch(path) or _FILE_FACTORY.fullmatch(path)):
        raise ConfigError(f"{what} {shorten(path)} must read package.module:function "
                          "(dotted Python identifiers, no leading dots) or path/to/file.py:function, e.g. mypkg.models:build")
    return path


def import_factory(path: str, folders: Sequence[str | os.PathLike[str]] = (), what: str = "model factory") -> Callable[..., Any]:
    """The callable named by ``"package.module:attribute"`` or ``"path/to/file.py:attribute"``
    (imports the module: name only code you trust).

    The module is looked up in ``folders`` (in a recipe: the recipe's folder), then the working
    directory, then the usual import path; those folders are on ``sys.path`` only during the import.
    A relative ``file.py`` is found the same way (``folders``, then the working directory). ``what``
    names the callable in error messages.
    """
    check_factory_path(path, what)
    source, _, attribute = path.rpartition(":")
    search = [Path(folder).resolve() for folder in folders] + [Path.cwd()]
    try:
        if source.endswith(".py"):
            module = _import_file(source, search, path, what)
        else:
            with _on_import_path(search):
                module = importlib.import_module(source)
        factory = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {what} {shorten(path, 300)}: {exc} (looked in {_listed(search)} and the import path)") from None
    except ConfigError:
        raise
    except Exception as exc:  # the user's module itself failed while importing
        raise ConfigError(f"importing {what} {shorten(path, 300)} failed: {type(exc).__name__}: {shorten(str(exc), 300)}") from None
    if not callable(factory):
        raise ConfigError(f"{what} {shorten(path, 300)} is not callable")
    return factory


def _import_file(source: str, search: list[Path], path: str, what: str) -> ModuleType:
    """The module of a ``.py`` file (the first existing of ``source`` under ``search``), imported once per file."""
    candidates = [Path(source).expanduser()] if Path(source).expanduser().is_absolute() else [folder / source for folder in search]
    file = next((c.resolve() for c in candidates if c.is_file()), None)
    if file is None:
        raise ConfigError(f"{what} {shorten(path, 300)}: no such file {shorten(source, 300)} (looked in {_listed([c.parent for c in candidates])})")
    name = f"prunekit_user_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{what} {shorten(path, 300)}: {file} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as `import` does: dataclasses and pickling look the module up by name
    try:
        with _on_import_path([file.parent]):  # its sibling modules import as they do when it runs as a script
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@contextmanager
def _on_import_path(folders: Sequence[Path]) -> Iterator[None]:
    """``folders`` first on ``sys.path`` for the duration of an import."""
    added = [str(folder) for folder in dict.fromkeys(folders) if str(folder) not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)


def _listed(folders: Sequence[Path]) -> str:
    return ", ".join(shorten(str(folder), 200) for folder in dict.fromkeys(folders))


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The (C, H, W) a registered model was designed for."""
    return MODELS.meta(name)["input_shape"]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell wildcard."""
    return MODELS.names(pattern)
