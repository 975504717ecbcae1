"""The dataset registry and the metadata types that describe a dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from prunekit._registry import Registry
from prunekit.zoo.data.augment import Augment


class RawSplit(NamedTuple):
    """One decoded split: ``images`` uint8 (N, C, H, W) and ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray


#: ``read(folder, splits) -> {split: RawSplit}``; ``folder`` is None for bundled datasets.
Reader = Callable[[Path | None, Sequence[str]], dict[str, RawSplit]]


@dataclass(frozen=True)
class DataFile:
    """A file a dataset needs, with its published MD5 and size in bytes."""

    name: str
    md5: str
    size: int | None = None


@dataclass(frozen=True)
class FileSet:
    """One complete way of holding a dataset on disk: its files, a reader, and download mirrors.

    ``mirrors`` are base URLs; a file is fetched from ``mirror + "/" + file.name``. An empty
    tuple means the file set can only be placed by hand (no download).
    """

    key: str
    files: tuple[DataFile, ...]
    read: Reader
    mirrors: tuple[str, ...] = ()
    description: str = ""
    #: Logged as a warning whenever this file set is used (e.g. "lossy copy").
    caveat: str = ""

    def urls(self, file: DataFile, mirrors: Sequence[str] | None = None) -> list[str]:
        """Download URLs for ``file``, from ``mirrors`` if given, else the built-in ones."""
        return [f"{m.rstrip('/')}/{file.name}" for m in (self.mirrors if mirrors is None else mirrors)]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about a registered dataset.

    Images are stored as uint8 and normalised per batch as ``(raw * scale - mean) / std``,
    channel by channel.
    """

    name: str
    folder: str
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    #: File sets in order of preference; empty for datasets bundled with a dependency.
    sources: tuple[FileSet, ...] = ()
    #: Reader for bundled datasets (no files, no download).
    bundled: Reader | None = None
    scale: float = 1.0 / 255.0
    #: The dataset's standard training augmentation (None: it has none).
    augmentation: Augment | None = None
    #: Whether ``get_loaders`` applies ``augmentation`` to the train split when not told.
    augment_by_default: bool = False
    splits: tuple[str, ...] = ("train", "test")

    @property
    def needs_files(self) -> bool:
        """Whether the dataset is read from files (False for bundled datasets)."""
        return self.bundled is None


#: name → :class:`DatasetSpec`.
DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASETS` under ``spec.name``."""
    if len(spec.mean) != spec.input_shape[0] or len(spec.std) != spec.input_shape[0]:
        raise ValueError(f"dataset {spec.name!r}: mean/std need one value per channel ({spec.input_shape[0]})")
    if len(spec.class_names) != spec.num_classes:
        raise ValueError(f"dataset {spec.name!r}: {len(spec.class_names)} class names for {spec.num_classes} classes")
    if (spec.bundled is None) == (not spec.sources):
        raise ValueError(f"dataset {spec.name!r}: give either file sources or a bundled reader, not both or neither")
    DATASETS.add(spec.name, spec, description=spec.description)
    return spec


def dataset_info(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a registered dataset (classes, shape, files, md5s, mirrors)."""
    return DATASETS.get(name)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a shell wildcard."""
    return DATASETS.names(pattern)
