"""Fast batch iteration over in-memory datasets, seeded validation splits, and :class:`DataBundle`."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.zoo.data.augment import Augment
from prunekit.zoo.data.dataset import ArrayDataset

# Stream tags: each use of a seed draws from its own independent generator.
_SPLIT, _SHUFFLE, _AUGMENT = 1, 2, 3


def seeded_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, *stream)`` through numpy's ``SeedSequence``."""
    words = np.random.SeedSequence([seed, *stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(words[0]) << 32) | int(words[1]))


def split_indices(n: int, val_fraction: float, seed: int, subset: int | None = None) -> tuple[Tensor, Tensor]:
    """Seeded ``(train, val)`` index split of ``range(n)``.

    The indices are permuted with ``seed``; with ``subset`` only the first ``subset`` of that
    permutation are used. Of those, the first ``round(val_fraction * len)`` form the validation
    split (returned sorted) and the rest the training split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if subset is not None and not 1 <= subset <= n:
        raise ConfigError(f"subset must be between 1 and the training set size {n}, got {subset}")
    pool = torch.randperm(n, generator=seeded_generator(seed, _SPLIT))[: subset or n]
    n_val = math.floor(val_fraction * pool.numel() + 0.5)
    if n_val >= pool.numel():
        raise ConfigError(f"val_fraction={val_fraction} leaves no training examples out of {pool.numel()}")
    return pool[n_val:], pool[:n_val].sort().values


class BatchLoader:
    """Yields ``(x, y)`` batches (float32 normalised images, int64 labels) from an :class:`ArrayDataset`.

    Batches are gathered from in-memory tensors, so there are no worker processes. With
    ``shuffle``, each epoch's order comes from a generator seeded by ``(seed, epoch)``; ``augment``
    gets its own generator seeded the same way, so any epoch is reproducible on its own. Each
    ``iter()`` uses the current epoch and then advances it; :meth:`set_epoch` picks the epoch of
    the next iteration (to resume a run). :meth:`shard` gives one process's share under torchrun.
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        indices: Tensor | None = None,
        *,
        batch_size: int = 128,
        shuffle: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.indices = None if indices is None else indices.to(torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world_size = 0, 1
        self._epoch = 0

    def shard(self, rank: int, world_size: int) -> BatchLoader:
        """Process ``rank``'s share of ``world_size`` (``DistributedSampler`` semantics): each epoch's
        order is the same seeded permutation on every rank, padded by repeating its start to a
        multiple of ``world_size``; this rank takes every ``world_size``-th example from ``rank`` on,
        so every rank runs the same number of batches. ``batch_size`` stays per process."""
        if self.world_size != 1:
            raise ConfigError(f"{self!r} is already shard {self.rank} of {self.world_size}; shard the unsharded loader")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if world_size > self._total_size:
            raise ConfigError(f"cannot split {self._total_size} examples between {world_size} processes")
        out = copy.copy(self)
        out.rank, out.world_size = rank, world_size
        return out

    @property
    def _total_size(self) -> int:
        return len(self.dataset) if self.indices is None else int(self.indices.numel())

    @property
    def dataset_size(self) -> int:
        """Number of examples this loader iterates over (per epoch; this rank's share when sharded)."""
        return math.ceil(self._total_size / self.world_size)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch`` (its shuffle order and augmentation)."""
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self._epoch = epoch

    def __len__(self) -> int:
        n = self.dataset_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        order = self.indices
        if self.shuffle:
            perm = torch.randperm(self._total_size, generator=seeded_generator(self.seed, _SHUFFLE, epoch))
            order = perm if order is None else order[perm]
        shard: tuple[int, ...] = ()
        if self.world_size > 1:
            order = torch.arange(self._total_size) if order is None else order
            padded = order.repeat(math.ceil(self.dataset_size * self.world_size / order.numel()))[: self.dataset_size * self.world_size]
            order, shard = padded[self.rank :: self.world_size], (self.rank, self.world_size)
        generator = seeded_generator(self.seed, _AUGMENT, epoch, *shard) if self.augment is not None else None
        return self._batches(order, generator)

    def _batches(self, order: Tensor | None, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        data = self.dataset
        for b in range(len(self)):
            start = b * self.batch_size
            where = slice(start, start + self.batch_size) if order is None else order[start : start + self.batch_size]
            raw, labels = data.images[where], data.labels[where]
            if self.augment is not None:
                assert generator is not None
                raw = self.augment(raw, generator)
            yield data.normalize(raw), labels

    def __repr__(self) -> str:
        return (
            f"BatchLoader({self.dataset.name}/{self.dataset.split}, n={self.dataset_size}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, augment={self.augment is not None}"
            + (f", shard={self.rank}/{self.world_size})" if self.world_size > 1 else ")")
        )


@dataclass(frozen=True)
class DataBundle:
    """Train / validation / test loaders of one dataset plus what a model needs to know about it."""

    name: str
    train: BatchLoader
    val: BatchLoader | None
    test: BatchLoader
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    #: Where the data came from (file set and folder), for reports.
    source: str
