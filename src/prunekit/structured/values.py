"""What the tracer records of concrete values: :class:`TensorMeta` for tensors, :class:`TracedInt` for sizes read from modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class TracedInt(int):
    """An ``int`` read from a module attribute during tracing: ``owner.attr`` (or ``owner.attr[index]``).

    Arithmetic with plain ints keeps the origin: ``self.c // 2`` is a TracedInt of the same
    attribute whose ``steps`` say how its value follows from the attribute's (``of``), and which
    attribute value makes it yield a wanted size (``solve``, only where that value is exact).
    """

    owner: str
    attr: str
    index: int | None
    steps: tuple[tuple[str, int], ...]
    base: int

    def __new__(cls, value: int, owner: str, attr: str, index: int | None = None,
                steps: tuple[tuple[str, int], ...] = (), base: int | None = None) -> TracedInt:
        obj = super().__new__(cls, value)
        obj.owner, obj.attr, obj.index = owner, attr, index
        obj.steps, obj.base = steps, int(value) if base is None else base
        return obj

    @property
    def key(self) -> tuple[str, str, int | None]:
        return (self.owner, self.attr, self.index)

    def __repr__(self) -> str:
        return int.__repr__(self)

    def __reduce__(self) -> tuple[type, tuple[int]]:
        # a copy or pickle (of a value a forward stored on its module while traced) is the plain int
        return (int, (int(self),))

    def describe(self) -> str:
        """The expression in source form, e.g. ``stage.c // 2``."""
        text = f"{self.owner + '.' if self.owner else ''}{self.attr}{'' if self.index is None else f'[{self.index}]'}"
        for op, k in self.steps:
            text = f"({text} - {-k})" if op == "add" and k < 0 else _FORMS[op].format(x=text, k=k)
        return text

    def of(self, attr_value: int) -> int:
        """The value this expression takes when the attribute is ``attr_value``."""
        value = attr_value
        for op, k in self.steps:
            value = _APPLY[op](value, k)
        return value

    def solve(self, target: int) -> int | None:
        """The attribute value that makes this expression ``target``; None where no value is exact.

        ``a // k`` inverts only where the traced ``a`` was a multiple of ``k`` (it stays one), and
        ``a * k`` only where ``target`` is a multiple of ``k``: elsewhere the size is refused.
        """
        inputs = [self.base]
        for op, k in self.steps:
            inputs.append(_APPLY[op](inputs[-1], k))
        value = target
        for (op, k), before in zip(reversed(self.steps), reversed(inputs[:-1])):
            if op == "add":
                value -= k
            elif op == "rsub":
                value = k - value
            elif op == "mul":
                if k == 0 or value % k:
                    return None
                value //= k
            elif op == "floordiv":
                if before % k:
                    return None
                value *= k
        return value if self.of(value) == target else None

    def rebind(self, target: int) -> list[tuple[tuple[str, str, int | None], int]]:
        """``[(attribute key, value)]`` that makes this expression ``target`` (empty if unchanged or not exact)."""
        if target == int(self):
            return []
        value = self.solve(target)
        return [] if value is None else [(self.key, value)]

    def _derive(self, op: str, k: Any) -> Any:
        if type(k) is not int or (op == "floordiv" and k <= 0):
            return _INT_OPS[op](int(self), k)
        return TracedInt(_APPLY[op](int(self), k), self.owner, self.attr, self.index, (*self.steps, (op, k)), self.base)

    def __add__(self, other: Any) -> Any:
        return self._derive("add", other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        return self._derive("add", -other) if type(other) is int else int.__sub__(int(self), other)

    def __rsub__(self, other: Any) -> Any:
        return self._derive("rsub", other)

    def __mul__(self, other: Any) -> Any:
        return self._derive("mul", other)

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> Any:
        return self._derive("floordiv", other)

    def __neg__(self) -> Any:
        return self._derive("rsub", 0)


_APPLY = {"add": lambda v, k: v + k, "rsub": lambda v, k: k - v, "mul": lambda v, k: v * k, "floordiv": lambda v, k: v // k}
_INT_OPS = {"add": int.__add__, "rsub": int.__rsub__, "mul": int.__mul__, "floordiv": int.__floordiv__}
_FORMS = {"add": "({x} + {k})", "rsub": "({k} - {x})", "mul": "{x} * {k}", "floordiv": "{x} // {k}"}


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
