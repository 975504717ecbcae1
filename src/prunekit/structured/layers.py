"""Layer handlers: how a module type couples channels and how its attributes follow pruning.

A handled module is a leaf of the traced graph. :meth:`LayerHandler.propagate` couples the ids of
its inputs, parameters and outputs (through ``ctx``, see :mod:`prunekit.structured.propagate`);
:meth:`LayerHandler.update` rewrites its attributes (``out_channels``, ``num_heads`` ...) after the
surgery has sliced its tensors. Handlers are looked up through the module's class hierarchy, and a
subclass that overrides ``forward`` is not covered by its base's handler (it is traced through).

Register your own layer with :func:`register_layer` (process-wide) or pass handlers for one graph
only (``GraphConfig(layer_handlers=...)``); :class:`ChannelLayer` covers layers whose
parameters map input channels to output channels (conv/linear-like) or scale channels (norm-like).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import fx, nn

from prunekit._registry import Registry
from prunekit.structured.fields import BLOCK, Field, TensorInfo
from prunekit.structured.ops import arg
from prunekit.structured.ops.linalg import conv_fields, conv_transpose_fields, linear_fields, uses_stripes
from prunekit.structured.ops.pointwise import channel_norm, group_norm_fields, layer_norm_fields


@dataclass
class LeafShapes:
    """Sizes around one call of a leaf after pruning (None where not known)."""

    inputs: list[tuple[int, ...] | None]
    output: Any = None


class LayerHandler:
    """Base class of layer handlers. Subclasses implement :meth:`propagate` and :meth:`update`."""

    def matches(self, module: nn.Module, base: type) -> bool:
        """Whether this handler (registered for ``base``) describes ``module``: same forward by default."""
        return getattr(type(module), "forward", None) is getattr(base, "forward", None)

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> Any:
        """Couple ids of the call's inputs, the module's tensors and its outputs; return the output info."""
        raise NotImplementedError

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        """Set the module's attributes from its (already sliced) tensors and the new call sizes."""


#: qualified class name of the module type -> handler.
LAYERS: Registry[LayerHandler] = Registry("layer handler")


def _key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layer(layer_type: type[nn.Module], handler: LayerHandler, *, overwrite: bool = False) -> None:
    """Teach the dependency graph a module type: instances become leaves described by ``handler``."""
    LAYERS.add(_key(layer_type), handler, overwrite=overwrite)


#: per-graph handlers keyed by module type, consulted before :data:`LAYERS` (see ``GraphConfig.layer_handlers``).
LayerHandlers = Mapping[type[nn.Module], LayerHandler]


def _find(module: nn.Module, overrides: LayerHandlers | None) -> tuple[type, LayerHandler] | None:
    """Nearest base of ``module`` with a handler in ``overrides``, else in :data:`LAYERS`."""
    mro = type(module).__mro__
    if overrides:
        for cls in mro:
            if cls in overrides:
                return cls, overrides[cls]
    for cls in mro:
        if _key(cls) in LAYERS:
            return cls, LAYERS.get(_key(cls))
    return None


def handler_for(module: nn.Module, overrides: LayerHandlers | None = None) -> LayerHandler | None:
    """The handler describing ``module`` (nearest registered base whose forward it keeps), or None.

    ``overrides`` (module type -> handler) are searched over the whole class hierarchy first.
    """
    found = _find(module, overrides)
    if found is None:
        return None
    cls, handler = found
    return handler if handler.matches(module, cls) else None


def handler_for_type(module: nn.Module, overrides: LayerHandlers | None = None) -> LayerHandler | None:
    """The handler registered for any base of ``module`` regardless of forward (attribute sync only)."""
    found = _find(module, overrides)
    return found[1] if found is not None else None


def _input(ctx: Any, node: fx.Node, index: int = 0, name: str = "input") -> TensorInfo:
    info = ctx.tensor(arg(node.args, node.kwargs, index, name))
    if info is None:
        raise ValueError(f"{node.target}: input {index} is not a tensor")
    return info


