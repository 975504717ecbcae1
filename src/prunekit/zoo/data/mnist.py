"""MNIST and Fashion-MNIST from the official IDX ``.gz`` files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prunekit.errors import DataError
from prunekit.zoo.data.idx import read_idx
from prunekit.zoo.data.registry import DataFile, DatasetSpec, FileSet, RawSplit, register_dataset

_PREFIX = {"train": "train", "test": "t10k"}


def read_idx_pair(folder: Path | None, splits: Sequence[str]) -> dict[str, RawSplit]:
    """Read ``<prefix>-images-idx3-ubyte.gz`` and ``<prefix>-labels-idx1-ubyte.gz`` per split."""
    assert folder is not None
    out = {}
    for split in splits:
        images_path = folder / f"{_PREFIX[split]}-images-idx3-ubyte.gz"
        labels_path = folder / f"{_PREFIX[split]}-labels-idx1-ubyte.gz"
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
        if labels.shape != (images.shape[0],) or labels.dtype != np.uint8:
            raise DataError(f"{labels_path}: expected {images.shape[0]} uint8 labels, got {labels.dtype} {labels.shape}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{labels_path}: label {int(labels.max())} is out of range 0..9")
        out[split] = RawSplit(images[:, None], labels.astype(np.int64))
    return out


def _idx_dataset(name: str, folder: str, class_names: tuple[str, ...], mean: float, std: float, description: str,
                 md5s: dict[str, tuple[str, int]], mirrors: tuple[str, ...]) -> DatasetSpec:
    """An MNIST-family dataset: four official IDX .gz files, 28x28 grey, 10 classes."""
    return register_dataset(
        DatasetSpec(
            name=name,
            folder=folder,
            num_classes=10,
            input_shape=(1, 28, 28),
            class_names=class_names,
            mean=(mean,),
            std=(std,),
            description=description,
            sources=(
                FileSet(
                    key="idx",
                    description="official IDX files",
                    read=read_idx_pair,
                    files=tuple(DataFile(file, md5, size) for file, (md5, size) in md5s.items()),
                    mirrors=mirrors,
                ),
            ),
        )
    )


MNIST = _idx_dataset(
    "mnist",
    "mnist",
    tuple(str(i) for i in range(10)),
    mean=0.1307,
    std=0.3081,
    description="MNIST handwritten digits, 60k train / 10k test, 28x28 grey",
    md5s={
        "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
        "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
        "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1648877),
        "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4542),
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
)

FASHION_MNIST = _idx_dataset(
    "fashion_mnist",
    "fashion-mnist",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mean=0.2860,
    std=0.3530,
    description="Fashion-MNIST clothing images, 60k train / 10k test, 28x28 grey",
    md5s={
        "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
        "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 29515),
        "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 4422102),
        "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 5148),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)
