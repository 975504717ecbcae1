"""Loaders for images held in NumPy arrays: a ``.npz`` file, a folder of ``.npy`` files, or tensors."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.errors import ConfigError, DataError, shorten
from prunekit.zoo.data.augment import Augment
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import DataBundle
from prunekit.zoo.data.user.bundle import assemble, channel_stats, check_mean_std
from prunekit.zoo.data.user.imagefolder import DataInfo, default_crop_scale, resolve_augment
from prunekit.zoo.data.user.splits import plan_splits

log = logging.getLogger(__name__)

#: Accepted array names: split → (images key, labels key). Either train and test (val optional), or all.
SPLIT_KEYS = {"train": ("x_train", "y_train"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test"), "all": ("images", "labels")}
#: Optional array of class names (strings), one per class.
CLASS_NAMES_KEY = "class_names"
LAYOUTS = ("nchw", "nhwc")
#: Channel counts that tell the layout apart.
_CHANNELS = (1, 3)

Pairs = Mapping[str, tuple[Any, Any]]


def array_headers(path: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in a ``.npz`` file or a folder of ``.npy`` files (headers only)."""
    target = Path(path).expanduser()
    if target.is_dir():
        out = {}
        for file in sorted(target.glob("*.npy")):
            array = _load_npy(file, mmap=True)
            out[file.stem] = (array.shape, array.dtype)
        return out
    if not target.is_file():
        raise DataError(f"array data {target} does not exist: give a .npz file or a folder of .npy files")
    try:
        with zipfile.ZipFile(target) as archive:
            out = {}
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as handle:
                        out[member.removesuffix(".npy")] = _npy_header(handle)
            return out
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataError(f"{target} is not a readable .npz file ({exc})") from None


