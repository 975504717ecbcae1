"""Loaders for a folder of class folders of images (``root/<class>/*.jpg``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.zoo.data.augment import Augment, ResizedCropFlip
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import DataBundle
from prunekit.zoo.data.user.bundle import assemble, channel_stats, check_mean_std
from prunekit.zoo.data.user.cache import DecodedCache
from prunekit.zoo.data.user.decode import decode_files, default_image_size, default_num_workers
from prunekit.zoo.data.user.scan import FolderListing, scan_image_folder
from prunekit.zoo.data.user.splits import plan_splits
from prunekit.zoo.data.user.streaming import FileDataset

log = logging.getLogger(__name__)

#: Default cap (MiB) on decoded images kept in memory; above it batches are decoded as they are needed.
DEFAULT_CACHE_MB = 2048
#: Most training images decoded to compute mean/std when the data streams.
STATS_SAMPLE = 1024


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about user data, found without decoding it."""

    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]


def image_size_of(listing: FolderListing, image_size: int | Sequence[int] | None) -> tuple[int, int]:
    """``image_size`` as (height, width); None: :func:`default_image_size` of the listing's files."""
    if image_size is None:
        return default_image_size([p for split in listing.splits for p in listing.paths(split)])
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"image_size must be a positive int or [height, width], got {image_size!r}")
    return size  # type: ignore[return-value]


def image_folder_info(path: str | os.PathLike[str], *, image_size: int | Sequence[int] | None = None, channels: int = 3) -> DataInfo:
    """Classes and input shape of an image folder (lists files and reads a few headers; no decoding)."""
    _check_channels(channels)
    listing = scan_image_folder(path)
    return DataInfo(len(listing.classes), (channels, *image_size_of(listing, image_size)), listing.classes)


