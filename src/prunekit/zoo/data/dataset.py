"""An in-memory image dataset that stores raw pixels and normalises on access."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from prunekit.errors import DataError


def affine_normalization(mean: Sequence[float], std: Sequence[float], scale: float) -> tuple[Tensor, Tensor]:
    """``(gain, bias)`` of shape (1, C, 1, 1) with ``v * gain + bias == (v * scale - mean) / std``."""
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return scale / std_t, -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t


class ArrayDataset(Dataset[tuple[Tensor, Tensor]]):
    """Images (N, C, H, W) as stored (uint8) plus int64 labels, normalised when read.

    A value ``v`` becomes ``(v * scale - mean[c]) / std[c]`` as float32. Indexing gives one
    ``(image, label)`` pair like ``TensorDataset``; :meth:`batch` gathers many at once, and
    :meth:`as_tensors` materialises the whole normalised split.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        scale: float = 1.0 / 255.0,
        class_names: Sequence[str] = (),
        name: str = "",
        split: str = "",
    ) -> None:
        if images.ndim != 4 or labels.shape != (images.shape[0],):
            raise DataError(f"{name or 'dataset'} {split}: need images (N, C, H, W) and N labels, got {tuple(images.shape)} and {tuple(labels.shape)}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise DataError(f"{name or 'dataset'} {split}: mean/std need {channels} values")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.scale = float(scale)
        self.class_names = tuple(class_names)
        self.name = name
        self.split = split
        self._gain, self._bias = affine_normalization(self.mean, self.std, self.scale)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def normalize(self, raw: Tensor) -> Tensor:
        """Normalise a raw batch (N, C, H, W) to float32."""
        return raw.to(torch.float32).mul_(self._gain).add_(self._bias)

    def batch(self, indices: Tensor | slice) -> tuple[Tensor, Tensor]:
        """Normalised images and labels at ``indices``."""
        return self.normalize(self.images[indices]), self.labels[indices]

    def as_tensors(self) -> tuple[Tensor, Tensor]:
        """The whole split as (float32 images, int64 labels); allocates a normalised copy."""
        return self.batch(slice(None))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.normalize(self.images[index][None])[0], self.labels[index]

    def __repr__(self) -> str:
        return f"ArrayDataset({self.name!r}, split={self.split!r}, n={len(self)}, shape={self.input_shape})"
