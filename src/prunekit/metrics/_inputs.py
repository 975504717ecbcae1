"""Normalising example inputs: a tensor or a tuple of positional tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

Inputs = Tensor | tuple[Any, ...]


def as_args(example_inputs: Inputs) -> tuple[Any, ...]:
    """Positional arguments for ``model(*args)``."""
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def batched(inputs: tuple[Any, ...], size: int) -> tuple[Any, ...]:
    """``inputs`` with every batched tensor repeated (then cut) to ``size`` examples."""
    def one(x: Any) -> Any:
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] == size:
            return x
        return x.repeat(-(-size // x.shape[0]), *([1] * (x.dim() - 1)))[:size]
    return tuple(one(x) for x in inputs)


def batch_size(example_inputs: Inputs) -> int:
    """Leading dimension of the first tensor input."""
    first = as_args(example_inputs)[0]
    return int(first.shape[0]) if isinstance(first, Tensor) and first.dim() > 0 else 1


class eval_mode:
    """Context manager: put a model in eval mode under ``no_grad`` and restore its mode after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._was_training = model.training
        self._no_grad = torch.no_grad()

    def __enter__(self) -> nn.Module:
        self.model.eval()
        self._no_grad.__enter__()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self._no_grad.__exit__(*exc)
        self.model.train(self._was_training)
