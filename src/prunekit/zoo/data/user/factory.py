"""Datasets built by a function of yours: ``package.module:function`` returning (train, val, test)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from prunekit.errors import DataError, shorten
from prunekit.zoo.data.loaders import DataBundle
from prunekit.zoo.data.user.arrays import Pairs, tensor_loaders
from prunekit.zoo.data.user.imagefolder import DataInfo

WHAT = "dataset factory"


def factory_splits(name: str, kwargs: Mapping[str, Any] | None = None, folders: Sequence[str | os.PathLike[str]] = ()) -> Pairs:
    """Call the factory ``name`` with ``kwargs`` and check what it returns.

    The contract: ``factory(**kwargs)`` returns ``(train, val, test)``, each an ``(images, labels)``
    pair of NumPy arrays or tensors (images as :func:`tensor_loaders` accepts, labels 0..K-1);
    ``val`` may be None (then carved out of train by ``val_fraction``).
    """
    from prunekit.zoo.models.registry import import_factory

    factory = import_factory(name, folders, what=WHAT)
    try:
        result = factory(**dict(kwargs or {}))
    except Exception as exc:  # the user's function failed
        raise DataError(f"{WHAT} {shorten(name, 200)} failed: {type(exc).__name__}: {shorten(str(exc), 300)}") from None
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise DataError(f"{WHAT} {shorten(name, 200)} must return (train, val, test), each (images, labels) and val possibly None; "
                        f"got {type(result).__name__}")
    pairs = {}
    for split, pair in zip(("train", "val", "test"), result, strict=True):
        if pair is None and split == "val":
            continue
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise DataError(f"{WHAT} {shorten(name, 200)}: its {split} split must be an (images, labels) pair, got {type(pair).__name__}")
        pairs[split] = (pair[0], pair[1])
    return pairs


def factory_info(name: str, *, kwargs: Mapping[str, Any] | None = None, layout: str | None = None,
                 folders: Sequence[str | os.PathLike[str]] = ()) -> DataInfo:
    """Classes and input shape of a factory's data (calls the factory)."""
    bundle = tensor_loaders(factory_splits(name, kwargs, folders), layout=layout, name=name, augment=False, mean=None, std=None)
    return DataInfo(bundle.num_classes, bundle.input_shape, bundle.class_names)


def factory_loaders(name: str, *, kwargs: Mapping[str, Any] | None = None, folders: Sequence[str | os.PathLike[str]] = (),
                    **options: Any) -> DataBundle:
    """Loaders over the splits a factory returns (see :func:`factory_splits`); ``options`` as for
    :func:`tensor_loaders`."""
    return tensor_loaders(factory_splits(name, kwargs, folders), name=name, source=f"{WHAT} {name}", **options)
