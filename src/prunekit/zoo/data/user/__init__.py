"""Your own data: image folders, NumPy arrays, or a ``package.module:function`` dataset factory.

>>> from prunekit.zoo.data import get_loaders
>>> bundle = get_loaders("imagefolder", path="photos/", image_size=64)   # photos/<class>/*.jpg
>>> bundle = get_loaders("arrays", path="data.npz")                      # x_train, y_train, x_test, y_test
>>> bundle = get_loaders("mypkg.data:splits", kwargs={"n": 100})         # returns (train, val, test)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from prunekit.errors import ConfigError
from prunekit.zoo.data.loaders import DataBundle
from prunekit.zoo.data.user.argument import parse_data_argument
from prunekit.zoo.data.user.arrays import array_info, array_loaders, tensor_loaders
from prunekit.zoo.data.user.factory import factory_info, factory_loaders
from prunekit.zoo.data.user.imagefolder import DataInfo, image_folder_info, image_folder_loaders
from prunekit.zoo.data.user.streaming import FileDataset, StreamingLoader

#: ``data.name`` values that read user files from ``path``.
FILE_KINDS = ("imagefolder", "arrays")


def user_data_kind(name: str) -> str | None:
    """``"imagefolder"``, ``"arrays"``, ``"factory"`` (a name with ``:``) or None (a registered dataset)."""
    if name in FILE_KINDS:
        return name
    return "factory" if ":" in name else None


def user_loaders(name: str, path: str | os.PathLike[str] | None = None, **options: Any) -> DataBundle:
    """Loaders for user data of kind ``name`` (see :func:`user_data_kind`); ``options`` go to
    :func:`image_folder_loaders`, :func:`array_loaders` or :func:`factory_loaders`."""
    kind = _kind_with_path(name, path)
    if kind == "imagefolder":
        return image_folder_loaders(path, **options)  # type: ignore[arg-type]
    if kind == "arrays":
        return array_loaders(path, **options)  # type: ignore[arg-type]
    return factory_loaders(name, **options)


def user_data_info(
    name: str,
    path: str | os.PathLike[str] | None = None,
    *,
    image_size: int | Sequence[int] | None = None,
    channels: int = 3,
    layout: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    folders: Sequence[str | os.PathLike[str]] = (),
) -> DataInfo:
    """Number of classes, input shape and class names of user data, cheaply: an image folder is
    listed (a few headers read, nothing decoded), arrays' headers and labels are read, a factory is called."""
    kind = _kind_with_path(name, path)
    if kind == "imagefolder":
        return image_folder_info(path, image_size=image_size, channels=channels)  # type: ignore[arg-type]
    if kind == "arrays":
        return array_info(path, layout=layout)  # type: ignore[arg-type]
    return factory_info(name, kwargs=kwargs, layout=layout, folders=folders)


def _kind_with_path(name: str, path: str | os.PathLike[str] | None) -> str:
    kind = user_data_kind(name)
    if kind is None:
        raise ConfigError(f"{name!r} is not a kind of user data (imagefolder, arrays or package.module:function)")
    if kind in FILE_KINDS and path is None:
        raise ConfigError(f"dataset {name!r} needs path: the {'folder' if kind == 'imagefolder' else '.npz file or .npy folder'} to read")
    if kind == "factory" and path is not None:
        raise ConfigError(f"dataset factory {name!r} takes no path (pass its arguments as kwargs)")
    return kind


__all__ = [
    "FILE_KINDS", "DataInfo", "FileDataset", "StreamingLoader", "array_info", "array_loaders", "factory_info", "factory_loaders",
    "image_folder_info", "image_folder_loaders", "parse_data_argument", "tensor_loaders", "user_data_info", "user_data_kind", "user_loaders",
]
