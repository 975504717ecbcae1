"""Elementwise ops, reductions, normalisations and activations."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import fx

from prunekit.structured.fields import BLOCK, TensorInfo
from prunekit.structured.ops.registry import arg, op_name, register_op
from prunekit.structured.shapes import Evaluator, Invalid, Site, shape_args_site
from prunekit.structured.values import TensorMeta, TracedInt

ELEMENTWISE = (
    "add sub rsub mul div truediv floordiv floor_divide mod remainder fmod pow neg pos abs relu relu6 gelu silu "
    "sigmoid tanh hardtanh hardswish hardsigmoid leaky_relu elu selu celu mish softplus softsign logsigmoid "
    "tanhshrink softshrink hardshrink threshold rrelu exp exp2 log log2 log10 log1p expm1 sqrt rsqrt reciprocal "
    "sin cos tan erf erfc erfinv sign sgn square floor ceil round trunc frac nan_to_num clamp clamp_min clamp_max "
    "maximum minimum fmax fmin where masked_fill lerp addcmul addcdiv lt le gt ge eq ne logical_and logical_or "
    "logical_not logical_xor bitwise_and bitwise_or bitwise_xor bitwise_not and_ or_ xor invert hypot atan2 logit "
    "copysign xlogy sigmoid_ relu_ isnan isinf isfinite heaviside zero fill copy"
).split()

IDENTITY = (
    "dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout contiguous clone detach float half "
    "double bfloat16 long int bool to type type_as requires_grad cpu cuda cumsum cumprod "
    "normalize _assert_tensor_metadata identity"
).split()


@register_op(*ELEMENTWISE)
def elementwise(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    """Broadcasting n-ary op: every tensor operand is coupled along the axes it spans."""
    out = ctx.out_shape
    operands = []
    for a in [*args, *kwargs.values()]:
        info = ctx.tensor(a)
        if info is None:
            continue
        offset = len(out) - info.ndim
        letters = [ax + offset if info.shape[ax] == out[ax + offset] else None for ax in range(info.ndim)]
        operands.append((info, letters))
    if len(operands) == 1 and operands[0][0].shape == tuple(out):
        return TensorInfo(tuple(out), list(operands[0][0].fields))  # unary: channels pass through
    return ctx.einsum(operands, list(range(len(out))))


@register_op(*IDENTITY)
def identity(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    """Shape- and channel-preserving op on its first argument (others are not coupled)."""
    first = args[0] if args else next(iter(kwargs.values()))
    return ctx.identity(ctx.tensor(first))


@register_op("softmax", "log_softmax", "softmin")
def softmax(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    """Normalised over ``dim``: every output there depends on every input there, so nothing along it can go alone.

    A field spanning other axes too is merged along ``dim`` (split attention's softmax over radix
    parts keeps channel c of every part as one unit); a field on ``dim`` alone is left untouched.
    """
    x = ctx.tensor(args[0])
    out = ctx.identity(x)
    dim = arg(args, kwargs, 1, "dim")
    if dim is None:
        return out
    d = int(ctx.value(dim)) % max(1, x.ndim)
    for f in out.fields:
        if d in f.axes and len(f.axes) == 1:
            ctx.ids.block(f.ids, f"'{ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__}' over channels: "
                          "each output depends on all of them", ctx.where)
        elif d in f.axes:
            ctx.ids.union_along(f.ids, (f.axes.index(d),))
    return out


def _dims(dim: Any, ndim: int) -> list[int] | None:
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        return sorted(int(d) % ndim for d in dim)
    return [int(dim) % ndim]


@register_op("sum", "mean", "amax", "amin", "prod", "std", "var", "norm", "logsumexp", "all", "any", "argmax",
             "argmin", "nansum", "nanmean", "count_nonzero", "std_mean", "var_mean", "median", "nanmedian", "max",
             "min", "mode", "kthvalue")
def reduction(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Reduce over dims: removed channels simply drop out of the reduction."""
    x = ctx.tensor(args[0])
    second = ctx.tensor(args[1]) if len(args) > 1 else ctx.tensor(kwargs.get("other"))
    if second is not None:  # torch.max(a, b) is elementwise
        return elementwise(ctx, args, kwargs)
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    dim_index = 2 if name in ("norm", "kthvalue") else 1
    dim = ctx.value(arg(args, kwargs, dim_index, "dim", kwargs.get("axis")))
    keepdim = bool(ctx.value(arg(args, kwargs, dim_index + 1, "keepdim", False)))
    dims = _dims(dim, x.ndim) if x.ndim else []
    if dims is None:
        dims = list(range(x.ndim))
    if name in WEIGHT_STATISTICS and computed_from_parameter(args[0]):  # weight standardisation by hand (BiT-style)
        for f in x.fields:
            if set(f.axes) & set(dims):
                ctx.ids.block(f.ids, STANDARDISED_WEIGHT, ctx.where)
    letters = list(range(x.ndim))
    out_letters = [ax if ax not in dims else None for ax in range(x.ndim)] if keepdim else [ax for ax in range(x.ndim) if ax not in dims]
    meta = ctx.out
    if isinstance(meta, TensorMeta):
        return ctx.einsum([(x, letters)], out_letters, meta.shape)
    first = ctx.einsum([(x, letters)], out_letters, meta[0].shape)
    return [first] + [TensorInfo(m.shape, list(first.fields)) for m in meta[1:]]


