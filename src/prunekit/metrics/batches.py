"""Shortened evaluation: the first examples (or batches) of a labelled loader, deterministically."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import chain

import torch
from torch import Tensor, nn


class FirstExamples:
    """The first ``examples`` examples and at most ``max_batches`` batches of ``batches``.

    Re-iterable (each ``iter()`` starts again from the first batch of ``batches``, which must then be
    re-iterable and in a fixed order, like an unshuffled test loader); the last batch is cut so that
    exactly ``examples`` examples come out when there are that many. ``len()`` is the number of
    batches when it can be known without iterating (``batches`` has a length).
    """

    def __init__(self, batches: Iterable[tuple[Tensor, Tensor]], examples: int | None = None, max_batches: int | None = None) -> None:
        if examples is not None and examples < 1:
            raise ValueError(f"examples must be >= 1, got {examples}")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        self.batches = batches
        self.examples = examples
        self.max_batches = max_batches

    @property
    def total_examples(self) -> int | None:
        """Examples of the whole of ``batches`` (from its ``dataset_size`` or ``len(dataset)``), if known."""
        size = getattr(self.batches, "dataset_size", None)
        if size is None and hasattr(getattr(self.batches, "dataset", None), "__len__"):
            size = len(self.batches.dataset)  # type: ignore[attr-defined]
        return None if size is None else int(size)

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.examples is not None or self.max_batches is not None

    def __len__(self) -> int:
        n = len(self.batches)  # type: ignore[arg-type]
        if self.max_batches is not None:
            n = min(n, self.max_batches)
        size = getattr(self.batches, "batch_size", None)
        if self.examples is not None and isinstance(size, int) and size > 0:
            n = min(n, math.ceil(self.examples / size))
        return n

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        left, taken = self.examples, 0
        source = iter(self.batches)
        while (self.max_batches is None or taken < self.max_batches) and left != 0:  # never fetch a batch that is not used
            x, y = next(source, (None, None))
            if y is None:
                return
            if left is not None:
                x, y = x[:left], y[:left]
                left -= len(y)
            taken += 1
            yield x, y


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a model with neither."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device
