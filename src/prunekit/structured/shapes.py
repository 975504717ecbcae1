"""Shape consistency of a pruning plan: the sizes a model computes after pruning must match.

Some operations carry sizes as arguments (``x.reshape(B, N, 3, self.num_heads, -1)``, a slice
bound, ``num_groups``). A :class:`Site` records such an operation; given a plan, an
:class:`Evaluator` recomputes every size the forward would compute (tensor sizes shrink, integer
expressions are re-evaluated, attributes take their new values) and the site checks that the
argument still matches what the pruned tensors need. A :class:`~prunekit.structured.trace.TracedInt`
argument is not a constant: the site *binds* its attribute to the size it must have, and the
surgery writes it. Control-flow decisions taken while tracing are sites too (they must not flip).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import fx

from prunekit.structured.fields import Field, TensorInfo
from prunekit.structured.values import TensorMeta, TracedInt

AttrKey = tuple[str, str, int | None]


class Invalid(Exception):
    """A plan breaks a size the model computes."""


@dataclass
class Site:
    """An operation whose size arguments must stay consistent with a plan."""

    node: fx.Node
    where: str
    what: str
    ids: list[np.ndarray]
    check: Callable[[Evaluator], None]
    bind: Callable[[Evaluator], Iterable[tuple[AttrKey, int]]] = lambda ev: ()
    always: bool = False  # depends on attribute values: checked whenever one it reads is rewritten


_SCALAR_FUNCS = {len, int, float, bool, max, min, abs, round, divmod, getattr}


@dataclass
class Evaluator:
    """Sizes and integer values under a plan (``removed[label]`` marks removed units)."""

    infos: dict[fx.Node, Any]
    labels: np.ndarray
    removed: np.ndarray
    bindings: dict[AttrKey, int] = field(default_factory=dict)
    _shapes: dict[fx.Node, tuple[int, ...]] = field(default_factory=dict)
    _values: dict[fx.Node, Any] = field(default_factory=dict)
    _sizes: dict[tuple[int, int], tuple[Field, int]] = field(default_factory=dict)  # (id(field), axis) -> (the field, kept size)

    def with_bindings(self, bindings: dict[AttrKey, int]) -> Evaluator:
        """The same plan with attribute values ``bindings`` (tensor sizes, which do not depend on them, are shared)."""
        return Evaluator(self.infos, self.labels, self.removed, dict(bindings), self._shapes, {}, self._sizes)

    # --- tensors ------------------------------------------------------------------------------
    def kept_along(self, f: Field, axis: int) -> np.ndarray:
        """Boolean mask over positions of ``axis`` (a tensor axis in ``f.axes``) that survive."""
        k = f.axes.index(axis)
        gone = self.removed[self.labels[f.ids]]
        other = tuple(i for i in range(f.ids.ndim) if i != k)
        return ~(gone.all(axis=other) if other else gone)

    def size(self, info: TensorInfo, axis: int) -> int:
        f = info.field_at(axis)
        if f is None:
            return info.shape[axis]
        key = (id(f), axis)
        cached = self._sizes.get(key)
        if cached is None:  # the entry holds the field, so its id is not reused while cached
            cached = self._sizes[key] = (f, int(self.kept_along(f, axis).sum()))
        return cached[1]

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        cached = self._shapes.get(node)
        if cached is None:
            info = self.infos[node]
            cached = tuple(self.size(info, ax) for ax in range(info.ndim))
            self._shapes[node] = cached
        return cached

    def shape_of(self, info: TensorInfo) -> tuple[int, ...]:
        return tuple(self.size(info, ax) for ax in range(info.ndim))

    def kept_before(self, info: TensorInfo, axis: int, pos: int) -> int:
        f = info.field_at(axis)
        if f is None:
            return pos
        return int(self.kept_along(f, axis)[:pos].sum())

    # --- integers -----------------------------------------------------------------------------
    def value(self, a: Any) -> Any:
        if isinstance(a, TracedInt):
            return a.of(self.bindings[a.key]) if a.key in self.bindings else int(a)
        if isinstance(a, fx.Node):
            if a not in self._values:
                self._values[a] = self._node_value(a)
            return self._values[a]
        if isinstance(a, slice):
            return slice(self.value(a.start), self.value(a.stop), self.value(a.step))
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(v) for v in a) if not hasattr(a, "_fields") else tuple(self.value(v) for v in a)
        return a

    def _node_value(self, n: fx.Node) -> Any:
        meta = n.meta.get("value")
        info = self.infos.get(n)
        if isinstance(info, TensorInfo):
            return _ShapeOnly(self.shape(n))
        if n.op == "call_method" and n.target in ("size", "dim", "numel", "nelement") and isinstance(self.infos.get(n.args[0]), TensorInfo):
            shape = self.shape(n.args[0])  # type: ignore[arg-type]
            if n.target == "size":
                dim = self.value(n.args[1]) if len(n.args) > 1 else n.kwargs.get("dim")
                return tuple(shape) if dim is None else shape[dim]
            return len(shape) if n.target == "dim" else math.prod(shape)
        if n.op == "call_function" and n.target is getattr and isinstance(self.infos.get(n.args[0]), TensorInfo):
            shape = self.shape(n.args[0])  # type: ignore[arg-type]
            if n.args[1] == "shape":
                return tuple(shape)
            if n.args[1] == "ndim":
                return len(shape)
            return meta
        if n.op == "call_function" and n.target is len and isinstance(self.infos.get(n.args[0]), TensorInfo):
            return self.shape(n.args[0])[0]  # type: ignore[arg-type]
        if n.op == "call_function" and (getattr(n.target, "__module__", None) in ("_operator", "operator", "math") or n.target in _SCALAR_FUNCS):
            args = [self.value(a) for a in n.args]
            if any(isinstance(a, _ShapeOnly) for a in args):
                return meta
            try:
                return n.target(*args, **{k: self.value(v) for k, v in n.kwargs.items()})  # type: ignore[operator]
            except Exception as exc:  # e.g. a division by a size that became 0
                raise Invalid(f"{n.format_node()} fails under the plan: {exc}") from None
        if isinstance(meta, TensorMeta):
            return _ShapeOnly(meta.shape)
        return meta


@dataclass(frozen=True)
class _ShapeOnly:
    """Stand-in for a tensor value inside integer expressions (only its shape is known)."""

    shape: tuple[int, ...]


def shape_args_site(node: fx.Node, where: str, what: str, args: list[Any], expected: Callable[[Evaluator], tuple[int, ...]], ids: list[np.ndarray], minus_one: bool = True) -> Site:
    """A site for size arguments ``args`` that must equal ``expected(ev)`` (``-1`` = inferred when allowed)."""

    def bind(ev: Evaluator) -> Iterable[tuple[AttrKey, int]]:
        want = expected(ev)
        return [kv for k, a in enumerate(args) if isinstance(a, TracedInt) and k < len(want) for kv in a.rebind(want[k])]

    def check(ev: Evaluator) -> None:
        want = expected(ev)
        got = [ev.value(a) for a in args]
        if len(got) != len(want):
            raise Invalid(f"{what}: {len(got)} sizes for {len(want)} axes")
        for k, (g, w) in enumerate(zip(got, want)):
            if minus_one and g == -1:
                continue
            if g != w and isinstance(args[k], TracedInt) and args[k].steps:
                raise Invalid(f"{what}: size argument {k} ({args[k].describe()} = {g}) cannot be rewritten exactly to {w}")
            if g != w:
                raise Invalid(f"{what}: size argument {k} would be {g} but the pruned tensor needs {w}")

    return Site(node, where, what, ids, check, bind, always=_mentions_traced(args))


def _mentions_traced(args: Any) -> bool:
    if isinstance(args, TracedInt):
        return True
    if isinstance(args, (list, tuple)):
        return any(_mentions_traced(a) for a in args)
    return False


def size_dependencies(node: fx.Node, infos: dict[fx.Node, Any]) -> list[np.ndarray]:
    """Ids of every tensor whose sizes the integer arguments of ``node`` are computed from."""
    return _walk(node, infos)[0]


def dependencies(node: fx.Node, infos: dict[fx.Node, Any]) -> tuple[list[np.ndarray], set[AttrKey]]:
    """What the integer values ``node`` computes can change with: (ids of the tensors whose sizes they read, attributes they read)."""
    return _walk(node, infos)


def _walk(node: fx.Node, infos: dict[fx.Node, Any]) -> tuple[list[np.ndarray], set[AttrKey]]:
    """(ids of tensors reached through non-tensor arguments, keys of the TracedInts that take part)."""
    ids: list[np.ndarray] = []
    keys: set[AttrKey] = set()
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        for a in _flatten(list(n.args) + list(n.kwargs.values())):
            if isinstance(a, fx.Node):
                info = infos.get(a)
                if isinstance(info, TensorInfo):
                    ids.extend(f.ids for f in info.fields)
                else:
                    stack.append(a)
            elif isinstance(a, TracedInt):
                keys.add(a.key)
    return ids, keys


def guard_site(node: fx.Node, value: Any, infos: dict[fx.Node, Any]) -> Site:
    """A control-flow decision: the guarded expression must keep ``value``."""
    ids, keys = _walk(node, infos)

    def check(ev: Evaluator) -> None:
        now = ev.value(node)
        if isinstance(now, _ShapeOnly) or _same(now, value):
            return
        raise Invalid(f"a decision in forward ({node.format_node()}) would change from {value!r} to {now!r}")

    return Site(node, str(node.meta.get("scope", "")), "control flow on a size", ids, check, always=bool(keys))


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return True


def _flatten(values: Iterable[Any]) -> Iterable[Any]:
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        elif isinstance(v, slice):
            yield from (v.start, v.stop, v.step)
        elif isinstance(v, dict):
            yield from _flatten(v.values())
        else:
            yield v


__all__ = ["AttrKey", "Evaluator", "Invalid", "Site", "guard_site", "shape_args_site"]
