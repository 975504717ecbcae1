"""Walk a traced graph and apply channel rules: the context every op rule and layer handler sees."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from prunekit.errors import StructureError
from prunekit.structured.einsum import Letters, einsum_fields
from prunekit.structured.fields import Field, IdSpace, TensorInfo
from prunekit.structured.ops import OP_RULES, op_name
from prunekit.structured.shapes import Site, guard_site, size_dependencies
from prunekit.structured.trace import Trace
from prunekit.structured.values import TensorMeta

log = logging.getLogger(__name__)

ROLE_PRIORITY = {"out": 0, "in": 1, "norm_weight": 2, "bias": 3, "norm_bias": 4, "param": 5, "stat": 6}
#: How attention is pruned: ``"heads"``, ``"head_dims"``, or ``{scope pattern: mode}`` per attention block (others: heads).
AttentionModes = str | Mapping[str, str]


def attention_mode(attention: AttentionModes, scope: str) -> str:
    """The mode ``attention`` gives the products called in module ``scope`` (fnmatch patterns, first match; default ``"heads"``)."""
    if isinstance(attention, str):
        return attention
    return next((mode for pattern, mode in attention.items() if fnmatch.fnmatchcase(scope, pattern)), "heads")


@dataclass
class TensorRecord:
    """A parameter or buffer whose dims carry ids."""

    module: str
    name: str
    shape: tuple[int, ...]
    is_param: bool
    dim_ids: list[np.ndarray]
    roles: list[str]

    @property
    def fqn(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name


@dataclass
class LeafCall:
    """A call of a handled leaf module, kept so the surgery can update its attributes."""

    node: fx.Node
    path: str
    module: nn.Module
    handler: Any


@dataclass
class Propagation:
    """Applies rules node by node; rules and handlers call the methods below (``ctx``)."""

    trace: Trace
    handler_for: Callable[[nn.Module], Any]
    attention: AttentionModes = "heads"
    grouped_conv: str = "auto"
    strict: bool = False
    whole_group_convs: frozenset[str] = frozenset()  # grouped conv nodes kept in whole-group mode ("auto" fallback)
    ids: IdSpace = field(default_factory=IdSpace)
    infos: dict[fx.Node, Any] = field(default_factory=dict)
    sites: list[Site] = field(default_factory=list)
    recorded: list[Field] = field(default_factory=list)
    tensors: dict[tuple[str, str], TensorRecord] = field(default_factory=dict)
    leaf_calls: list[LeafCall] = field(default_factory=list)
    stripe_convs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # node -> (output, input) stripe ids of group 0
    grouped_convs: dict[str, str] = field(default_factory=dict)  # node -> module of each grouped conv that stripes would fit
    head_scopes: list[str] = field(default_factory=list)  # scopes of products over per-head channels, in order
    node: fx.Node | None = None
    _by_tensor: dict[int, tuple[str, str]] = field(default_factory=dict)
    _modules: dict[str, nn.Module] = field(default_factory=dict)
    _from_input: set[fx.Node] = field(default_factory=set)  # computed from the model's inputs, through no blocked op
    _tainted: set[fx.Node] = field(default_factory=set)  # an op on the way recorded a block (its fixed axes are not ordinary)
    _from_buffers: set[fx.Node] = field(default_factory=set)  # computed from role-less buffers alone (rotary tables built in forward)
    _node_of: dict[int, fx.Node] = field(default_factory=dict)  # id(TensorInfo) -> node it is the info of

    # --- walking ------------------------------------------------------------------------------
    def run(self) -> Propagation:
        modules = self._modules = dict(self.trace.root.named_modules())
        for node in self.trace.graph.nodes:
            self.node = node
            self.ids.where = self.where
            blocks = len(self.ids.blocks)
            inputs = node.all_input_nodes
            if node.op == "placeholder" or (any(a in self._from_input for a in inputs) and not any(a in self._tainted for a in inputs)):
                self._from_input.add(node)
            info = self._visit(node, modules)
            if len(self.ids.blocks) > blocks or any(a in self._tainted for a in inputs):
                self._tainted.add(node)
            if self._plain_buffer(node) or (inputs and node.op != "call_module" and all(a in self._from_buffers for a in inputs if _has_tensor(a.meta.get("value")))
                                            and any(a in self._from_buffers for a in inputs)):
                self._from_buffers.add(node)
            self.infos[node] = info
            if isinstance(info, TensorInfo):
                self._node_of[id(info)] = node
        self.ids.where = ""
        self.ids.seal()
        for guard in self.trace.guards:
            self.sites.append(guard_site(guard.node, guard.value, self.infos))
        self.node = None
        return self

    def again(self, **changes: Any) -> Propagation:
        """A fresh propagation over the same trace with the same settings (``changes`` applied), run."""
        keep = {f.name: getattr(self, f.name) for f in fields(self) if f.init and f.default_factory is MISSING}
        return Propagation(**{**keep, **changes, "node": None}).run()

    def _visit(self, node: fx.Node, modules: dict[str, nn.Module]) -> Any:
        meta = node.meta.get("value")
        if node.op == "placeholder":
            return self.fixed(meta)
        if node.op == "get_attr":
            if node.meta.get("constant"):
                return self.fixed(meta)
            module, _, name = str(node.target).rpartition(".")
            info = self.param(module, name)
            return info if info is not None else self.fixed(meta)
        if node.op == "call_module":
            path = str(node.target)
            module = modules[path]
            handler = self.handler_for(module) if path not in self.trace.opaque else None
            if handler is None:
                reason = self.trace.opaque.get(path) or f"no layer handler for {type(module).__name__}"
                return self.opaque_module(path, module, reason)
            out = self._guarded(lambda: handler.propagate(self, module, node), f"handler for {type(module).__name__}")
            self.leaf_calls.append(LeafCall(node, path, module, handler))
            return out
        if node.op in ("call_function", "call_method"):
            name = op_name(node)
            if not _has_tensor(meta) and name != "setitem":
                return None
            if name not in OP_RULES:
                return self.unknown(f"operation '{name}' has no channel rule")
            rule = OP_RULES.get(name)
            return self._guarded(lambda: rule(self, node.args, node.kwargs), f"rule for '{name}'")
        if node.op == "output":
            for info in _infos_in(self.info(node.args[0])):
                for f in info.fields:
                    self.ids.fix(f.ids)
            return None
        return None

    def _guarded(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return fn()
        except StructureError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            log.debug("%s failed at %s", what, self.node, exc_info=True)
            return self.unknown(f"{what} could not handle this call ({type(exc).__name__}: {exc})")

    # --- what rules use -----------------------------------------------------------------------
    @property
    def where(self) -> str:
        return str(self.node.meta.get("scope", "")) if self.node is not None else ""

    @property
    def merge_heads(self) -> bool:
        """Whether products at the current node prune head dims instead of whole heads (``attention`` for its scope)."""
        return attention_mode(self.attention, self.where) == "head_dims"

    def saw_heads(self) -> None:
        """Note that the current node multiplies per-head channels, so the attention mode matters in its scope."""
        if self.where not in self.head_scopes:
            self.head_scopes.append(self.where)

    @property
    def out(self) -> Any:
        return self.node.meta.get("value") if self.node is not None else None

    @property
    def out_shape(self) -> tuple[int, ...]:
        out = self.out
        if not isinstance(out, TensorMeta):
            raise StructureError(f"{self.node} does not produce a single tensor")
        return out.shape

    def info(self, a: Any) -> Any:
        if isinstance(a, fx.Node):
            return self.infos.get(a)
        if isinstance(a, (list, tuple)):
            return [self.info(x) for x in a]
        if isinstance(a, dict):
            return {k: self.info(v) for k, v in a.items()}
        return None

    def tensor(self, a: Any) -> TensorInfo | None:
        info = self.infos.get(a) if isinstance(a, fx.Node) else None
        return info if isinstance(info, TensorInfo) else None

    def value(self, a: Any) -> Any:
        if isinstance(a, fx.Node):
            return a.meta.get("value")
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(x) for x in a) if not hasattr(a, "_fields") else tuple(self.value(x) for x in a)
        if isinstance(a, slice):
            return slice(self.value(a.start), self.value(a.stop), self.value(a.step))
        return a

    def fixed(self, meta: Any) -> Any:
        """Info for a value whose every axis is fixed."""
        if isinstance(meta, TensorMeta):
            return TensorInfo(meta.shape, [])
        if isinstance(meta, (list, tuple)) and any(isinstance(m, TensorMeta) for m in meta):
            return [self.fixed(m) for m in meta]
        return None

    def einsum(self, operands: Sequence[tuple[TensorInfo, Letters]], out_letters: Letters, shape: tuple[int, ...] | None = None, merge: Sequence[Hashable] = ()) -> TensorInfo:
        nodes = [self._node_of.get(id(info)) for info, _ in operands]
        rigid = None if self.merge_heads else [n in self._from_buffers and (n.op != "get_attr" or self._plain_buffer(n)) for n in nodes]
        fields, recorded = einsum_fields(self.ids, operands, out_letters, self.where, merge, [n in self._from_input for n in nodes], rigid)
        self.recorded.extend(recorded)
        return TensorInfo(tuple(shape if shape is not None else self.out_shape), fields)

    def _plain_buffer(self, node: fx.Node | None) -> bool:
        """``node`` reads a buffer no layer rule has given a role (rotary sin/cos tables, say)."""
        if node is None or node.op != "get_attr":
            return False
        module, _, name = str(node.target).rpartition(".")
        record = self.tensors.get((module, name))
        return record is not None and not record.is_param and not any(record.roles)

    def param(self, module: str, name: str, roles: dict[int, str] | None = None) -> TensorInfo | None:
        """Info of parameter/buffer ``module.name`` (fresh ids per dim, shared by every use)."""
        key = (module, name)
        record = self.tensors.get(key)
        if record is None:
            owner = self._modules.get(module) or self.trace.root.get_submodule(module)
            tensor = getattr(owner, name, None)
            if not isinstance(tensor, torch.Tensor):
                return None
            alias = self._by_tensor.get(id(tensor))
            if alias is not None:  # the same tensor under another name (weight tying)
                record = self.tensors[alias]
            else:
                is_param = isinstance(tensor, nn.Parameter)
                dim_ids = [self.ids.fresh((s,)) for s in tensor.shape]
                record = TensorRecord(module, name, tuple(tensor.shape), is_param, dim_ids, [""] * tensor.dim())
                self._by_tensor[id(tensor)] = key
            self.tensors[key] = record
        for dim, role in (roles or {}).items():
            self._set_role(record, dim, role)
        # a size-1 dim can never shrink: it stays fixed rather than labelling what it broadcasts into
        return TensorInfo(record.shape, [Field((d,), ids) for d, ids in enumerate(record.dim_ids) if record.shape[d] > 1])

    def tag(self, a: Any, dim: int, role: str) -> None:
        """Give a parameter argument's dim a role (``out``, ``in``, ``bias``, ``norm_weight`` ...).

        An argument computed in ``forward`` (a standardised weight, ``(gain * scale).view(-1)``) tags
        the parameter whose dim it carries unchanged along ``dim``, if any.
        """
        if isinstance(a, fx.Node) and a.op == "get_attr" and not a.meta.get("constant"):
            module, _, name = str(a.target).rpartition(".")
            record = self.tensors.get((module, name))
            if record is not None and dim < len(record.roles):
                self._set_role(record, dim, role)
            return
        info = self.tensor(a)
        f = info.field_at(dim) if info is not None else None
        if f is None or f.axes != (dim,):
            return
        for record in self.tensors.values():
            d = next((d for d, ids in enumerate(record.dim_ids) if ids is f.ids or (ids.shape == f.ids.shape and np.array_equal(ids, f.ids))), None)
            if d is not None:
                self._set_role(record, d, role)
                return

    @staticmethod
    def _set_role(record: TensorRecord, dim: int, role: str) -> None:
        if not record.roles[dim] or ROLE_PRIORITY.get(role, 9) < ROLE_PRIORITY.get(record.roles[dim], 9):
            record.roles[dim] = role

    def site(self, site: Site) -> None:
        """Record a size check; it also depends on every tensor whose sizes its arguments read."""
        site.ids = list(site.ids) + size_dependencies(site.node, self.infos)
        self.sites.append(site)

    def identity(self, info: TensorInfo | None) -> TensorInfo:
        """Output with the same labelling as ``info`` (shape taken from the output)."""
        shape = self.out_shape
        if info is None or tuple(info.shape) != tuple(shape):
            return TensorInfo(shape, []) if info is None else self.unknown("output shape differs from its input")
        return TensorInfo(shape, list(info.fields))

    def unknown(self, reason: str) -> Any:
        """Leave everything this node touches untouched: block its inputs, give it blocked outputs."""
        node = self.node
        assert node is not None
        for a in node.all_input_nodes:
            for info in _infos_in(self.infos.get(a)):
                for f in info.fields:
                    self.ids.block(f.ids, reason, self.where)
        return self._blocked_output(self.out, reason)

    def _blocked_output(self, meta: Any, reason: str) -> Any:
        if isinstance(meta, TensorMeta):
            fields = []
            for ax, size in enumerate(meta.shape):
                ids = self.ids.fresh((size,))
                self.ids.block(ids, reason, self.where)
                fields.append(Field((ax,), ids))
            return TensorInfo(meta.shape, fields)
        if isinstance(meta, (list, tuple)) and any(isinstance(m, TensorMeta) for m in meta):
            return [self._blocked_output(m, reason) for m in meta]
        return None

    def opaque_module(self, path: str, module: nn.Module, reason: str) -> Any:
        """A module left as it is: its inputs, outputs and parameters are untouched."""
        for owner, tensor_name in _tensors_of(module, path):
            info = self.param(owner, tensor_name)
            if info is not None:
                for f in info.fields:
                    self.ids.block(f.ids, reason, path)
        return self.unknown(reason)


def _tensors_of(module: nn.Module, path: str) -> list[tuple[str, str]]:
    """(owning module path, tensor name) of every parameter and buffer under ``module``."""
    out = []
    for fqn, _ in [*module.named_parameters(recurse=True), *module.named_buffers(recurse=True)]:
        prefix, _, name = fqn.rpartition(".")
        out.append((".".join(p for p in (path, prefix) if p), name))
    return out


def _has_tensor(meta: Any) -> bool:
    if isinstance(meta, TensorMeta):
        return True
    if isinstance(meta, (list, tuple)):
        return any(_has_tensor(m) for m in meta)
    if isinstance(meta, dict):
        return any(_has_tensor(m) for m in meta.values())
    return False


def _infos_in(info: Any) -> list[TensorInfo]:
    if isinstance(info, TensorInfo):
        return [info]
    if isinstance(info, (list, tuple)):
        return [t for x in info for t in _infos_in(x)]
    if isinstance(info, dict):
        return [t for x in info.values() for t in _infos_in(x)]
    return []