@register_op("sort", "topk", "cummax", "cummin", "argsort", "msort")
def along_dim_reorder(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Ops that reorder or select along one dim by value: fine unless that dim carries channels."""
    x = ctx.tensor(args[0])
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    dim_index = 2 if name == "topk" else 1
    dim = int(ctx.value(arg(args, kwargs, dim_index, "dim", -1))) % max(1, x.ndim)
    field = x.field_at(dim)
    if field is not None:
        ctx.ids.block(field.ids, f"'{name}' selects channels by value", ctx.where)
    meta = ctx.out
    metas = [meta] if isinstance(meta, TensorMeta) else list(meta)
    infos = [TensorInfo(m.shape, [f for f in x.fields if dim not in f.axes]) for m in metas]
    return infos[0] if isinstance(meta, TensorMeta) else infos


# --- normalisation ---------------------------------------------------------------------------
def channel_norm(ctx: Any, x: TensorInfo, params: list[tuple[Any, str]], axis: int = 1) -> TensorInfo:
    """Per-channel op (batch/instance norm, affine scale): params are 1-d along ``axis``."""
    operands: list[tuple[TensorInfo, list[Any]]] = [(x, list(range(x.ndim)))]
    for info, _role in params:
        if info is not None:
            operands.append((info, [axis % x.ndim]))
    return ctx.einsum(operands, list(range(x.ndim)), x.shape)


@register_op("batch_norm", "instance_norm")
def batch_norm(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    names = ("running_mean", "running_var", "weight", "bias")
    roles = ("stat", "stat", "norm_weight", "norm_bias")
    params = []
    for i, (name, role) in enumerate(zip(names, roles), start=1):
        a = arg(args, kwargs, i, name)
        info = ctx.tensor(a)
        if info is not None:
            ctx.tag(a, 0, role)
            params.append((info, role))
    _block_statistics_axes(ctx, x, args, kwargs)
    return channel_norm(ctx, x, params)


def _block_statistics_axes(ctx: Any, x: TensorInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Batch statistics are means and variances over every axis but the channel axis (batch norm) or
    over the spatial axes (instance norm): removing positions along them changes every channel's
    mean and std, so channels laid out there stay untouched. A weight-standardised convolution
    (``F.batch_norm(w.reshape(1, out, -1), None, None, training=True)``) hits this: its filters are
    normalised over their input channels."""
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    if name == "instance_norm":
        batch_stats, stat_axes = bool(ctx.value(arg(args, kwargs, 5, "use_input_stats", True))), range(2, x.ndim)
    else:
        training = bool(ctx.value(arg(args, kwargs, 5, "training", False)))
        batch_stats = training or ctx.tensor(arg(args, kwargs, 1, "running_mean")) is None
        stat_axes = [ax for ax in range(x.ndim) if ax != 1]
    if not batch_stats:
        return
    for f in x.fields:
        hit = sorted(set(f.axes) & set(stat_axes))
        if hit:
            reason = STANDARDISED_WEIGHT if computed_from_parameter(args[0]) else (
                f"{name} with batch statistics normalises over axis {hit[0]}: removing positions there would change "
                "every channel's mean and std")
            ctx.ids.block(f.ids, reason, ctx.where)


#: Why the input channels of a weight-standardised convolution stay.
STANDARDISED_WEIGHT = ("weight standardisation normalises each filter by the mean and std over its input channels: "
                       "removing an input channel would change every filter's mean and std")
#: Reductions whose value over a parameter's axis changes when positions are removed (zeros are not neutral).
WEIGHT_STATISTICS = frozenset({"mean", "nanmean", "std", "var", "std_mean", "var_mean"})


def computed_from_parameter(a: Any, standardised: bool = False) -> bool:
    """Whether ``a`` is computed in ``forward`` from a parameter (following first arguments), through a
    batch-statistics normalisation if ``standardised``."""
    seen_norm, steps = False, 0
    while isinstance(a, fx.Node) and a.op in ("call_function", "call_method") and steps < 16:
        seen_norm = seen_norm or op_name(a) in ("batch_norm", "instance_norm")
        a, steps = (a.args[0] if a.args else None), steps + 1
    return isinstance(a, fx.Node) and a.op == "get_attr" and (seen_norm or not standardised)


def layer_norm_fields(ctx: Any, x: TensorInfo, k: int, weight: Any, bias: Any, shape_arg: Any = None) -> TensorInfo:
    """Normalisation over the last ``k`` axes; ``shape_arg`` (``normalized_shape``) must follow them."""
    operands: list[tuple[TensorInfo, list[Any]]] = [(x, list(range(x.ndim)))]
    for a, role in ((weight, "norm_weight"), (bias, "norm_bias")):
        info = a if isinstance(a, TensorInfo) else ctx.tensor(a)
        if info is not None:
            for d in range(info.ndim):
                ctx.tag(a, d, role)
            operands.append((info, list(range(x.ndim - info.ndim, x.ndim))))
    out = ctx.einsum(operands, list(range(x.ndim)), x.shape)
    if shape_arg is not None:
        node = ctx.node
        sizes = list(shape_arg) if isinstance(shape_arg, (list, tuple)) else [shape_arg]
        ctx.site(shape_args_site(node, ctx.where, "normalized_shape", sizes,
                                 lambda ev: ev.shape_of(x)[x.ndim - k:], [f.ids for f in x.fields], minus_one=False))
    return out


@register_op("layer_norm", "rms_norm")
def layer_norm(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    shape_arg = arg(args, kwargs, 1, "normalized_shape")
    sizes = shape_arg if isinstance(shape_arg, (list, tuple)) else [shape_arg]
    weight = arg(args, kwargs, 2, "weight")
    bias = arg(args, kwargs, 3, "bias") if ctx.node.target.__name__ != "rms_norm" else None
    return layer_norm_fields(ctx, x, len(sizes), weight, bias, shape_arg)


def group_norm_fields(ctx: Any, x: TensorInfo, groups: int, weight: Any, bias: Any, groups_arg: Any = None) -> TensorInfo:
    """GroupNorm: with several groups a whole group is one unit (removing it leaves the others exact)."""
    channels = x.shape[1]
    if groups > 1:
        field = x.field_at(1)
        if field is not None and len(field.axes) > 1:
            ctx.ids.block(field.ids, "group norm over channels laid out on several axes", ctx.where)
        ids = field.ids if field is not None and len(field.axes) == 1 else np.full(channels, BLOCK, np.int64)
        ctx.ids.union_along(ids.reshape(groups, channels // groups), (1,))
    out = batch_norm_like(ctx, x, weight, bias)
    if groups_arg is not None and groups > 1:
        per_group = channels // groups

        def bind(ev: Evaluator) -> list[Any]:
            want = ev.size(x, 1) // per_group
            return groups_arg.rebind(want) if isinstance(groups_arg, TracedInt) else []

        def check(ev: Evaluator) -> None:
            if ev.value(groups_arg) * per_group != ev.size(x, 1):
                raise Invalid(f"group_norm: num_groups would be {ev.value(groups_arg)} for {ev.size(x, 1)} channels")

        ctx.site(Site(ctx.node, ctx.where, "group_norm num_groups", [f.ids for f in x.fields], check, bind,
                      always=isinstance(groups_arg, TracedInt)))
    return out


def batch_norm_like(ctx: Any, x: TensorInfo, weight: Any, bias: Any) -> TensorInfo:
    params = []
    for a, role in ((weight, "norm_weight"), (bias, "norm_bias")):
        info = a if isinstance(a, TensorInfo) else ctx.tensor(a)
        if info is not None:
            ctx.tag(a, 0, role)
            params.append((info, role))
    return channel_norm(ctx, x, params)


@register_op("group_norm")
def group_norm(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    groups_arg = arg(args, kwargs, 1, "num_groups")
    return group_norm_fields(ctx, x, int(ctx.value(groups_arg)), arg(args, kwargs, 2, "weight"), arg(args, kwargs, 3, "bias"), groups_arg)


@register_op("prelu")
def prelu(ctx: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TensorInfo:
    x = ctx.tensor(args[0])
    weight = arg(args, kwargs, 1, "weight")
    w = ctx.tensor(weight)
    if w is None or int(np.prod(w.shape)) == 1:
        return ctx.identity(x)
    ctx.tag(weight, 0, "norm_weight")
    return channel_norm(ctx, x, [(w, "param")])
