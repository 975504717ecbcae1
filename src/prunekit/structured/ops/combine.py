"""Combining and spatial ops: concat/stack/split and the ops that act on spatial axes (pooling, interpolation, pad, shuffles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from prunekit.structured.fields import BLOCK, Field, TensorInfo, broadcast_to_axes, squeeze_to_varying
from prunekit.structured.ops.registry import arg, register_op
from prunekit.structured.shapes import shape_args_site
from prunekit.structured.values import TensorMeta


# --- concat / split --------------------------------------------------------------------------
@register_op("cat")
def cat(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    tensors = arg(args, kwargs, 0, "tensors")
    infos = [ctx.tensor(t) for t in tensors]
    out = ctx.out_shape
    pairs = [(t, i) for t, i in zip(tensors, infos) if i is not None and not (i.ndim == 1 and i.shape[0] == 0)]
    d = int(ctx.value(arg(args, kwargs, 1, "dim", 0))) % len(out)
    cluster: set[int] = {d}
    for _, info in pairs:
        for f in info.fields:
            if d in f.axes:
                cluster |= set(f.axes)
    axes = tuple(sorted(cluster))
    rest_operands = []
    pieces = []
    for _, info in pairs:
        own = [f for f in info.fields if d in f.axes]
        others = [f for f in info.fields if d not in f.axes]
        clash = [f for f in others if set(f.axes) & cluster]
        for f in clash:
            ctx.ids.block(f.ids, "concatenated channels meet another layout", ctx.where)
        shape = [info.shape[a] for a in axes]
        if own:
            piece = np.broadcast_to(broadcast_to_axes(own[0].ids, own[0].axes, axes), shape)
        else:
            piece = np.full(shape, BLOCK, np.int64)
        pieces.append(piece)
        letters = [a if a not in cluster else None for a in range(info.ndim)]
        rest_operands.append((TensorInfo(info.shape, [f for f in others if f not in clash]), letters))
    rest = ctx.einsum(rest_operands, [a if a not in cluster else None for a in range(len(out))], out)
    joined = np.concatenate(pieces, axis=axes.index(d))
    fields = list(rest.fields)
    if not (joined == BLOCK).all():
        new = squeeze_to_varying(joined, axes)
        if new is not None:
            fields.append(new)
            if len(new.axes) > 1:
                ctx.recorded.append(new)
    return TensorInfo(out, fields)


@register_op("stack")
def stack(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    tensors = arg(args, kwargs, 0, "tensors")
    out = ctx.out_shape
    d = int(ctx.value(arg(args, kwargs, 1, "dim", 0))) % len(out)
    operands = []
    for t in tensors:
        info = ctx.tensor(t)
        operands.append((info, [a if a < d else a + 1 for a in range(info.ndim)]))
    return ctx.einsum(operands, [a if a != d else None for a in range(len(out))], out)


@register_op("split", "chunk", "split_with_sizes", "tensor_split", "unbind", "hsplit", "vsplit")
def split(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[TensorInfo]:
    x = ctx.tensor(args[0])
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    metas = list(ctx.out)
    if name == "unbind":
        d = int(ctx.value(arg(args, kwargs, 1, "dim", 0))) % x.ndim
    else:
        d = int(ctx.value(arg(args, kwargs, 2, "dim", 0))) % x.ndim
    field = x.field_at(d)
    others = [f for f in x.fields if d not in f.axes]
    if name == "unbind":
        shift = lambda f: Field(tuple(a - (a > d) for a in f.axes), f.ids)  # noqa: E731
        outs = []
        if field is not None and len(field.axes) == 1:
            ctx.ids.block(field.ids, "unbind picks channels by position", ctx.where)
        elif field is not None:
            k = field.axes.index(d)
            ctx.ids.union_along(field.ids, (k,))
        for i, m in enumerate(metas):
            fs = [shift(f) for f in others]
            if field is not None and len(field.axes) > 1:
                k = field.axes.index(d)
                fs.append(shift(Field(tuple(a for a in field.axes if a != d), np.take(field.ids, i, axis=k))))
            outs.append(TensorInfo(m.shape, fs))
        return outs
    sizes = [m.shape[d] for m in metas]
    if field is None:
        return [TensorInfo(m.shape, list(others)) for m in metas]
    k = field.axes.index(d)
    offsets = np.cumsum([0, *sizes])
    pieces = [np.take(field.ids, range(int(offsets[i]), int(offsets[i + 1])), axis=k) for i in range(len(sizes))]
    section_arg = arg(args, kwargs, 1, "split_size_or_sections", kwargs.get("chunks", kwargs.get("split_size", kwargs.get("sections"))))
    sections = ctx.value(section_arg)
    if name == "tensor_split" or name in ("hsplit", "vsplit"):
        ctx.ids.block(field.ids, f"{name} splits channels at constant positions", ctx.where)
    elif isinstance(sections, (list, tuple)) or name == "split_with_sizes":
        raw = list(section_arg) if isinstance(section_arg, (list, tuple)) else section_arg
        node = ctx.node
        ctx.site(shape_args_site(node, ctx.where, f"{name} sections", raw if isinstance(raw, list) else [raw],
                                 lambda ev: tuple(ev.size(TensorInfo(m.shape, [Field(field.axes, p)]), d) for m, p in zip(metas, pieces)),
                                 [field.ids], minus_one=False))
    else:
        if len({p.shape for p in pieces}) != 1:
            ctx.ids.block(field.ids, f"{name} into unequal pieces", ctx.where)
        else:
            for p in pieces[1:]:
                ctx.ids.union(pieces[0], p)
            if name == "split":
                node = ctx.node
                ctx.site(shape_args_site(node, ctx.where, "split size", [section_arg],
                                         lambda ev: (ev.size(TensorInfo(metas[0].shape, [Field(field.axes, pieces[0])]), d),), [field.ids], minus_one=False))
    return [TensorInfo(m.shape, [*others, Field(field.axes, p)]) for m, p in zip(metas, pieces)]


# --- spatial ---------------------------------------------------------------------------------
SPATIAL = (
    "max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
    "adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d lp_pool1d lp_pool2d lp_pool3d "
    "interpolate upsample upsample_nearest upsample_bilinear max_pool1d_with_indices max_pool2d_with_indices "
    "max_pool3d_with_indices fractional_max_pool2d fractional_max_pool3d _max_pool1d _max_pool2d _max_pool3d"
).split()


@register_op(*SPATIAL)
def spatial(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Pooling/resampling over trailing spatial axes: channels pass through."""
    x = ctx.tensor(args[0])
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    k = next((int(c) for c in name if c.isdigit()), x.ndim - 2)
    lead = x.ndim - k
    keep = []
    for f in x.fields:
        if max(f.axes) < lead:
            keep.append(f)
        else:
            ctx.ids.block(f.ids, f"'{name}' resamples a labelled axis", ctx.where)
    meta = ctx.out
    metas = [meta] if isinstance(meta, TensorMeta) else list(meta)
    infos = [TensorInfo(m.shape, list(keep)) for m in metas]
    return infos[0] if isinstance(meta, TensorMeta) else infos


