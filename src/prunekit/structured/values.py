"""What the tracer records of concrete values: :class:`TensorMeta` for tensors, :class:`TracedInt` for sizes read from modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class TracedInt(int):
    """An ``int`` read from a module attribute during tracing: ``owner.attr`` (or ``owner.attr[index]``)."""

    owner: str
    attr: str
    index: int | None

    def __new__(cls, value: int, owner: str, attr: str, index: int | None = None) -> TracedInt:
        obj = super().__new__(cls, value)
        obj.owner, obj.attr, obj.index = owner, attr, index
        return obj

    @property
    def key(self) -> tuple[str, str, int | None]:
        return (self.owner, self.attr, self.index)

    def __repr__(self) -> str:
        return int.__repr__(self)


@dataclass(frozen=True)
class TensorMeta:
    """Shape and dtype of a tensor value seen while tracing."""

    shape: tuple[int, ...]
    dtype: torch.dtype


def summarize(value: Any) -> Any:
    """What the graph keeps of a concrete value: tensors become :class:`TensorMeta`, containers recurse."""
    if isinstance(value, torch.Tensor):
        return TensorMeta(tuple(value.shape), value.dtype)
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, (list, tuple)):
        return type(value)(summarize(v) for v in value) if not hasattr(value, "_fields") else tuple(summarize(v) for v in value)
    if isinstance(value, dict):
        return {k: summarize(v) for k, v in value.items()}
    if isinstance(value, (int, float, bool, str, type(None), torch.dtype, torch.device, slice)):
        return value
    return None


__all__ = ["TensorMeta", "TracedInt", "summarize"]
