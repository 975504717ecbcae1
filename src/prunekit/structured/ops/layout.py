"""Layout ops: reshape family, permutations, expand/repeat, tensor creation (concat/split and spatial ops: :mod:`.combine`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import fx

from prunekit.structured.fields import Field, TensorInfo, broadcast_to_axes, squeeze_to_varying
from prunekit.structured.ops.registry import arg, register_op
from prunekit.structured.shapes import Evaluator, Site, shape_args_site
from prunekit.structured.values import TensorMeta, TracedInt


# --- reshape ---------------------------------------------------------------------------------
def reshape_blocks(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[range, range]]:
    """Pair contiguous runs of ``src`` and ``dst`` axes with equal products (row-major reshape)."""
    blocks, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        si, sj = i, j
        pi = pj = 1
        if i < len(src):
            pi, i = src[i], i + 1
        if j < len(dst):
            pj, j = dst[j], j + 1
        while pi != pj:
            if pi < pj and i < len(src):
                pi, i = pi * src[i], i + 1
            elif j < len(dst):
                pj, j = pj * dst[j], j + 1
            else:
                raise ValueError(f"cannot pair reshape {src} -> {dst}")
        blocks.append((range(si, i), range(sj, j)))
    return blocks


def reshape_info(ctx: Any, x: TensorInfo, out_shape: tuple[int, ...]) -> TensorInfo:
    """Carry fields through an order-preserving reshape; a split axis becomes a multi-axis field."""
    blocks = reshape_blocks(tuple(x.shape), tuple(out_shape))
    fields: list[Field] = []
    for f in x.fields:
        touched = [b for b in blocks if set(b[0]) & set(f.axes)]
        in_axes = tuple(range(min(b[0].start for b in touched), max(b[0].stop for b in touched)))
        out_axes = tuple(range(min(b[1].start for b in touched), max(b[1].stop for b in touched)))
        arr = np.broadcast_to(broadcast_to_axes(f.ids, f.axes, in_axes), [x.shape[a] for a in in_axes])
        arr = np.ascontiguousarray(arr).reshape([out_shape[a] for a in out_axes])
        new = squeeze_to_varying(arr, out_axes)
        if new is not None:
            fields.append(new)
    fields = _drop_overlaps(ctx, fields, "channels of two different spaces merged into one axis")
    for f in fields:
        if len(f.axes) > 1:
            ctx.recorded.append(f)
    return TensorInfo(tuple(out_shape), fields)


def _drop_overlaps(ctx: Any, fields: list[Field], reason: str) -> list[Field]:
    keep: list[Field] = []
    for f in fields:
        clash = [g for g in keep if set(g.axes) & set(f.axes)]
        if clash:
            for g in [f, *clash]:
                ctx.ids.block(g.ids, reason, ctx.where)
            keep = [g for g in keep if g not in clash]
        else:
            keep.append(f)
    return keep


def _size_args(args: tuple[Any, ...], start: int) -> list[Any] | Any:
    rest = args[start:]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple, fx.Node)):
        return list(rest[0]) if isinstance(rest[0], (list, tuple)) else rest[0]
    return list(rest)


def _sizes_site(ctx: Any, x: TensorInfo, sizes: Any, what: str, axes: slice = slice(None)) -> None:
    node = ctx.node
    expected = lambda ev: ev.shape(node)[axes]  # noqa: E731
    if isinstance(sizes, fx.Node):
        def check(ev: Evaluator) -> None:
            from prunekit.structured.shapes import Invalid

            got, want = tuple(ev.value(sizes)), tuple(expected(ev))
            if len(got) != len(want) or any(g != w and g != -1 for g, w in zip(got, want)):  # -1 is inferred
                raise Invalid(f"{what}: sizes {got} would not fit the pruned tensor {want}")

        ctx.site(Site(node, ctx.where, what, [f.ids for f in x.fields], check))
        return
    if all(isinstance(s, int) and not isinstance(s, TracedInt) for s in sizes) and not x.fields:
        return
    ctx.site(shape_args_site(node, ctx.where, what, list(sizes), expected, [f.ids for f in x.fields]))


@register_op("reshape", "view")
def reshape(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    sizes = _size_args(args, 1) if len(args) > 1 else kwargs.get("shape", kwargs.get("size"))
    if not isinstance(ctx.out, TensorMeta) or (not isinstance(sizes, fx.Node) and sizes and not isinstance(ctx.value(sizes[0]), int)):
        return ctx.identity(x)  # view(dtype)
    out = reshape_info(ctx, x, ctx.out_shape)
    if isinstance(sizes, list):
        _follow_sources(ctx, out, sizes)
    _sizes_site(ctx, x, sizes, f"{ctx.node.target if isinstance(ctx.node.target, str) else 'reshape'} sizes")
    return out


def _follow_sources(ctx: Any, out: TensorInfo, sizes: list[Any]) -> None:
    """An axis sized by another tensor's axis (``reshape(B, N, C)`` with ``C = x.shape[-1]``) shrinks with it.

    Their sizes must stay equal, so their positions are coupled one to one.
    """
    for k, s in enumerate(sizes):
        src = _axis_source(ctx, s)
        f_out = out.field_at(k) if k < out.ndim else None
        if src is None or f_out is None or len(f_out.axes) != 1:
            continue
        f_src = src[0].field_at(src[1])
        if f_src is not None and len(f_src.axes) == 1 and f_src.ids.shape == f_out.ids.shape and f_src.ids is not f_out.ids:
            ctx.ids.union(f_src.ids, f_out.ids)


@register_op("flatten", "squeeze", "unsqueeze", "ravel")
def flatten(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    return reshape_info(ctx, ctx.tensor(args[0]), ctx.out_shape)


@register_op("unflatten")
def unflatten(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    dim = int(ctx.value(arg(args, kwargs, 1, "dim"))) % x.ndim
    sizes = list(arg(args, kwargs, 2, "sizes"))
    out = reshape_info(ctx, x, ctx.out_shape)
    _sizes_site(ctx, x, sizes, "unflatten sizes", slice(dim, dim + len(sizes)))
    return out


@register_op("view_as", "reshape_as", "expand_as")
def shaped_as(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x, other = ctx.tensor(args[0]), args[1]
    node = ctx.node
    out = reshape_info(ctx, x, ctx.out_shape) if ctx.node.target != "expand_as" else _expand(ctx, x)

    def check(ev: Evaluator) -> None:
        from prunekit.structured.shapes import Invalid

        if ev.shape(node) != ev.shape(other):
            raise Invalid(f"{node.target}: pruned shape {ev.shape(node)} differs from its template {ev.shape(other)}")

    ctx.site(Site(node, ctx.where, str(node.target), [f.ids for f in x.fields], check))
    return out


def _expand(ctx: Any, x: TensorInfo) -> TensorInfo:
    out = ctx.out_shape
    offset = len(out) - x.ndim
    fields = []
    for f in x.fields:
        if all(x.shape[a] == out[a + offset] for a in f.axes):
            fields.append(Field(tuple(a + offset for a in f.axes), f.ids))
    return TensorInfo(out, fields)


@register_op("expand", "broadcast_to")
def expand(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    out = _expand(ctx, x)
    sizes = _size_args(args, 1) if len(args) > 1 else kwargs.get("size", kwargs.get("shape"))
    _sizes_site(ctx, x, sizes, "expand sizes")
    return out


@register_op("repeat", "tile")
def repeat(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    reps = _size_args(args, 1) if len(args) > 1 else kwargs.get("repeats", kwargs.get("dims"))
    reps = [int(ctx.value(r)) for r in (ctx.value(reps) if isinstance(reps, fx.Node) else reps)]
    out = ctx.out_shape
    offset = len(out) - x.ndim
    reps = [1] * (len(out) - len(reps)) + reps
    fields = []
    for f in x.fields:
        tile = [reps[a + offset] for a in f.axes]
        fields.append(Field(tuple(a + offset for a in f.axes), np.tile(f.ids, tile)))
    return TensorInfo(out, fields)


@register_op("repeat_interleave")
def repeat_interleave(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    repeats, dim = ctx.value(arg(args, kwargs, 1, "repeats")), arg(args, kwargs, 2, "dim")
    if dim is None or not isinstance(repeats, int):
        return ctx.unknown("repeat_interleave over a flattened tensor or with per-element repeats")
    d = int(ctx.value(dim)) % x.ndim
    fields = [Field(f.axes, np.repeat(f.ids, repeats, axis=f.axes.index(d)) if d in f.axes else f.ids) for f in x.fields]
    return TensorInfo(ctx.out_shape, fields)


# --- permutations ----------------------------------------------------------------------------
def permute_info(x: TensorInfo, perm: list[int], out_shape: tuple[int, ...]) -> TensorInfo:
    """``out.axis(j) = x.axis(perm[j])``."""
    where = {src: dst for dst, src in enumerate(perm)}
    return TensorInfo(out_shape, [f.moved(tuple(where[a] for a in f.axes)) for f in x.fields])


@register_op("permute")
def permute(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    dims = _size_args(args, 1) if len(args) > 1 else kwargs["dims"]
    perm = [int(ctx.value(d)) % x.ndim for d in (ctx.value(dims) if isinstance(dims, fx.Node) else dims)]
    return permute_info(x, perm, ctx.out_shape)


@register_op("transpose", "t")
def transpose(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    perm = list(range(x.ndim))
    if x.ndim >= 2:
        d0 = int(ctx.value(arg(args, kwargs, 1, "dim0", 0))) % x.ndim
        d1 = int(ctx.value(arg(args, kwargs, 2, "dim1", 1))) % x.ndim
        perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute_info(x, perm, ctx.out_shape)


@register_op("movedim")
def movedim(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    src, dst = ctx.value(arg(args, kwargs, 1, "source")), ctx.value(arg(args, kwargs, 2, "destination"))
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    perm = list(np.moveaxis(np.arange(x.ndim), [s % x.ndim for s in src], [d % x.ndim for d in dst]))
    return permute_info(x, [int(p) for p in perm], ctx.out_shape)


@register_op("getattr")
def tensor_attribute(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x, name = ctx.tensor(args[0]), args[1]
    if name in ("T", "mT", "mH", "H"):
        perm = list(range(x.ndim))
        if name in ("T",):
            perm = perm[::-1]
        elif x.ndim >= 2:
            perm[-1], perm[-2] = perm[-2], perm[-1]
        return permute_info(x, perm, ctx.out_shape)
    if name in ("data", "real", "imag", "grad"):
        return ctx.identity(x)
    return ctx.unknown(f"tensor attribute '{name}' has no channel rule")


@register_op("flip", "fliplr", "flipud")
def flip(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    dims = {"fliplr": [1], "flipud": [0]}.get(name) or _size_args(args, 1) or kwargs.get("dims")
    dims = [int(ctx.value(d)) % x.ndim for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    fields = []
    for f in x.fields:
        axes = [f.axes.index(d) for d in dims if d in f.axes]
        fields.append(Field(f.axes, np.flip(f.ids, axes).copy() if axes else f.ids))
    return TensorInfo(ctx.out_shape, fields)


@register_op("roll")
def roll(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    dims = ctx.value(arg(args, kwargs, 2, "dims"))
    dims = list(range(x.ndim)) if dims is None else [int(d) % x.ndim for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    keep = []
    for f in x.fields:
        if set(f.axes) & set(dims):
            ctx.ids.block(f.ids, "roll shifts channels by a constant", ctx.where)
        else:
            keep.append(f)
    return TensorInfo(ctx.out_shape, keep)


# --- creation --------------------------------------------------------------------------------
def _axis_source(ctx: Any, a: Any) -> tuple[TensorInfo, int] | None:
    """If ``a`` is ``x.shape[i]`` / ``x.size(i)`` of a traced tensor, return (x's info, i)."""
    if not isinstance(a, fx.Node):
        return None
    if a.op == "call_method" and a.target == "size" and len(a.args) > 1:
        x = ctx.tensor(a.args[0])
        return (x, int(ctx.value(a.args[1])) % x.ndim) if x is not None else None
    if a.op == "call_function" and getattr(a.target, "__name__", "") == "getitem" and isinstance(a.args[0], fx.Node):
        src = a.args[0]
        is_shape = (src.op == "call_function" and src.target is getattr and src.args[1] == "shape") or (src.op == "call_method" and src.target == "size" and len(src.args) == 1)
        idx = ctx.value(a.args[1])
        if is_shape and isinstance(idx, int):
            x = ctx.tensor(src.args[0])
            return (x, idx % x.ndim) if x is not None else None
    return None


@register_op("zeros", "ones", "empty", "full", "rand", "randn", "new_zeros", "new_ones", "new_empty", "new_full")
def create(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    """A new tensor: an axis sized by ``x.size(i)`` follows x's channels there; other sizes are checked."""
    method = ctx.node.op == "call_method"
    rest = args[1:] if method else args
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    if name in ("full", "new_full"):
        rest = rest[:1]
    sizes = _size_args(tuple(rest), 0) if rest else kwargs.get("size")
    out = ctx.out_shape
    fields = []
    if isinstance(sizes, list):
        for j, s in enumerate(sizes):
            src = _axis_source(ctx, s)
            if src is not None:
                field = src[0].field_at(src[1])
                if field is not None and len(field.axes) == 1:
                    fields.append(Field((j,), field.ids))
    info = TensorInfo(out, fields)
    if sizes is not None:
        _sizes_site(ctx, info, sizes, f"{name} sizes")
    return info


@register_op("zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like")
def create_like(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    return ctx.identity(ctx.tensor(args[0]))


@register_op("arange", "linspace", "logspace", "eye", "tensor", "as_tensor", "scalar_tensor", "randperm", "randint")
def create_fixed(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    """Tensors whose size must not change: any size computed from channels makes the plan invalid."""
    node = ctx.node
    meta = node.meta["value"]
    dynamic = [a for a in [*args, *kwargs.values()] if isinstance(a, fx.Node) or isinstance(a, TracedInt)]
    if dynamic:
        def check(ev: Evaluator) -> None:
            from prunekit.structured.shapes import Invalid

            for a in dynamic:
                if ev.value(a) != ctx_value_cache[id(a)]:
                    raise Invalid(f"{node.target} would be built from a size that changes")

        ctx_value_cache = {id(a): (a.meta.get("value") if isinstance(a, fx.Node) else int(a)) for a in dynamic}
        ctx.site(Site(node, ctx.where, f"{node.target} size", [], check, always=True))
    return TensorInfo(meta.shape, [])
