"""The concrete tracer: a torch.fx graph of one real forward pass, with every value known.

``torch.fx.symbolic_trace`` fails on Python control flow that reads shapes (``if H % 2:``),
which vision models are full of. :class:`ConcreteTracer` runs the model for real while it traces:
every proxy carries the concrete value it stands for, so control flow, ``len`` and ``int``
conversions resolve to the values of the example input. Each such decision that depends on a
tensor size is recorded as a *guard*, so the dependency graph can later refuse pruning plans that
would flip it.

Integer attributes of the model's modules (``self.num_heads``, items of int tuples and lists) are read as
:class:`~prunekit.structured.values.TracedInt` (an ``int`` that remembers its owner and name), so size arguments such as
``x.reshape(B, N, 3, self.num_heads, self.head_dim)`` keep their origin in the graph and the
surgery can update the attribute instead of leaving a stale constant behind; arithmetic with plain
ints (``self.c // 2``) keeps that origin, so such expressions are rewritten too where exact.

Modules with a registered layer handler are leaves (one ``call_module`` node); so are modules named
in ``opaque`` and parameterised ``torch.nn`` modules without a handler.
"""

from __future__ import annotations

import bisect
import dis
import functools
import inspect
import math
import operator
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.fx._symbolic_trace import _orig_module_getattr
from torch.fx.proxy import Attribute, Proxy

from prunekit.errors import StructureError
from prunekit.structured.patches import concrete_autocast, instrument, restore
from prunekit.structured.values import summarize


