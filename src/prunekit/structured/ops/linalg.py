"""Contractions: linear, convolution, matmul/bmm/einsum and scaled dot-product attention."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import fx

from prunekit.structured.fields import BLOCK, Field, TensorInfo
from prunekit.structured.ops.pointwise import STANDARDISED_WEIGHT, computed_from_parameter
from prunekit.structured.ops.registry import arg, register_op
from prunekit.structured.shapes import Evaluator, Invalid, Site
from prunekit.structured.values import TracedInt


def linear_fields(ctx: Any, x: TensorInfo, w: TensorInfo, b: TensorInfo | None) -> TensorInfo:
    """``x @ w.T + b`` over the last axis of ``x``."""
    batch = [("x", i) for i in range(x.ndim - 1)]
    operands = [(x, [*batch, "k"]), (w, ["n", "k"])]
    if b is not None:
        operands.append((b, ["n"]))
    return ctx.einsum(operands, [*batch, "n"])


@register_op("linear")
def linear(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    weight, bias = arg(args, kwargs, 1, "weight"), arg(args, kwargs, 2, "bias")
    ctx.tag(weight, 0, "out")
    ctx.tag(weight, 1, "in")
    ctx.tag(bias, 0, "bias")
    return linear_fields(ctx, ctx.tensor(args[0]), ctx.tensor(weight), ctx.tensor(bias))


def _batch_letters(shapes: list[tuple[int, ...]], out_batch: int) -> list[list[Any]]:
    """Right-aligned batch letters for each operand's leading dims (None where it broadcasts)."""
    out = []
    for shape in shapes:
        offset = out_batch - len(shape)
        out.append([("b", ax + offset) for ax in range(len(shape))])
    return out


def _merge(ctx: Any, letters: list[Any], operands: list[tuple[TensorInfo, list[Any]]]) -> list[Any]:
    """Letters to merge away when pruning head dimensions instead of heads.

    Notes the scope (``ctx.saw_heads``) when an operand has channels laid out over a batch (head)
    axis and a matrix axis together: there whole heads and head dims are different plans.
    """
    batch = [letter for letter in letters if isinstance(letter, tuple) and letter[0] == "b"]
    if any(_spans_heads(info, op_letters, batch) for info, op_letters in operands):
        ctx.saw_heads()
    return batch if ctx.merge_heads else []


def _spans_heads(info: TensorInfo, letters: list[Any], batch: list[Any]) -> bool:
    for f in info.fields:
        axis_letters = [letters[ax] for ax in f.axes]
        if any(letter in batch for letter in axis_letters) and any(letter not in batch for letter in axis_letters):
            return True
    return False