# --- built-in handlers -----------------------------------------------------------------------
class ConvHandler(LayerHandler):
    """``nn.Conv1d/2d/3d``; grouped convolutions lose channel stripes or whole groups (``GraphConfig.grouped_conv``)."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        path = str(node.target)
        prunes_in = module.groups == 1 or uses_stripes(ctx, module.groups, tuple(module.weight.shape))
        w = ctx.param(path, "weight", {0: "out", **({1: "in"} if prunes_in else {})})
        b = ctx.param(path, "bias", {0: "bias"}) if module.bias is not None else None
        return conv_fields(ctx, _input(ctx, node), w, b, module.groups)

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        out, per_group_in = module.weight.shape[0], module.weight.shape[1]
        x = shapes.inputs[0] if shapes is not None and shapes.inputs else None
        groups = module.groups
        if groups > 1 and x is not None:
            groups = x[-(module.weight.dim() - 1)] // per_group_in
        elif groups > 1 and out % groups:  # no input sizes: only removing whole groups leaves a count off the groups
            groups = out // (module.out_channels // groups)  # (otherwise a traced-through forward's groups site binds it)
        module.groups = groups
        module.out_channels = out
        module.in_channels = per_group_in * groups


class ConvTransposeHandler(LayerHandler):
    """``nn.ConvTranspose1d/2d/3d`` (ungrouped)."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        path = str(node.target)
        w = ctx.param(path, "weight", {0: "in", 1: "out"})
        b = ctx.param(path, "bias", {0: "bias"}) if module.bias is not None else None
        return conv_transpose_fields(ctx, _input(ctx, node), w, b, module.groups)

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        module.in_channels = module.weight.shape[0]
        module.out_channels = module.weight.shape[1] * module.groups


class LinearHandler(LayerHandler):
    """``nn.Linear`` over the last axis."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        path = str(node.target)
        w = ctx.param(path, "weight", {0: "out", 1: "in"})
        b = ctx.param(path, "bias", {0: "bias"}) if module.bias is not None else None
        return linear_fields(ctx, _input(ctx, node), w, b)

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        module.out_features, module.in_features = module.weight.shape


class BatchNormHandler(LayerHandler):
    """Batch and instance norm: per-channel scale, shift and running statistics on axis 1."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        path = str(node.target)
        roles = {"weight": "norm_weight", "bias": "norm_bias", "running_mean": "stat", "running_var": "stat"}
        params = [(ctx.param(path, n, {0: r}), r) for n, r in roles.items() if getattr(module, n, None) is not None]
        return channel_norm(ctx, _input(ctx, node), params)

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        for name in ("weight", "running_mean"):
            t = getattr(module, name, None)
            if t is not None:
                module.num_features = t.shape[0]
                return
        if shapes is not None and shapes.inputs and shapes.inputs[0] is not None:
            module.num_features = shapes.inputs[0][1]


#: modules that compute each element from that element alone, without tensors of their own
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU,
    nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.Softplus, nn.Hardtanh,
)


class NormActHandler(BatchNormHandler):
    """A batch norm followed by its own ``drop`` and ``act`` submodules (timm's ``BatchNormAct2d``): a leaf
    like batch norm when both are elementwise and hold no tensors; otherwise it is traced through."""

    def matches(self, module: nn.Module, base: type) -> bool:
        return super().matches(module, base) and all(type(child) in ELEMENTWISE_MODULES for child in module.children())


class GroupNormHandler(LayerHandler):
    """``nn.GroupNorm``: with several groups, whole groups are removed (exact); one group acts like LayerNorm."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        path = str(node.target)
        w = ctx.param(path, "weight", {0: "norm_weight"}) if module.weight is not None else None
        b = ctx.param(path, "bias", {0: "norm_bias"}) if module.bias is not None else None
        return group_norm_fields(ctx, _input(ctx, node), module.num_groups, w, b)

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        if module.weight is not None:
            channels = module.weight.shape[0]
        elif shapes is not None and shapes.inputs and shapes.inputs[0] is not None:
            channels = shapes.inputs[0][1]
        else:
            return
        if module.num_groups > 1:
            module.num_groups = channels // (module.num_channels // module.num_groups)
        module.num_channels = channels


class LayerNormHandler(LayerHandler):
    """``nn.LayerNorm`` / ``nn.RMSNorm`` over the trailing ``normalized_shape`` axes."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        path = str(node.target)
        k = len(module.normalized_shape)
        w = ctx.param(path, "weight", dict.fromkeys(range(k), "norm_weight")) if getattr(module, "weight", None) is not None else None
        b = ctx.param(path, "bias", dict.fromkeys(range(k), "norm_bias")) if getattr(module, "bias", None) is not None else None
        return layer_norm_fields(ctx, _input(ctx, node), k, w, b)

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        if getattr(module, "weight", None) is not None:
            module.normalized_shape = tuple(module.weight.shape)
        elif shapes is not None and shapes.inputs and shapes.inputs[0] is not None:
            module.normalized_shape = tuple(shapes.inputs[0][-len(module.normalized_shape):])


