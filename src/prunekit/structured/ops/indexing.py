"""Indexing: ``x[...]``, item assignment, narrow/select and index-tensor gathers."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import fx

from prunekit.structured.fields import Field, TensorInfo
from prunekit.structured.ops.registry import arg, register_op
from prunekit.structured.shapes import Evaluator, Invalid, Site
from prunekit.structured.values import TensorMeta, TracedInt


def _is_int(ctx: Any, item: Any) -> bool:
    value = ctx.value(item)
    return isinstance(value, int) and not isinstance(value, bool)


def _slice_site(ctx: Any, x: TensorInfo, axis: int, item: slice, old: slice) -> None:
    """A slice with non-constant bounds on a labelled axis: bounds must follow the removed positions."""
    n = x.shape[axis]

    def norm(bound: Any, size: int, default: int) -> int:
        if bound is None:
            return default
        return max(0, min(size, bound + size if bound < 0 else bound))

    def targets(ev: Evaluator) -> tuple[int | None, int | None]:
        start = None if old.start is None else ev.kept_before(x, axis, norm(old.start, n, 0))
        stop = None if old.stop is None else ev.kept_before(x, axis, norm(old.stop, n, n))
        return start, stop

    def bind(ev: Evaluator) -> list[Any]:
        start, stop = targets(ev)
        out = []
        for raw, want in ((item.start, start), (item.stop, stop)):
            if isinstance(raw, TracedInt) and want is not None and raw >= 0:
                out.extend(raw.rebind(want))
        return out

    def check(ev: Evaluator) -> None:
        start, stop = targets(ev)
        size = ev.size(x, axis)
        got_start = norm(ev.value(item.start), size, 0)
        got_stop = norm(ev.value(item.stop), size, size)
        if (start is not None and got_start != start) or (stop is not None and got_stop != stop):
            raise Invalid(f"slice [{ev.value(item.start)}:{ev.value(item.stop)}] would not select the same channels")

    ctx.site(Site(ctx.node, ctx.where, "slice bounds", [f.ids for f in x.fields], check, bind,
                  always=isinstance(item.start, TracedInt) or isinstance(item.stop, TracedInt)))


def index_info(ctx: Any, x: TensorInfo, index: Any, out_shape: tuple[int, ...]) -> TensorInfo | None:
    """Labelling of ``x[index]``; None when the index form is not understood."""
    items = list(index) if isinstance(index, tuple) else [index]
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    plan: list[tuple[str, Any, int | None]] = []  # (kind, item, out axis) per input axis
    out_ax = 0
    advanced_out: int | None = None
    for it in items:
        if it is None:
            out_ax += 1
        elif it is Ellipsis:
            for _ in range(x.ndim - consumed):
                plan.append(("full", slice(None), out_ax))
                out_ax += 1
        elif isinstance(it, slice):
            plan.append(("slice", it, out_ax))
            out_ax += 1
        elif _is_int(ctx, it):
            plan.append(("int", it, None))
        elif isinstance(it, fx.Node) and isinstance(it.meta.get("value"), TensorMeta):
            if advanced_out is not None:
                return None
            meta = it.meta["value"]
            if meta.dtype.is_floating_point or str(meta.dtype) == "torch.bool":
                return None
            advanced_out = out_ax
            plan.append(("tensor", it, out_ax))
            out_ax += len(meta.shape)
        else:
            return None
    while len(plan) < x.ndim:
        plan.append(("full", slice(None), out_ax))
        out_ax += 1
    fields: list[Field] = []
    for f in x.fields:
        ids, axes, keep = f.ids, [], True
        drop: list[int] = []
        for k, a in enumerate(f.axes):
            kind, it, dst = plan[a]
            if kind == "tensor":
                ctx.ids.block(f.ids, "channels picked by an index tensor", ctx.where)
                keep = False
                break
            if kind == "int":
                pos = int(ctx.value(it)) % x.shape[a]
                if len(f.axes) == 1:
                    ctx.ids.block(np.take(ids, range(pos + 1), axis=k), "a channel picked by a constant index", ctx.where)
                    keep = False
                    break
                ctx.ids.union_along(f.ids, (k,))
                drop.append(k)
                continue
            if kind == "slice":
                old = ctx.value(it)
                sl = slice(*old.indices(x.shape[a]))
                if sl != slice(0, x.shape[a], 1):
                    constant = all(not isinstance(b, fx.Node) and not isinstance(b, TracedInt) for b in (it.start, it.stop, it.step))
                    if len(f.axes) > 1 and (sl.step != 1 or constant):
                        # merged along this axis, which then never shrinks: the field's other axes stay
                        # removable (whole heads under rotary's x[..., ::2] / x[..., 1::2])
                        ctx.ids.union_along(f.ids, (k,))
                        ids = np.take(ids, range(sl.start, sl.stop, sl.step), axis=k)
                        axes.append(dst)
                        continue
                    if sl.step != 1:
                        ctx.ids.block(f.ids, "strided slice of channels", ctx.where)
                        keep = False
                        break
                    if constant:
                        ctx.ids.block(np.take(ids, range(sl.stop), axis=k), "channels sliced at constant positions", ctx.where)
                    else:
                        _slice_site(ctx, x, a, it, old)
                    ids = np.take(ids, range(sl.start, sl.stop), axis=k)
            axes.append(dst)
        if not keep:
            continue
        for k in sorted(drop, reverse=True):
            ids = np.take(ids, 0, axis=k)
        if axes:
            fields.append(Field(tuple(axes), ids).moved(tuple(axes)))
    return TensorInfo(out_shape, fields)


@register_op("getitem")
def getitem(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    container, index = ctx.info(args[0]), args[1]
    if isinstance(container, (list, tuple)):
        key = ctx.value(index)
        return container[key]
    if isinstance(container, dict):
        return container[ctx.value(index)]
    if not isinstance(container, TensorInfo):
        return ctx.fixed(ctx.out)
    info = index_info(ctx, container, index, ctx.out_shape)
    return info if info is not None else ctx.unknown("indexing form has no channel rule")


@register_op("setitem")
def setitem(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    x, index, value = ctx.tensor(args[0]), args[1], args[2]
    if x is None:
        return None
    shape = np.empty(x.shape, dtype=np.int8)[_numpy_index(ctx, index)].shape
    region = index_info(ctx, x, index, tuple(shape))
    y = ctx.tensor(value)
    if region is None:
        ctx.unknown("item assignment form has no channel rule")
        return None
    if y is not None:
        offset = len(shape) - y.ndim
        letters = [ax + offset if y.shape[ax] == shape[ax + offset] else None for ax in range(y.ndim)]
        ctx.einsum([(region, list(range(len(shape)))), (y, letters)], list(range(len(shape))), tuple(shape))
    return None


def _numpy_index(ctx: Any, index: Any) -> Any:
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for it in items:
        value = ctx.value(it)
        if isinstance(value, TensorMeta):
            raise ValueError("tensor index in item assignment")
        out.append(value)
    return tuple(out)


@register_op("narrow")
def narrow(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = ctx.tensor(args[0])
    dim = int(ctx.value(arg(args, kwargs, 1, "dim"))) % x.ndim
    start, length = arg(args, kwargs, 2, "start"), arg(args, kwargs, 3, "length")
    index = tuple([slice(None)] * dim + [slice(start, int(ctx.value(start)) + int(ctx.value(length)))])
    return index_info(ctx, x, index, ctx.out_shape) or ctx.unknown("narrow")


@register_op("select")
def select(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = ctx.tensor(args[0])
    dim = int(ctx.value(arg(args, kwargs, 1, "dim"))) % x.ndim
    index = tuple([slice(None)] * dim + [arg(args, kwargs, 2, "index")])
    return index_info(ctx, x, index, ctx.out_shape) or ctx.unknown("select")


@register_op("index_select", "gather", "take_along_dim", "scatter", "scatter_add", "scatter_reduce", "index_add",
             "index_copy", "index_fill", "index_put", "unfold")
def along_dim_index(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    """Ops that pick positions along one dim by index: that dim must not carry channels."""
    x = ctx.tensor(args[0])
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    dim = int(ctx.value(arg(args, kwargs, 2 if name == "take_along_dim" else 1, "dim", 0))) % max(1, x.ndim)
    out = ctx.out_shape
    keep = []
    for f in x.fields:
        if dim in f.axes or any(a >= len(out) or out[a] != x.shape[a] for a in f.axes):
            ctx.ids.block(f.ids, f"'{name}' indexes along a labelled axis", ctx.where)
        else:
            keep.append(f)
    for a in args[2:]:
        other = ctx.tensor(a)
        if other is not None:
            for f in other.fields:
                ctx.ids.block(f.ids, f"'{name}' source tensor", ctx.where)
    return TensorInfo(out, keep)
