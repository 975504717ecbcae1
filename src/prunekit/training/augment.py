"""Data augmentation of the training batches a run fits on (``TrainConfig.augment``), e.g. during the
retraining of pruned models: the zoo's crop augmentations, and the corruption suite as training-time
shift ("Lost in Pruning", Liebenwein et al. 2021: retrain under shift to keep prune potential there).

Only the batches :func:`~prunekit.training.fit` trains on are augmented; validation batches and the
calibration batches a pruner scores on are left as they are. Every draw is seeded from the run's
seed and the epoch, so an epoch is reproducible on its own (and a resumed run draws the same).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor

from prunekit._settings import Settings
from prunekit.errors import ConfigError
from prunekit.metrics.corruptions import CORRUPTIONS, expand_corruptions
from prunekit.zoo.data.augment import CropFlip, ResizedCropFlip
from prunekit.zoo.data.loaders import BatchLoader, seeded_generator

#: Stream tag of the corruption draws (apart from the loader's split/shuffle/augment streams).
_CORRUPT = 11


class AugmentConfig(Settings):
    """Training-time augmentation.

    ``crop``: ``crop_flip`` (zero-padded random crop by ``padding`` + horizontal flip, the CIFAR
    recipe) or ``resized_crop`` (random resized crop + flip), on the raw images of a
    :class:`~prunekit.zoo.data.loaders.BatchLoader`. ``corruptions``: names, families or ``"all"``
    of the corruption suite; each training batch is, with probability ``p``, corrupted by one of
    them drawn uniformly at a severity drawn uniformly from ``severities`` (seeded per batch).
    """

    crop: Literal["crop_flip", "resized_crop"] | None = None
    padding: int = Field(4, ge=0, le=64)
    flip_p: float = Field(0.5, ge=0, le=1)
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    p: float = Field(0.5, ge=0, le=1, description="probability that a training batch is corrupted")

    @field_validator("corruptions")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        expand_corruptions(names)  # raises naming the unknown entry and the allowed ones
        return names

    @field_validator("severities")
    @classmethod
    def _severities(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if not values or any(not 1 <= s <= 5 for s in values):
            raise ValueError(f"severities must be a non-empty list of 1..5, got {list(values)}")
        return values


class CorruptedBatches:
    """``batches`` with each batch corrupted, with probability ``p``, by a seeded random corruption and
    severity; re-iterable, with ``len()`` and ``set_epoch`` (passed on) like a loader.

    Batch ``b`` of epoch ``e`` draws from a generator seeded by ``(seed, e)``, so the same epoch gives
    the same corruptions whatever ran before it."""

    def __init__(self, batches: Iterable[tuple[Tensor, Tensor]], corruptions: Iterable[str], severities: Iterable[int] = (1, 2, 3, 4, 5),
                 p: float = 0.5, seed: int = 0) -> None:
        self.batches, self.names = batches, expand_corruptions(corruptions)
        self.severities, self.p, self.seed, self._epoch = tuple(severities), p, seed, 0
        if not self.names:
            raise ConfigError("corrupted training batches need at least one corruption; give corruptions (e.g. ['all'])")
        #: (corruption, severity) of every batch of the last pass; ``None`` where a batch was left clean.
        self.drawn: list[tuple[str, int] | None] = []

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``'s draws (and the wrapped loader's order for ``epoch``)."""
        self._epoch = epoch
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        generator = seeded_generator(self.seed, _CORRUPT, epoch)
        self.drawn = []
        for x, y in self.batches:
            apply = float(torch.rand((), generator=generator)) < self.p
            name = self.names[int(torch.randint(len(self.names), (), generator=generator))]
            severity = self.severities[int(torch.randint(len(self.severities), (), generator=generator))]
            self.drawn.append((name, severity) if apply else None)
            yield (CORRUPTIONS.get(name)(x, severity, generator) if apply else x), y


def augment_batches(batches: Iterable[tuple[Tensor, Tensor]], config: AugmentConfig | None, seed: int = 0) -> Iterable[tuple[Tensor, Tensor]]:
    """``batches`` as ``config`` augments them (unchanged for ``None``).

    A crop needs the raw images, so ``batches`` must then be a
    :class:`~prunekit.zoo.data.loaders.BatchLoader` (a copy with its ``augment`` set is returned;
    the loader's own seed drives it); corruptions wrap any batches (:class:`CorruptedBatches`,
    seeded by ``seed``)."""
    if config is None:
        return batches
    if config.crop is not None:
        if not isinstance(batches, BatchLoader):
            raise ConfigError(f"augment.crop={config.crop!r} crops raw images and needs the zoo's BatchLoader, "
                              f"not {type(batches).__name__}; augment your own batches yourself or use augment.corruptions only")
        crop = CropFlip(config.padding, config.flip_p) if config.crop == "crop_flip" else ResizedCropFlip(flip_p=config.flip_p)
        batches = copy.copy(batches)
        batches.augment = crop
    if config.corruptions:
        batches = CorruptedBatches(batches, config.corruptions, config.severities, config.p, seed)
    return batches