@dataclass
class Guard:
    """A decision taken on a concrete value while tracing; pruning must not change ``node``'s value."""

    node: fx.Node
    value: Any


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, Proxy):
        return fn(value)
    if isinstance(value, tuple):
        mapped = [_map(v, fn) for v in value]
        return type(value)(*mapped) if hasattr(value, "_fields") else tuple(mapped)
    if isinstance(value, list):
        return [_map(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_map(value.start, fn), _map(value.stop, fn), _map(value.step, fn))
    return value


def _has_proxy(value: Any) -> bool:
    found = False

    def mark(p: Any) -> Any:
        nonlocal found
        found = True
        return p

    _map(value, mark)
    return found


class _ConcreteMixin:
    """Python-level conversions answered from the concrete value (and recorded as guards)."""

    tracer: ConcreteTracer

    @property
    def value(self) -> Any:
        return self.tracer.value_of(self)  # type: ignore[arg-type]

    def __getattr__(self, k: str) -> ConcreteAttribute:
        if k.startswith("__") and k.endswith("__"):
            raise AttributeError(k)
        return ConcreteAttribute(self, k)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        # fx's Proxy.__iter__, with the caller's bytecode disassembled once per code object instead of per call
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        inst = _instruction_at(caller.f_code, caller.f_lasti)  # type: ignore[union-attr]
        if inst.opname == "UNPACK_SEQUENCE":
            return (self[i] for i in range(inst.argval))  # type: ignore[index]
        return self.tracer.iter(self)  # type: ignore[arg-type]

    def __len__(self) -> int:
        node = self.tracer.create_proxy("call_function", len, (self,), {})
        return int(self.tracer.guard(node))

    def __index__(self) -> int:
        return int(self.tracer.guard(self))  # type: ignore[arg-type]

    def __int__(self) -> int:
        return int(self.tracer.guard(self))  # type: ignore[arg-type]

    def __float__(self) -> float:
        return float(self.tracer.guard(self))  # type: ignore[arg-type]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    def __iadd__(self, other: Any) -> Any:
        return self.tracer.create_proxy("call_function", operator.iadd, (self, other), {})

    def __imul__(self, other: Any) -> Any:
        return self.tracer.create_proxy("call_function", operator.imul, (self, other), {})


@functools.lru_cache(maxsize=4096)
def _instructions(code: types.CodeType) -> tuple[list[int], list[dis.Instruction]]:
    insts = list(dis.get_instructions(code))
    return [i.offset for i in insts], insts


def _instruction_at(code: types.CodeType, offset: int) -> dis.Instruction:
    """The instruction of ``code`` at byte ``offset`` (a frame's ``f_lasti``)."""
    offsets, insts = _instructions(code)
    return insts[bisect.bisect_left(offsets, offset)]


class ConcreteProxy(_ConcreteMixin, Proxy):
    """A proxy whose concrete value is known."""


class ConcreteAttribute(_ConcreteMixin, Attribute):
    """``proxy.attr`` with a concrete value (computed lazily, like fx's Attribute node)."""


def _is_parameterised_torch_module(m: nn.Module) -> bool:
    return type(m).__module__.startswith("torch.nn") and any(True for _ in m.parameters(recurse=False))


class ConcreteTracer(fx.Tracer):
    """fx tracer that executes as it records. See the module docstring."""

    def __init__(
        self,
        example_inputs: dict[str, Any],
        is_handled: Callable[[nn.Module], bool],
        opaque: set[str],
        autowrap_functions: Sequence[Callable[..., Any]] = (),
    ) -> None:
        super().__init__(autowrap_modules=(math,), autowrap_functions=tuple(autowrap_functions))
        self._inputs = example_inputs
        self._is_handled = is_handled
        self.opaque = opaque
        self.guards: list[Guard] = []
        self.failed_module: str | None = None
        self.module_outputs: dict[str, list[fx.Node]] = {}
        self._scopes: list[str] = [""]
        self._constants: dict[int, tuple[str, torch.Tensor]] = {}
        self._concrete = 0

    # --- values -------------------------------------------------------------------------------
    def proxy(self, node: fx.Node) -> Proxy:
        return ConcreteProxy(node, self)

    def value_of(self, proxy: Proxy) -> Any:
        cached = proxy.__dict__.get("_value", _MISSING)
        if cached is not _MISSING:
            return cached
        if isinstance(proxy, Attribute):
            value = getattr(self.value_of(proxy.root), proxy.attr)
            proxy.__dict__["_value"] = value
            return value
        raise StructureError(f"internal: no concrete value for {proxy}")

    def _values(self, args: Any) -> Any:
        return _map(args, self.value_of)

    def _evaluate(self, kind: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kind == "placeholder":
            if target in self._inputs:
                return self._inputs[target]
            return args[0] if args else None
        if kind == "get_attr":
            if target in self._constants_by_name:
                return self._constants_by_name[target]
            obj: Any = self.root
            for atom in target.split("."):
                obj = _orig_module_getattr(obj, atom) if isinstance(obj, nn.Module) else getattr(obj, atom)
            return obj
        a, kw = self._values(args), self._values(kwargs)
        if kind == "call_function":
            return target(*a, **kw)
        if kind == "call_method":
            return getattr(a[0], target)(*a[1:], **kw)
        if kind == "call_module":
            self._concrete += 1  # the leaf runs its real code: attribute reads return real tensors
            try:
                return self.root.get_submodule(target)(*a, **kw)
            finally:
                self._concrete -= 1
        return None

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._concrete:
            return attr_val
        # fx's Tracer.getattr, with the root's parameter/buffer names read from a table instead of scanned per access
        name = self._attr_names.get(id(attr_val)) if isinstance(attr_val, torch.Tensor) and not self.param_shapes_constant else None
        if name is None or self._root_tensor(name) is not attr_val:
            return super().getattr(attr, attr_val, parameter_proxy_cache)
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]

    def _root_tensor(self, name: str) -> Any:
        """The root's parameter or buffer ``name`` now (read past fx's patched ``Module.__getattr__``)."""
        *path, leaf = name.split(".")
        module: Any = self.root
        for atom in path:
            module = module._modules.get(atom)
            if module is None:
                return None
        return module._parameters.get(leaf, module._buffers.get(leaf))

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):  # type: ignore[override]
        value = self._evaluate(kind, target, args, kwargs) if kind != "output" else None
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        proxy.__dict__["_value"] = value
        proxy.node.meta["value"] = summarize(value)
        proxy.node.meta["scope"] = target if kind == "call_module" else self._scopes[-1]
        return proxy

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, torch.Tensor) and id(a) in self._tensor_names:
            node = self.create_node("get_attr", self._tensor_names[id(a)], (), {})
            node.meta["value"] = summarize(a)
            node.meta["scope"] = self._scopes[-1]
            return node
        if isinstance(a, torch.Tensor):
            entry = self._constants.get(id(a))
            if entry is None:
                name = f"_prunekit_constant_{len(self._constants)}"
                entry = self._constants[id(a)] = (name, a)
                self._constants_by_name[name] = a
            node = self.create_node("get_attr", entry[0], (), {})
            node.meta["value"] = summarize(a)
            node.meta["scope"] = self._scopes[-1]
            node.meta["constant"] = True
            return node
        return super().create_arg(a)

    # --- python conversions -------------------------------------------------------------------
    def guard(self, proxy: Proxy) -> Any:
        value = self.value_of(proxy)
        self.guards.append(Guard(proxy.node, value))
        return value

    def to_bool(self, obj: Proxy) -> bool:
        return bool(self.guard(obj))

    def iter(self, obj: Proxy) -> Iterator[Any]:
        return (obj[i] for i in range(len(obj)))

    def keys(self, obj: Proxy) -> Any:
        return self.value_of(obj).keys()

    # --- modules ------------------------------------------------------------------------------
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.opaque or self._is_handled(m) or _is_parameterised_torch_module(m)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not _has_proxy(args) and not _has_proxy(kwargs):
            return forward(*args, **kwargs)  # concrete execution inside a leaf or a constant sub-call
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            out = super().call_module(m, forward, args, kwargs)
            self.module_outputs.setdefault(path, []).append(out.node)
            return out
        self._scopes.append(path)
        try:
            out = super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_module is None:
                self.failed_module = path
            raise
        finally:
            self._scopes.pop()
        if isinstance(out, Proxy):
            self.module_outputs.setdefault(path, []).append(out.node)
        return out

    def trace(self, root: nn.Module, concrete_args: dict[str, Any] | None = None) -> fx.Graph:  # type: ignore[override]
        self._tensor_names = {id(t): n for n, t in [*root.named_parameters(), *root.named_buffers()]}
        self._attr_names: dict[int, str] = {}  # what fx's getattr finds: the first name, parameters before buffers
        for n, t in [*root.named_parameters(), *root.named_buffers()]:
            self._attr_names.setdefault(id(t), n)
        self._constants_by_name: dict[str, torch.Tensor] = {}
        self.proxy_buffer_attributes = True
        # every module, not only those whose forward runs: a method called from another forward
        # (timm's rel_pos.get_bias() reading self.bias_shape) reads TracedInts too
        instrumented = [(m, instrument(m, path)) for path, m in root.named_modules()]
        try:
            with concrete_autocast(self._values):
                return super().trace(root, concrete_args)
        finally:
            for m, originals in instrumented:
                restore(m, originals)


_MISSING = object()


def concrete_value(obj: Any) -> Any:
    """The concrete value a :class:`ConcreteTracer` proxy stands for (None for anything else), read without recording anything."""
    return obj.__dict__.get("_value") if isinstance(obj, Proxy) else None