def _npy_header(handle: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of an open ``.npy`` stream (format 1.0 or 2.0)."""
    version = np.lib.format.read_magic(handle)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f".npy format version {version} is not supported (1.0 and 2.0 are)")
    shape, _, dtype = read(handle)
    return shape, dtype


def split_keys(keys: Sequence[str], where: str) -> list[str]:
    """Which splits the array names give (see :data:`SPLIT_KEYS`), else :class:`DataError` listing them."""
    present = [s for s, pair in SPLIT_KEYS.items() if all(k in keys for k in pair)]
    if "all" in present and len(present) > 1:
        raise DataError(f"{where} holds both images/labels and x_<split>/y_<split> arrays; keep one naming")
    if present == ["all"] or {"train", "test"} <= set(present):
        return present
    raise DataError(f"{where} needs arrays x_train, y_train, x_test, y_test (x_val, y_val optional) or images, labels; "
                    f"found: {', '.join(sorted(keys)) or 'none'}")


def array_info(path: str | os.PathLike[str], *, layout: str | None = None) -> DataInfo:
    """Classes and input shape of array data (reads the headers and the labels, not the images)."""
    headers = array_headers(path)
    splits = split_keys(list(headers), str(path))
    shape = _nchw_shape(headers[SPLIT_KEYS[splits[0]][0]][0], layout, f"{path}:{SPLIT_KEYS[splits[0]][0]}")
    arrays = _Arrays(path)
    labels = {s: _labels(arrays[SPLIT_KEYS[s][1]], f"{path}:{SPLIT_KEYS[s][1]}") for s in splits}
    names = _class_names(arrays.get(CLASS_NAMES_KEY), labels, str(path))
    return DataInfo(len(names), shape, names)


def array_loaders(path: str | os.PathLike[str], *, layout: str | None = None, **options: Any) -> DataBundle:
    """Train/validation/test loaders over a ``.npz`` file or a folder of ``.npy`` files.

    Arrays are named ``x_train``/``y_train`` and ``x_test``/``y_test`` (``x_val``/``y_val``
    optional) or ``images``/``labels`` (divided as :func:`tensor_loaders` says), plus an optional
    ``class_names`` array of strings. Loaded with ``allow_pickle=False``. Other options: see
    :func:`tensor_loaders`.
    """
    arrays = _Arrays(path)
    splits = split_keys(arrays.keys(), str(path))
    pairs = {s: (arrays[SPLIT_KEYS[s][0]], arrays[SPLIT_KEYS[s][1]]) for s in splits}
    names = arrays.get(CLASS_NAMES_KEY)
    return tensor_loaders(pairs, layout=layout, class_names=None if names is None else [str(n) for n in names],
                          name="arrays", source=f"arrays {Path(path)}", **options)


def tensor_loaders(
    pairs: Pairs,
    *,
    layout: str | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "arrays",
    source: str = "arrays",
    batch_size: int = 128,
    val_fraction: float = 0.1,
    test_fraction: float | None = None,
    seed: int = 0,
    augment: bool | Augment | None = False,
    crop_scale: tuple[float, float] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    subset: int | None = None,
    progress: bool = True,
) -> DataBundle:
    """Loaders over ``{split: (images, labels)}`` (NumPy arrays or tensors) with splits ``train`` and
    ``test`` (``val`` optional: else carved from ``train`` by ``val_fraction``, stratified) or ``all``
    (divided by ``val_fraction`` and ``test_fraction``, default 0.2, stratified per class).

    Images are (N, C, H, W), (N, H, W, C) or (N, H, W): the layout is told by which of axes 1 and 3
    has 1 or 3 entries (channels), or by ``layout`` ("nchw"/"nhwc") when both or neither do. uint8 images are read as
    0-255 pixels; float images are used as they are (scale 1), so ``mean``/``std`` are in their units.
    Labels are integers 0..K-1. ``augment`` (default off) is the random resized crop and flip.
    """
    del progress  # arrays are already in memory
    images, labels = {}, {}
    for split, (x, y) in pairs.items():
        images[split] = _images(x, layout, f"{source} {split} images")
        labels[split] = _labels(y, f"{source} {split} labels")
        if labels[split].numel() != images[split].shape[0]:
            raise DataError(f"{source} {split}: {images[split].shape[0]} images but {labels[split].numel()} labels")
    shapes = {tuple(x.shape[1:]) for x in images.values()}
    dtypes = {x.dtype for x in images.values()}
    if len(shapes) > 1 or len(dtypes) > 1:
        raise DataError(f"{source}: splits differ in image shape or dtype: {sorted(shapes)}, {sorted(map(str, dtypes))}")
    names = _class_names(class_names, labels, source)
    channels = next(iter(shapes))[0]
    check_mean_std(mean, std, channels)
    scale = 1 / 255 if next(iter(dtypes)) == torch.uint8 else 1.0
    plan = plan_splits(labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, subset=subset)

    def make(split: str, mean: tuple[float, ...], std: tuple[float, ...]) -> ArrayDataset:
        return ArrayDataset(images[split], labels[split], mean=mean, std=std, scale=scale, class_names=names, name=name, split=split)

    def stats(split: str, indices: torch.Tensor | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return channel_stats(images[split], scale, indices)

    return assemble(name, plan, make, stats, mean=mean, std=std, class_names=names, batch_size=batch_size, seed=seed,
                    augment=resolve_augment(augment, crop_scale or default_crop_scale(next(iter(shapes))[1:]), default=False),
                    num_workers=0, source=source)


class _Arrays:
    """Lazy access to the arrays of a ``.npz`` file or a folder of ``.npy`` files (``allow_pickle=False``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._names = list(array_headers(self.path))

    def keys(self) -> list[str]:
        return self._names

    def get(self, key: str) -> np.ndarray | None:
        return self[key] if key in self._names else None

    def __getitem__(self, key: str) -> np.ndarray:
        if self.path.is_dir():
            return _load_npy(self.path / f"{key}.npy", mmap=False)
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                return archive[key]
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read array {key!r} of {self.path}: {exc}") from None


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {path}: {exc} (arrays are loaded with allow_pickle=False)") from None


def _nchw_shape(shape: Sequence[int], layout: str | None, where: str) -> tuple[int, int, int]:
    """(C, H, W) of images of ``shape`` in ``layout`` (None: detected)."""
    if layout is not None and layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {shorten(layout)}")
    if len(shape) == 3:
        return (1, shape[1], shape[2])
    if len(shape) != 4:
        raise DataError(f"{where}: images need shape (N, C, H, W), (N, H, W, C) or (N, H, W), got {tuple(shape)}")
    if layout is None:
        first, last = shape[1] in _CHANNELS, shape[3] in _CHANNELS
        if first == last:
            raise ConfigError(f"{where}: cannot tell the channel axis of images of shape {tuple(shape)}; set layout to nchw or nhwc")
        layout = "nchw" if first else "nhwc"
        log.info("%s: images of shape %s read as %s (set layout to override)", where, tuple(shape), layout.upper())
    return (shape[1], shape[2], shape[3]) if layout == "nchw" else (shape[3], shape[1], shape[2])


def _images(x: Any, layout: str | None, where: str) -> torch.Tensor:
    array = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    c, h, w = _nchw_shape(array.shape, layout, where)
    if array.ndim == 3:
        array = array[:, None]
    elif array.shape[1:] != (c, h, w):
        array = array.transpose(0, 3, 1, 2)
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if np.issubdtype(array.dtype, np.floating):
        out = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if not torch.isfinite(out).all():
            raise DataError(f"{where}: images hold NaN or infinite values")
        return out
    raise DataError(f"{where}: images must be uint8 or floating point, got {array.dtype}")


def _labels(y: Any, where: str) -> torch.Tensor:
    array = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{where}: labels must be a 1-D integer array, got shape {array.shape} and dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, found {array.min()}")
    return torch.from_numpy(array.astype(np.int64))


def _class_names(names: Sequence[str] | np.ndarray | None, labels: Mapping[str, torch.Tensor], where: str) -> tuple[str, ...]:
    top = max((int(y.max()) + 1 for y in labels.values() if y.numel()), default=0)
    if names is None:
        names = [str(i) for i in range(top)]
    names = tuple(str(n) for n in names)
    if len(names) < top:
        raise DataError(f"{where}: labels go up to {top - 1} but only {len(names)} class names are given")
    if len(names) < 2:
        raise DataError(f"{where}: a single class; classification needs at least two")
    return names
