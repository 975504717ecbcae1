"""Datasets: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn digits, with checksummed loading, and
your own data (image folders, NumPy arrays, a dataset factory: :mod:`prunekit.zoo.data.user`).

Importing this package registers every built-in dataset in :data:`DATASETS`.

>>> from prunekit.zoo.data import get_loaders
>>> bundle = get_loaders("digits", batch_size=64)          # no download needed
>>> x, y = next(iter(bundle.train))                         # float32 (64, 1, 8, 8), int64 (64,)
"""

from prunekit.zoo.data import cifar, digits, mnist  # noqa: F401  (registration)
from prunekit.zoo.data.api import download_dataset, get_loaders, load_dataset
from prunekit.zoo.data.augment import Augment, CropFlip, random_crop, random_hflip
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import BatchLoader, DataBundle, split_indices
from prunekit.zoo.data.paths import DATA_ENV, default_cache_dir, resolve_data_root
from prunekit.zoo.data.registry import DATASETS, DataFile, DatasetSpec, FileSet, dataset_info, list_datasets, register_dataset
from prunekit.zoo.data.user import (
    DataInfo, FileDataset, StreamingLoader, array_loaders, factory_loaders, image_folder_loaders, parse_data_argument, tensor_loaders,
    user_data_info,
)

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "ArrayDataset",
    "Augment",
    "BatchLoader",
    "CropFlip",
    "DataBundle",
    "DataFile",
    "DataInfo",
    "DatasetSpec",
    "FileDataset",
    "FileSet",
    "StreamingLoader",
    "array_loaders",
    "dataset_info",
    "default_cache_dir",
    "download_dataset",
    "factory_loaders",
    "get_loaders",
    "image_folder_loaders",
    "list_datasets",
    "load_dataset",
    "parse_data_argument",
    "random_crop",
    "random_hflip",
    "register_dataset",
    "resolve_data_root",
    "split_indices",
    "tensor_loaders",
    "user_data_info",
]