@register_op("matmul", "bmm", "mm", "mv", "dot", "vdot", "inner")
def matmul(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    a, b = ctx.tensor(args[0]), ctx.tensor(arg(args, kwargs, 1, "other", kwargs.get("mat2", kwargs.get("vec"))))
    a_mat = ["n", "k"] if a.ndim >= 2 else ["k"]
    b_mat = ["k", "m"] if b.ndim >= 2 else ["k"]
    a_batch, b_batch = a.shape[: a.ndim - len(a_mat)], b.shape[: b.ndim - len(b_mat)]
    nb = max(len(a_batch), len(b_batch))
    la, lb = _batch_letters([a_batch, b_batch], nb)
    out_batch = [("b", i) for i in range(nb)]
    out = [*out_batch, *(["n"] if a.ndim >= 2 else []), *(["m"] if b.ndim >= 2 else [])]
    operands = [(a, [*la, *a_mat]), (b, [*lb, *b_mat])]
    return ctx.einsum(operands, out, merge=_merge(ctx, out_batch, operands))


@register_op("baddbmm", "addmm", "addbmm", "addmv")
def add_matmul(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    bias, a, b = ctx.tensor(args[0]), ctx.tensor(args[1]), ctx.tensor(args[2])
    out_shape = ctx.out_shape
    a_mat = ["n", "k"] if a.ndim >= 2 else ["k"]
    b_mat = ["k", "m"] if b.ndim >= 2 else ["k"]
    nb = len(out_shape) - (len(a_mat) - 1) - (len(b_mat) - 1)
    la, lb = _batch_letters([a.shape[: a.ndim - len(a_mat)], b.shape[: b.ndim - len(b_mat)]], nb)
    out = [*[("b", i) for i in range(nb)], *(["n"] if a.ndim >= 2 else []), *(["m"] if b.ndim >= 2 else [])]
    offset = len(out) - bias.ndim
    bias_letters = [out[ax + offset] if bias.shape[ax] == out_shape[ax + offset] else None for ax in range(bias.ndim)]
    operands = [(bias, bias_letters), (a, [*la, *a_mat]), (b, [*lb, *b_mat])]
    return ctx.einsum(operands, out, merge=_merge(ctx, out[:nb], operands))


@register_op("einsum")
def einsum(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    equation = str(ctx.value(args[0])).replace(" ", "")
    operand_args = args[1:] if not (len(args) == 2 and isinstance(args[1], (list, tuple))) else args[1]
    infos = [ctx.tensor(a) for a in operand_args]
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    if not rhs and "->" not in equation:
        counts: dict[str, int] = {}
        for t in terms:
            for c in t.replace("...", ""):
                counts[c] = counts.get(c, 0) + 1
        rhs = ("..." if any("..." in t for t in terms) else "") + "".join(sorted(c for c, n in counts.items() if n == 1))
    n_ell = max((info.ndim - len(t.replace("...", "")) for t, info in zip(terms, infos) if "..." in t), default=0)

    def letters(term: str, ndim: int) -> list[Any]:
        if "..." not in term:
            return list(term)
        pre, post = term.split("...")
        k = ndim - len(pre) - len(post)
        return [*pre, *[("e", n_ell - k + i) for i in range(k)], *post]

    operands = [(info, letters(t, info.ndim)) for t, info in zip(terms, infos)]
    return ctx.einsum(operands, letters(rhs, len(ctx.out_shape)))


@register_op("scaled_dot_product_attention")
def sdpa(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    q, k, v = (ctx.tensor(arg(args, kwargs, i, n)) for i, n in enumerate(("query", "key", "value")))
    mask = ctx.tensor(arg(args, kwargs, 3, "attn_mask"))
    nb = max(q.ndim, k.ndim, v.ndim) - 2
    lq, lk, lv = _batch_letters([q.shape[:-2], k.shape[:-2], v.shape[:-2]], nb)
    if bool(ctx.value(kwargs.get("enable_gqa", False))) and q.shape[:-2] != k.shape[:-2]:
        for t in (q, k, v):
            for f in t.fields:
                ctx.ids.block(f.ids, "grouped-query attention shares key/value heads", ctx.where)
        return TensorInfo(ctx.out_shape, [])
    if arg(args, kwargs, 6, "scale") is None and q.field_at(q.ndim - 1) is not None:
        _default_scale_site(ctx, q)
    out_batch = [("b", i) for i in range(nb)]
    operands = [(q, [*lq, "L", "E"]), (k, [*lk, "S", "E"]), (v, [*lv, "S", "V"])]
    if mask is not None:
        full = [*out_batch, "L", "S"]
        offset = len(full) - mask.ndim
        operands.append((mask, [full[ax + offset] for ax in range(mask.ndim)]))
    return ctx.einsum(operands, [*out_batch, "L", "V"], merge=_merge(ctx, out_batch, operands))


def _default_scale_site(ctx: Any, q: TensorInfo) -> None:
    """Without ``scale=``, attention divides by sqrt(q's last size): removing head dims would change every score."""
    head_dim = q.shape[-1]

    def check(ev: Evaluator) -> None:
        if ev.size(q, q.ndim - 1) != head_dim:
            raise Invalid("scaled_dot_product_attention without scale= divides by sqrt(head_dim), which removing head dims "
                          "would change (pass scale=, or prune whole heads: attention='heads')")

    ctx.site(Site(ctx.node, ctx.where, "attention default scale", [f.ids for f in q.fields], check))


def conv_stripes(mode: str, groups: int, weight_shape: tuple[int, ...]) -> bool:
    """Whether a grouped convolution is pruned by channel stripes rather than by whole groups.

    A stripe is the same channel position in every group. ``mode`` is ``GraphConfig.grouped_conv``:
    ``"groups"`` never uses stripes; ``"auto"`` and ``"channels"`` use them wherever a stripe is not
    the whole tensor on either side (per-group input and output sizes both >= 2), so depthwise
    convolutions keep whole groups. (``"auto"`` then falls back to whole groups for a convolution
    whose stripes other couplings merge into one unit, see ``DependencyGraph.build``.)
    """
    return groups > 1 and mode != "groups" and weight_shape[1] >= 2 and weight_shape[0] // groups >= 2


def uses_stripes(ctx: Any, groups: int, weight_shape: tuple[int, ...]) -> bool:
    """Whether the convolution at ``ctx``'s node is pruned by stripes (its setting, less "auto"'s fallbacks)."""
    return conv_stripes(ctx.grouped_conv, groups, weight_shape) and ctx.node.name not in ctx.whole_group_convs


def _channel_ids(ctx: Any, info: TensorInfo, axis: int, what: str) -> np.ndarray:
    """The ids along one axis of ``info`` (BLOCK where fixed, blocked where the channels span several axes)."""
    f = info.field_at(axis)
    if f is not None and len(f.axes) > 1:
        ctx.ids.block(f.ids, f"grouped convolution over {what} laid out on several axes", ctx.where)
        f = None
    return f.ids if f is not None else np.full(info.shape[axis], BLOCK, np.int64)


def conv_fields(ctx: Any, x: TensorInfo, w: TensorInfo, b: TensorInfo | None, groups: int, groups_arg: Any = None) -> TensorInfo:
    """Convolution channels. With ``groups > 1`` a unit is a whole group (its input and output
    channels) or, in stripe mode (:func:`conv_stripes`), one output or one input channel of every group."""
    k = w.ndim - 2
    out_shape = ctx.out_shape
    if groups == 1:
        operands = [(x, ["B", "ci", *[("si", i) for i in range(k)]]), (w, ["co", "ci", *[("k", i) for i in range(k)]])]
        if b is not None:
            operands.append((b, ["co"]))
        return ctx.einsum(operands, ["B", "co", *[("so", i) for i in range(k)]])
    per_group_in = w.shape[1]
    per_group_out = w.shape[0] // groups
    x_ids = _channel_ids(ctx, x, 1, "channels")
    w_ids = w.field_at(0).ids
    xg, wg = x_ids.reshape(groups, per_group_in), w_ids.reshape(groups, per_group_out)
    if conv_stripes("channels", groups, w.shape):
        ctx.grouped_convs[ctx.node.name] = str(ctx.node.target) if ctx.node.op == "call_module" else ctx.where
    if uses_stripes(ctx, groups, w.shape):
        w_in = _channel_ids(ctx, w, 1, "weight input channels")
        ctx.ids.union_along(xg, (0,))
        ctx.ids.union_along(wg, (0,))
        ctx.ids.union(xg[0], w_in)
        ctx.stripe_convs[ctx.node.name] = (wg[0].copy(), w_in.copy())
    else:
        ctx.ids.union_along(xg, (1,))
        ctx.ids.union_along(wg, (1,))
        ctx.ids.union(xg[:, :1], wg[:, :1])
    if b is not None:
        ctx.ids.union(b.field_at(0).ids, w_ids)
    for f in x.fields:
        if 1 not in f.axes:
            ctx.ids.block(f.ids, "convolution over a labelled non-channel axis", ctx.where)
    if groups_arg is not None:
        _groups_site(ctx, x, w, groups_arg)
    return TensorInfo(out_shape, [Field((1,), w_ids)])


def _groups_site(ctx: Any, x: TensorInfo, w: TensorInfo, groups_arg: Any) -> None:
    """``groups`` must stay (input channels) / (weight input channels): bound when it is an attribute."""

    def bind(ev: Evaluator) -> list[Any]:
        want = ev.size(x, 1) // ev.size(w, 1)
        return groups_arg.rebind(want) if isinstance(groups_arg, TracedInt) else []

    def check(ev: Evaluator) -> None:
        if ev.value(groups_arg) * ev.size(w, 1) != ev.size(x, 1):
            raise Invalid(f"convolution groups would be {ev.value(groups_arg)} for {ev.size(x, 1)} input channels")

    ids = [f.ids for f in x.fields] + [f.ids for f in w.fields if 1 in f.axes]
    ctx.site(Site(ctx.node, ctx.where, "convolution groups", ids, check, bind, always=isinstance(groups_arg, TracedInt)))


@register_op("conv1d", "conv2d", "conv3d")
def conv(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    weight, bias = arg(args, kwargs, 1, "weight"), arg(args, kwargs, 2, "bias")
    groups_arg = arg(args, kwargs, 6, "groups", 1)
    groups = int(ctx.value(groups_arg))
    w = ctx.tensor(weight)
    prunes_in = groups == 1 or (w is not None and uses_stripes(ctx, groups, w.shape))
    ctx.tag(weight, 0, "out")
    if prunes_in:
        ctx.tag(weight, 1, "in")
    ctx.tag(bias, 0, "bias")
    x = ctx.tensor(args[0])
    if prunes_in:
        w = _untraceable_inputs(ctx, x, weight, w)
    return conv_fields(ctx, x, w, ctx.tensor(bias), groups, groups_arg if groups > 1 or isinstance(groups_arg, TracedInt) else None)


def _untraceable_inputs(ctx: Any, x: TensorInfo | None, weight: Any, w: TensorInfo | None) -> TensorInfo | None:
    """A weight computed in ``forward`` whose input-channel axis follows no parameter dim keeps the
    input channels: ``w`` with a blocked field there that says why (a standardised weight, or in general)."""
    if not isinstance(weight, fx.Node) or weight.op == "get_attr" or w is None or w.field_at(1) is not None or x is None or x.field_at(1) is None:
        return w
    reason = STANDARDISED_WEIGHT if computed_from_parameter(weight, standardised=True) else (
        "its weight is computed in forward and the input channels cannot be followed to a parameter")
    ids = ctx.ids.fresh((w.shape[1],))
    ctx.ids.block(ids, reason, ctx.where)
    return TensorInfo(w.shape, sorted([*w.fields, Field((1,), ids)], key=lambda f: f.axes))


def conv_transpose_fields(ctx: Any, x: TensorInfo, w: TensorInfo, b: TensorInfo | None, groups: int) -> TensorInfo:
    """Transposed convolution: weight is (in, out/groups, *kernel). Grouped ones are left untouched."""
    k = w.ndim - 2
    if groups != 1:
        for t in (x, w) + ((b,) if b is not None else ()):
            for f in t.fields:
                ctx.ids.block(f.ids, "grouped transposed convolution is not supported", ctx.where)
        return TensorInfo(ctx.out_shape, [])
    operands = [(x, ["B", "ci", *[("si", i) for i in range(k)]]), (w, ["ci", "co", *[("k", i) for i in range(k)]])]
    if b is not None:
        operands.append((b, ["co"]))
    return ctx.einsum(operands, ["B", "co", *[("so", i) for i in range(k)]])


@register_op("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    weight, bias = arg(args, kwargs, 1, "weight"), arg(args, kwargs, 2, "bias")
    groups = int(ctx.value(arg(args, kwargs, 6, "groups", 1)))
    ctx.tag(weight, 1, "out")
    ctx.tag(weight, 0, "in")
    ctx.tag(bias, 0, "bias")
    return conv_transpose_fields(ctx, ctx.tensor(args[0]), ctx.tensor(weight), ctx.tensor(bias), groups)


@register_op("embedding")
def embedding(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    idx, weight = ctx.tensor(args[0]), arg(args, kwargs, 1, "weight")
    ctx.tag(weight, 1, "out")
    lead = [("i", ax) for ax in range(idx.ndim)]
    return ctx.einsum([(idx, lead), (ctx.tensor(weight), ["v", "e"])], [*lead, "e"])
