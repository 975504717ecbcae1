"""Public entry points: :func:`load_dataset`, :func:`get_loaders`, :func:`download_dataset`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.errors import ConfigError, DataError
from prunekit.zoo.data.augment import Augment
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import BatchLoader, DataBundle, split_indices
from prunekit.zoo.data.registry import DatasetSpec, dataset_info
from prunekit.zoo.data.sources import prepare_files

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def load_dataset(
    name: str,
    root: PathLike | None = None,
    split: str = "train",
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> ArrayDataset:
    """Load one official split (``"train"`` or ``"test"``) of a registered dataset into memory.

    ``root`` is the data root (default ``$PRUNEKIT_DATA``, else ``~/.cache/prunekit/data``); the
    files live in ``<root>/<folder>``. Missing files are downloaded when ``download`` is true,
    from ``mirrors`` (base URLs) if given, else the dataset's standard mirrors. Every file is
    MD5-verified before use.
    """
    spec = dataset_info(name)
    datasets, _ = _load_splits(spec, root, (split,), download=download, mirrors=mirrors, progress=progress)
    return datasets[split]


def get_loaders(
    name: str,
    root: PathLike | None = None,
    *,
    batch_size: int = 128,
    val_fraction: float = 0.1,
    seed: int = 0,
    augment: bool | Augment | None = None,
    num_workers: int | None = None,
    subset: int | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    path: PathLike | None = None,
    **options: Any,
) -> DataBundle:
    """Train, validation and test loaders for a registered dataset, or for your own data.

    ``name`` ``"imagefolder"`` (with ``path`` a folder of class folders), ``"arrays"`` (``path`` a
    ``.npz`` file or a folder of ``.npy`` files) or ``"package.module:function"`` (a dataset
    factory) loads your own data: see :func:`~prunekit.zoo.data.image_folder_loaders`,
    :func:`~prunekit.zoo.data.array_loaders` and :func:`~prunekit.zoo.data.factory_loaders`, which
    take ``options`` (``image_size``, ``mean``, ``std``, ``test_fraction``, ``cache_mb``, ...);
    ``root``, ``download`` and ``mirrors`` apply to registered datasets only.

    The validation split is carved out of the official training set with a ``seed``-ed
    permutation; ``val_fraction=0`` gives ``val=None``. ``subset=N`` keeps only the first ``N``
    examples of that permutation (validation included), for fast runs; the test split is always
    complete. ``augment``: None uses the dataset's default (on for CIFAR-10's train split), True
    or False force the dataset's standard augmentation on or off, and a callable
    ``(uint8 batch, generator) -> batch`` replaces it; validation and test are never augmented.
    ``num_workers`` is accepted for DataLoader compatibility but unused: batches are sliced from
    in-memory tensors in the calling process, which is faster than worker processes.
    """
    from prunekit.zoo.data.user import user_data_kind, user_loaders

    if user_data_kind(name) is not None:
        if root is not None or mirrors is not None:
            raise ConfigError(f"root and mirrors apply to registered datasets, not {name!r} (give path instead)")
        if user_data_kind(name) == "imagefolder":
            options["num_workers"] = num_workers
        elif num_workers:
            log.info("num_workers=%d ignored: %s batches come from in-memory tensors", num_workers, name)
        return user_loaders(name, path, batch_size=batch_size, val_fraction=val_fraction, seed=seed, augment=augment,
                            subset=subset, progress=progress, **options)
    if path is not None or options:
        raise ConfigError(f"dataset {name!r} is registered; path and {', '.join(sorted(options)) or 'other options'} apply to "
                          "imagefolder, arrays and package.module:function data only")
    spec = dataset_info(name)
    num_workers = num_workers or 0
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    if num_workers:
        log.info("num_workers=%d ignored: %s batches come from in-memory tensors", num_workers, name)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    train_augment = _resolve_augment(spec, augment)
    datasets, source = _load_splits(spec, root, ("train", "test"), download=download, mirrors=mirrors, progress=progress)
    train_idx, val_idx = split_indices(len(datasets["train"]), val_fraction, seed, subset)
    full_train = datasets["train"]
    return DataBundle(
        name=spec.name,
        train=BatchLoader(full_train, train_idx, batch_size=batch_size, shuffle=True, augment=train_augment, seed=seed),
        val=BatchLoader(full_train, val_idx, batch_size=batch_size) if val_idx.numel() else None,
        test=BatchLoader(datasets["test"], batch_size=batch_size),
        num_classes=spec.num_classes,
        input_shape=spec.input_shape,
        class_names=spec.class_names,
        source=source,
    )


def download_dataset(
    name: str,
    root: PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Path | None:
    """Make sure a dataset's files are present and verified (downloading them if needed).

    Returns the folder that holds them, or None for bundled datasets that need no files.
    """
    spec = dataset_info(name)
    if not spec.needs_files:
        return None
    _, folder = prepare_files(spec, root, download=True, mirrors=mirrors, progress=progress)
    return folder


def _resolve_augment(spec: DatasetSpec, augment: bool | Augment | None) -> Augment | None:
    if augment is None:
        return spec.augmentation if spec.augment_by_default else None
    if augment is False:
        return None
    if augment is True:
        if spec.augmentation is None:
            raise ConfigError(f"dataset {spec.name!r} has no standard augmentation; pass augment=<callable> or leave it off")
        return spec.augmentation
    if callable(augment):
        return augment
    raise ConfigError(f"augment must be None, a bool or a callable (images, generator) -> images, got {augment!r}")


def _load_splits(
    spec: DatasetSpec,
    root: PathLike | None,
    splits: Sequence[str],
    *,
    download: bool,
    mirrors: Sequence[str] | None,
    progress: bool,
) -> tuple[dict[str, ArrayDataset], str]:
    for split in splits:
        if split not in spec.splits:
            raise ConfigError(f"dataset {spec.name!r} has no split {split!r}; allowed values: {', '.join(spec.splits)}")
    if spec.bundled is not None:
        raw, source = spec.bundled(None, splits), f"bundled: {spec.description}"
    else:
        fileset, folder = prepare_files(spec, root, download=download, mirrors=mirrors, progress=progress)
        raw, source = fileset.read(folder, splits), f"{fileset.description} in {folder}"
    datasets = {
        split: ArrayDataset(
            torch.from_numpy(np.require(r.images, dtype=np.uint8, requirements=("C", "W"))),
            torch.from_numpy(np.require(r.labels, dtype=np.int64, requirements=("C", "W"))),
            mean=spec.mean,
            std=spec.std,
            scale=spec.scale,
            class_names=spec.class_names,
            name=spec.name,
            split=split,
        )
        for split, r in raw.items()
    }
    for split, ds in datasets.items():
        if ds.input_shape != spec.input_shape:
            raise DataError(f"dataset {spec.name!r} {split}: images have shape {ds.input_shape}, expected {spec.input_shape}")
    return datasets, source