def image_folder_loaders(
    path: str | os.PathLike[str],
    *,
    image_size: int | Sequence[int] | None = None,
    channels: int = 3,
    batch_size: int = 128,
    val_fraction: float = 0.1,
    test_fraction: float | None = None,
    seed: int = 0,
    augment: bool | Augment | None = None,
    crop_scale: tuple[float, float] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    subset: int | None = None,
    num_workers: int | None = None,
    cache_mb: float = DEFAULT_CACHE_MB,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> DataBundle:
    """Train/validation/test loaders over ``path/<class>/*.{jpg,jpeg,png,bmp,webp}``.

    ``path`` holds class folders (divided by ``val_fraction`` and ``test_fraction``, default 0.2,
    stratified per class) or ``train/``, ``test/`` and optionally ``val/`` with the same class
    folders (without ``val/``, validation is carved out of ``train/``, stratified). Classes are the
    sorted folder names. Images become RGB (``channels=3``) or grayscale (``channels=1``), resized
    so the shorter side fits ``image_size`` (int or (height, width); default: 32 if the images fit
    in 32×32, 64 if in 64×64, else 224) and centre-cropped. ``augment`` (default on; True, False or
    a callable) applies a random resized crop of ``crop_scale`` of the area and a horizontal flip
    to training batches (default scale: see :func:`default_crop_scale`). ``mean``/``std`` (0-1 pixel units, per channel) default to the training
    split's. ``num_workers`` processes decode (default ``min(4, CPUs)``; 0: this process).

    When all splits fit in ``cache_mb`` MiB decoded, they are kept in memory as uint8 and cached on
    disk (``cache_dir``, default ``$PRUNEKIT_CACHE_DIR/decoded``) under a fingerprint of the file
    listing (path, size, mtime of every file) and the decode settings, so a second run does not
    decode again; larger data is decoded batch by batch (:class:`StreamingLoader`). An unreadable
    image raises :class:`~prunekit.errors.DataError` naming it.
    """
    _check_channels(channels)
    check_mean_std(mean, std, channels)
    workers = default_num_workers() if num_workers is None else num_workers
    if workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {workers}")
    if cache_mb < 0:
        raise ConfigError(f"cache_mb must be >= 0, got {cache_mb}")
    listing = scan_image_folder(path)
    size = image_size_of(listing, image_size)
    labels = {split: torch.tensor(part.labels, dtype=torch.int64) for split, part in listing.splits.items()}
    plan = plan_splits(labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, subset=subset)
    decoded_mb = sum(len(part) for part in listing.splits.values()) * channels * size[0] * size[1] / 2**20
    in_memory = decoded_mb <= cache_mb
    images: dict[str, Tensor] = {}

    def raw(split: str) -> Tensor:
        if split not in images:
            images[split] = _decoded(listing, split, size, channels, workers, DecodedCache(cache_dir), progress)
        return images[split]

    def make(split: str, mean: tuple[float, ...], std: tuple[float, ...]) -> ArrayDataset | FileDataset:
        common = {"class_names": listing.classes, "name": "imagefolder", "split": split}
        if in_memory:
            return ArrayDataset(raw(split), labels[split], mean=mean, std=std, **common)  # type: ignore[arg-type]
        return FileDataset(listing.paths(split), labels[split], size=size, channels=channels, mean=mean, std=std, **common)  # type: ignore[arg-type]

    def stats(split: str, indices: Tensor | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if in_memory:
            return channel_stats(raw(split), 1 / 255, indices)
        pool = torch.arange(len(listing.splits[split])) if indices is None else indices
        sample = pool[torch.linspace(0, pool.numel() - 1, min(STATS_SAMPLE, pool.numel())).round().long().unique()]
        paths = listing.paths(split)
        pixels = decode_files([paths[i] for i in sample.tolist()], size, channels, num_workers=workers, progress=progress,
                              description="image statistics")
        return channel_stats(torch.from_numpy(pixels), 1 / 255)

    how = "in memory" if in_memory else f"streamed ({decoded_mb:.0f} MiB decoded > cache_mb={cache_mb:g})"
    return assemble(
        "imagefolder", plan, make, stats, mean=mean, std=std, class_names=listing.classes, batch_size=batch_size, seed=seed,
        augment=resolve_augment(augment, crop_scale or default_crop_scale(size), default=True), num_workers=workers,
        source=f"image folder {listing.root} ({len(listing.classes)} classes, {size[0]}×{size[1]}, {how})",
    )


def _decoded(listing: FolderListing, split: str, size: tuple[int, int], channels: int, workers: int,
             cache: DecodedCache, progress: bool) -> Tensor:
    """uint8 images of ``split``, from the disk cache when its listing and settings are unchanged."""
    part = listing.splits[split]
    key = cache.key(listing.fingerprint(split), size, channels)
    hit = cache.load(key, len(part))
    if hit is not None:
        log.info("image folder %s %s: decoded images from the cache %s", listing.root, split, cache.path(key))
        return hit[0]
    pixels = torch.from_numpy(decode_files(listing.paths(split), size, channels, num_workers=workers, progress=progress,
                                           description=f"decoding {split} images"))
    cache.save(key, pixels, torch.tensor(part.labels, dtype=torch.int64))
    return pixels


#: Area range of the random resized crop for images of at least :data:`LARGE_IMAGE` pixels a side
#: (the ImageNet recipe) and for smaller ones, which have too few pixels to keep only 8% of them.
LARGE_CROP_SCALE, SMALL_CROP_SCALE = (0.08, 1.0), (0.35, 1.0)
LARGE_IMAGE = 128


def default_crop_scale(size: Sequence[int]) -> tuple[float, float]:
    """The random resized crop's default area range for images of ``size`` (height, width)."""
    return LARGE_CROP_SCALE if min(size) >= LARGE_IMAGE else SMALL_CROP_SCALE


def resolve_augment(augment: bool | Augment | None, crop_scale: tuple[float, float], *, default: bool) -> Augment | None:
    """The training augmentation: :class:`ResizedCropFlip` of ``crop_scale`` when ``augment`` is
    True (or None and ``default``), none when False, else the callable given."""
    if augment is None:
        augment = default
    if augment is False:
        return None
    if augment is True:
        if len(crop_scale) != 2 or not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ConfigError(f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {list(crop_scale)}")
        return ResizedCropFlip(scale=(float(crop_scale[0]), float(crop_scale[1])))
    if callable(augment):
        return augment
    raise ConfigError(f"augment must be None, a bool or a callable (images, generator) -> images, got {augment!r}")


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
