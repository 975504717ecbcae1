"""Turning user splits into a :class:`~prunekit.zoo.data.DataBundle`: statistics and loaders."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.zoo.data.augment import Augment
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import BatchLoader, DataBundle
from prunekit.zoo.data.user.splits import SplitPlan
from prunekit.zoo.data.user.streaming import FileDataset, StreamingLoader

#: Pixel values summed per step when computing statistics (bounds the int64 temporary to 128 MiB).
STATS_CHUNK = 2**24

Dataset = ArrayDataset | FileDataset


def channel_stats(images: Tensor, scale: float, indices: Tensor | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``images[indices] * scale`` (N, C, H, W;
    ``indices`` None: all), gathered a chunk at a time.

    uint8 images are summed exactly in int64, so the result does not depend on chunking or order.
    """
    rows = torch.arange(images.shape[0]) if indices is None else indices
    if rows.numel() == 0:
        raise ConfigError("cannot compute mean/std of an empty training split")
    exact = images.dtype == torch.uint8
    acc = torch.int64 if exact else torch.float64
    total = torch.zeros(images.shape[1], dtype=acc)
    squares = torch.zeros(images.shape[1], dtype=acc)
    step = max(1, STATS_CHUNK // images[0].numel())
    for start in range(0, rows.numel(), step):
        chunk = images[rows[start : start + step]].to(acc)
        total += chunk.sum((0, 2, 3))
        squares += chunk.square().sum((0, 2, 3))
    count = rows.numel() * images.shape[2] * images.shape[3]
    mean = total.to(torch.float64) / count
    var = (squares.to(torch.float64) / count - mean.square()).clamp_min(0)
    std = var.sqrt() * scale
    if (std == 0).any():
        raise ConfigError(f"a channel of the training images is constant (std {std.tolist()}); give mean and std (data.mean, data.std in recipes)")
    return tuple((mean * scale).tolist()), tuple(std.tolist())


def check_mean_std(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int) -> None:
    """Both or neither given, one value per channel, std positive."""
    if (mean is None) != (std is None):
        raise ConfigError("give both mean and std, or neither (then they are computed from the training split)")
    if mean is not None and std is not None:
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(f"mean and std need {channels} value(s) (one per channel), got {list(mean)} and {list(std)}")
        if min(std) <= 0:
            raise ConfigError(f"std must be positive, got {list(std)}")


def assemble(
    name: str,
    plan: SplitPlan,
    make: Callable[[str, tuple[float, ...], tuple[float, ...]], Dataset],
    stats: Callable[[str, Tensor | None], tuple[tuple[float, ...], tuple[float, ...]]],
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    class_names: tuple[str, ...],
    batch_size: int,
    seed: int,
    augment: Augment | None,
    num_workers: int,
    source: str,
) -> DataBundle:
    """Loaders over ``make(source name, mean, std)`` datasets as ``plan`` says; ``stats(source,
    indices)`` gives the training split's mean/std when they are not given."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if mean is None or std is None:
        mean, std = stats(*plan.train)
    datasets: dict[str, Dataset] = {}

    def loader(part: tuple[str, Tensor | None], **options: object) -> BatchLoader:
        src, indices = part
        if src not in datasets:
            datasets[src] = make(src, tuple(mean), tuple(std))
        ds = datasets[src]
        if isinstance(ds, FileDataset):
            return StreamingLoader(ds, indices, batch_size=batch_size, num_workers=num_workers, **options)  # type: ignore[arg-type]
        return BatchLoader(ds, indices, batch_size=batch_size, **options)  # type: ignore[arg-type]

    train = loader(plan.train, shuffle=True, augment=augment, seed=seed)
    return DataBundle(
        name=name,
        train=train,
        val=loader(plan.val) if plan.val is not None else None,
        test=loader(plan.test),
        num_classes=len(class_names),
        input_shape=train.dataset.input_shape,
        class_names=class_names,
        source=source,
    )
