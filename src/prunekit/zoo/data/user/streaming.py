"""Image files decoded batch by batch, for splits larger than the in-memory cap."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.zoo.data.augment import Augment
from prunekit.zoo.data.dataset import affine_normalization
from prunekit.zoo.data.loaders import BatchLoader
from prunekit.zoo.data.user.decode import decode_batch, worker_context


class FileDataset:
    """Image files and labels, decoded when read (uint8 ``channels × size``), normalised as
    :class:`~prunekit.zoo.data.ArrayDataset` does: ``(v / 255 - mean[c]) / std[c]``."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Tensor,
        *,
        size: tuple[int, int],
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        class_names: Sequence[str] = (),
        name: str = "",
        split: str = "",
    ) -> None:
        self.files = tuple(str(f) for f in files)
        self.labels = labels.to(torch.int64)
        self.size, self.channels = tuple(size), channels
        self.mean, self.std, self.scale = tuple(mean), tuple(std), 1.0 / 255.0
        self.class_names, self.name, self.split = tuple(class_names), name, split
        self._gain, self._bias = affine_normalization(self.mean, self.std, self.scale)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.channels, *self.size)  # type: ignore[return-value]

    def decode(self, indices: Tensor) -> Tensor:
        """uint8 images at ``indices`` (N, C, H, W), decoded in this process."""
        return torch.from_numpy(decode_batch([self.files[i] for i in indices.tolist()], self.size, self.channels))

    def normalize(self, raw: Tensor) -> Tensor:
        """Normalise a raw batch (N, C, H, W) to float32."""
        return raw.to(torch.float32).mul_(self._gain).add_(self._bias)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.normalize(self.decode(torch.tensor([index])))[0], self.labels[index]

    def __repr__(self) -> str:
        return f"FileDataset({self.name!r}, split={self.split!r}, n={len(self)}, shape={self.input_shape})"


class StreamingLoader(BatchLoader):
    """A :class:`~prunekit.zoo.data.BatchLoader` over a :class:`FileDataset`: the same order,
    augmentation, epochs and sharding, but each batch is decoded when needed, by ``num_workers``
    processes (0: in this process) working up to ``prefetch`` batches ahead."""

    def __init__(
        self,
        dataset: FileDataset,
        indices: Tensor | None = None,
        *,
        batch_size: int = 128,
        shuffle: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        prefetch: int | None = None,
    ) -> None:
        super().__init__(dataset, indices, batch_size=batch_size, shuffle=shuffle, augment=augment, seed=seed, drop_last=drop_last)  # type: ignore[arg-type]
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.num_workers = num_workers
        self.prefetch = max(1, prefetch if prefetch is not None else 2 * num_workers)

    def _batches(self, order: Tensor | None, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        data: FileDataset = self.dataset  # type: ignore[assignment]
        total = len(data) if order is None else order.numel()
        order = torch.arange(total) if order is None else order
        picks = [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(len(self))]
        for where, raw in zip(picks, self._decoded(data, picks), strict=True):
            if self.augment is not None:
                assert generator is not None
                raw = self.augment(raw, generator)
            yield data.normalize(raw), data.labels[where]

    def _decoded(self, data: FileDataset, picks: list[Tensor]) -> Iterator[Tensor]:
        if self.num_workers == 0:
            yield from (data.decode(where) for where in picks)
            return
        with ProcessPoolExecutor(self.num_workers, mp_context=worker_context()) as pool:
            pending: deque[Future] = deque()
            try:
                for where in picks:
                    pending.append(pool.submit(decode_batch, [data.files[i] for i in where.tolist()], data.size, data.channels))
                    if len(pending) > self.prefetch:
                        yield torch.from_numpy(pending.popleft().result())
                while pending:
                    yield torch.from_numpy(pending.popleft().result())
            finally:
                for job in pending:
                    job.cancel()

    def __repr__(self) -> str:
        return "Streaming" + super().__repr__() + f" (num_workers={self.num_workers})"