@register_op("pad")
def pad(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    amounts = [int(ctx.value(p)) for p in ctx.value(arg(args, kwargs, 1, "pad"))]
    mode = ctx.value(arg(args, kwargs, 2, "mode", "constant"))
    fields = []
    for f in x.fields:
        ids, ok = f.ids, True
        for i in range(len(amounts) // 2):
            axis = x.ndim - 1 - i
            left, right = amounts[2 * i], amounts[2 * i + 1]
            if axis not in f.axes or (left == 0 and right == 0):
                continue
            if left < 0 or right < 0 or mode != "constant" or len(f.axes) > 1:
                ok = False
                break
            ids = np.concatenate([np.full(left, BLOCK, np.int64), ids, np.full(right, BLOCK, np.int64)])
        if ok:
            fields.append(Field(f.axes, ids))
        else:
            ctx.ids.block(f.ids, "padding or cropping a labelled axis", ctx.where)
    return TensorInfo(ctx.out_shape, fields)


@register_op("pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle")
def shuffle(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    factor = int(ctx.value(args[1] if len(args) > 1 else next(iter(kwargs.values()))))
    ch = x.ndim - 3 if "pixel" in name else 1
    field = x.field_at(ch)
    others = [f for f in x.fields if ch not in f.axes]
    out = ctx.out_shape
    if field is None:
        return TensorInfo(out, others)
    if len(field.axes) > 1:
        ctx.ids.block(field.ids, f"'{name}' on channels laid out over several axes", ctx.where)
        return TensorInfo(out, others)
    ids = field.ids
    if name == "pixel_shuffle":
        grid = ids.reshape(-1, factor * factor)
        ctx.ids.union_along(grid, (1,))
        new = grid[:, 0].copy()
    elif name == "pixel_unshuffle":
        new = np.repeat(ids, factor * factor)
    else:
        grid = ids.reshape(factor, -1)
        ctx.ids.union_along(grid, (0,))
        new = grid.T.ravel().copy()
    return TensorInfo(out, [*others, Field((ch,), new)])