class PReLUHandler(LayerHandler):
    """``nn.PReLU``: one slope per channel (axis 1), or a single shared slope."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        x = _input(ctx, node)
        if module.weight.numel() == 1:
            return TensorInfo(x.shape, list(x.fields))
        return channel_norm(ctx, x, [(ctx.param(str(node.target), "weight", {0: "norm_weight"}), "param")])

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        module.num_parameters = module.weight.numel()


class EmbeddingHandler(LayerHandler):
    """``nn.Embedding``: the embedding width is an output channel axis."""

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        idx = _input(ctx, node)
        w = ctx.param(str(node.target), "weight", {1: "out"})
        lead = [("i", ax) for ax in range(idx.ndim)]
        return ctx.einsum([(idx, lead), (w, ["v", "e"])], [*lead, "e"])

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        module.embedding_dim = module.weight.shape[1]


class MultiheadAttentionHandler(LayerHandler):
    """``nn.MultiheadAttention``: whole heads are removed.

    The module requires its embedding width to equal ``num_heads * head_dim``, so a head is removed
    together with the matching block of ``head_dim`` query-embedding channels.
    """

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> Any:
        path = str(node.target)
        heads, dim = module.num_heads, module.head_dim
        q, k, v = (_input(ctx, node, i, n) for i, n in enumerate(("query", "key", "value")))
        if module._qkv_same_embed_dim:
            w = ctx.param(path, "in_proj_weight", {0: "out", 1: "in"})
            rows = w.field_at(0).ids.reshape(3, heads, dim)
            cols = [w.field_at(1).ids] * 3
        else:
            ws = [ctx.param(path, n, {0: "out", 1: "in"}) for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight")]
            rows = np.stack([t.field_at(0).ids.reshape(heads, dim) for t in ws])
            cols = [t.field_at(1).ids for t in ws]
        for x, c in zip((q, k, v), cols):
            ctx.ids.union(self._last_axis(ctx, x), c)
        if module.in_proj_bias is not None:
            ctx.ids.union(ctx.param(path, "in_proj_bias", {0: "bias"}).field_at(0).ids.reshape(3, heads, dim), rows)
        for i, name in ((1, "bias_k"), (2, "bias_v")):
            if getattr(module, name, None) is not None:
                ctx.ids.union(ctx.param(path, name).field_at(2).ids.reshape(heads, dim), rows[i])
        ctx.ids.union_along(rows, (0, 2))
        ctx.ids.union(self._last_axis(ctx, q).reshape(heads, dim), rows[0])
        wo = ctx.param(f"{path}.out_proj", "weight", {0: "out", 1: "in"})
        ctx.ids.union(wo.field_at(1).ids.reshape(heads, dim), rows[2])
        out_ids = wo.field_at(0).ids
        if module.out_proj.bias is not None:
            ctx.ids.union(ctx.param(f"{path}.out_proj", "bias", {0: "bias"}).field_at(0).ids, out_ids)
        metas = list(ctx.out)
        out = TensorInfo(metas[0].shape, [Field((len(metas[0].shape) - 1,), out_ids)])
        weights = None
        if metas[1] is not None:
            weights = TensorInfo(metas[1].shape, [Field((1,), rows[0, :, 0].copy())] if len(metas[1].shape) == 4 else [])
        return [out, weights]

    @staticmethod
    def _last_axis(ctx: Any, x: TensorInfo) -> np.ndarray:
        f = x.field_at(x.ndim - 1)
        if f is None:
            return np.full(x.shape[-1], BLOCK, np.int64)
        if len(f.axes) > 1:
            ctx.ids.block(f.ids, "attention input with channels on several axes", ctx.where)
            return np.full(x.shape[-1], BLOCK, np.int64)
        return f.ids

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        dim = module.head_dim
        if module._qkv_same_embed_dim:
            module.num_heads = module.in_proj_weight.shape[0] // (3 * dim)
            module.embed_dim = module.kdim = module.vdim = module.num_heads * dim
        else:
            module.num_heads = module.q_proj_weight.shape[0] // dim
            module.embed_dim = module.num_heads * dim
            module.kdim, module.vdim = module.k_proj_weight.shape[1], module.v_proj_weight.shape[1]


@dataclass
class ChannelLayer(LayerHandler):
    """Declarative handler for a custom layer with one input and one output.

    ``in_dims``/``out_dims`` map tensor names to the dim coupled with the input / output channels.
    With ``passthrough=True`` the output channels are the input channels (a norm- or scale-like
    layer; list its tensors in ``out_dims``). ``in_attr``/``out_attr`` name the attributes holding
    the channel counts, updated after pruning.
    """

    in_dims: Mapping[str, int] = field(default_factory=dict)
    out_dims: Mapping[str, int] = field(default_factory=dict)
    channel_axis: int = 1
    passthrough: bool = False
    in_attr: str | None = None
    out_attr: str | None = None

    def propagate(self, ctx: Any, module: nn.Module, node: fx.Node) -> TensorInfo:
        x = _input(ctx, node)
        path = str(node.target)
        out_shape = ctx.out_shape
        ax = self.channel_axis % x.ndim
        if self.passthrough:
            operands: list[tuple[TensorInfo, list[Any]]] = [(x, list(range(x.ndim)))]
            for name, dim in {**self.in_dims, **self.out_dims}.items():
                t = ctx.param(path, name, {dim: "norm_weight"})
                operands.append((t, [ax if d == dim else ("p", name, d) for d in range(len(t.shape))]))
            return ctx.einsum(operands, list(range(x.ndim)), x.shape)
        x_letters = [("xi", i) if i != ax else "ci" for i in range(x.ndim)]
        out_letters = [("xo", i) if i != ax % len(out_shape) else "co" for i in range(len(out_shape))]
        operands = [(x, x_letters)]
        for name, dim in self.in_dims.items():
            t = ctx.param(path, name, {dim: "in"})
            operands.append((t, ["ci" if d == dim else ("p", name, d) for d in range(len(t.shape))]))
        for name, dim in self.out_dims.items():
            t = ctx.param(path, name, {dim: "out"})
            operands.append((t, ["co" if d == dim else ("q", name, d) for d in range(len(t.shape))]))
        return ctx.einsum(operands, out_letters, out_shape)

    def update(self, module: nn.Module, shapes: LeafShapes | None) -> None:
        if self.in_attr:
            name, dim = next(iter(self.in_dims.items())) if self.in_dims else (None, None)
            if name is not None:
                setattr(module, self.in_attr, getattr(module, name).shape[dim])
            elif shapes is not None and shapes.inputs and shapes.inputs[0] is not None:
                setattr(module, self.in_attr, shapes.inputs[0][self.channel_axis])
        if self.out_attr:
            name, dim = next(iter(self.out_dims.items()))
            setattr(module, self.out_attr, getattr(module, name).shape[dim])


def _register_builtins() -> None:
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.instancenorm import _InstanceNorm

    conv, norm = ConvHandler(), BatchNormHandler()
    for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        register_layer(cls, conv)
    for cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        register_layer(cls, ConvTransposeHandler())
    register_layer(nn.Linear, LinearHandler())
    register_layer(_BatchNorm, norm)
    register_layer(nn.SyncBatchNorm, norm)
    register_layer(_InstanceNorm, norm)
    LAYERS.add("timm.layers.norm_act.BatchNormAct2d", NormActHandler())  # by name: timm is not imported for it
    register_layer(nn.GroupNorm, GroupNormHandler())
    register_layer(nn.LayerNorm, LayerNormHandler())
    if hasattr(nn, "RMSNorm"):
        register_layer(nn.RMSNorm, LayerNormHandler())
    register_layer(nn.PReLU, PReLUHandler())
    register_layer(nn.Embedding, EmbeddingHandler())
    register_layer(nn.MultiheadAttention, MultiheadAttentionHandler())


_register_builtins()
