"""Residual blocks a model can lose whole: ``out = post(x + branch(x))`` with an identity shortcut.

:func:`find_blocks` runs the model once on example inputs (to learn which submodules are called,
with what, and what each costs), then traces every called submodule that has children with
``torch.fx.symbolic_trace`` (in eval mode, default-valued arguments baked in) and reads its output:

- ``post`` is empty or one element-wise activation (``nn.ReLU``/``F.relu``/``x.relu()``, GELU, SiLU…);
- under it, an add (``+``, ``+=``, ``torch.add``, ``.add``) of the block input ``x`` (directly or
  through ``nn.Identity``) and a branch that depends on ``x``; a chain of such adds
  (``x = x + attn(x); x = x + mlp(x)``, a transformer block) counts as one block with several branches.

Such a block computes ``post(x)`` when its branches output zero, so replacing it by ``post``
(:meth:`ResidualBlock.replacement`) is exact in that case; depth pruning removes the blocks whose
branches matter least. Residual blocks whose shortcut is not the identity (a projection or a
downsampling), that change the shape, take several inputs or are called more than once are
reported with ``removable=False`` and the reason. A submodule fx cannot trace is skipped (logged).
"""

from __future__ import annotations

import inspect
import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from prunekit.metrics import count_macs, count_parameters
from prunekit.metrics._inputs import Inputs, as_args, eval_mode
from prunekit.structured.spec import REPLACEMENT_MODULES

log = logging.getLogger(__name__)

_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")
#: Parameter-free modules allowed as ``post`` (reused as the block's replacement; an architecture spec rebuilds them).
_POST_MODULES = REPLACEMENT_MODULES
#: ``post`` given as a function or tensor method → the module that replaces the block.
_POST_FUNCTIONS: dict[Any, type[nn.Module]] = {
    F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.gelu: nn.GELU, F.silu: nn.SiLU, F.hardswish: nn.Hardswish,
    F.mish: nn.Mish, torch.sigmoid: nn.Sigmoid, torch.tanh: nn.Tanh, "relu": nn.ReLU, "relu_": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
}
#: Ops a branch end is traced back through (they keep an all-zero tensor all-zero).
_LAYOUT_METHODS = ("permute", "reshape", "view", "flatten", "contiguous", "transpose", "squeeze", "unsqueeze")
_REORDERING_FREE = ("reshape", "view", "flatten", "unflatten", "contiguous")
_PASS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class ResidualBlock:
    """One residual submodule of a model, as :func:`find_blocks` found it.

    ``branch_ends`` name what produces each branch's output (a module's or a layer-scale
    parameter's fully-qualified name, ``""`` where it could not be told); ``post`` is the
    activation after the add (a module name inside the model, a function name, or ``""``);
    ``macs``/``params`` are the block's own (per example, on the example inputs).
    """

    name: str
    removable: bool
    reason: str = ""
    branch_ends: tuple[str, ...] = ()
    post: str = ""
    macs: int = 0
    params: int = 0
    _post_factory: Callable[[nn.Module], nn.Module] | None = field(default=None, repr=False, compare=False)

    def replacement(self, model: nn.Module) -> nn.Module:
        """The module that takes this block's place in ``model``: its ``post`` (or ``nn.Identity``)."""
        return self._post_factory(model) if self._post_factory is not None else nn.Identity()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "removable": self.removable, "reason": self.reason, "branch_ends": list(self.branch_ends),
                "post": self.post, "macs": self.macs, "params": self.params}


@dataclass
class _Call:
    """What the example forward pass saw of one submodule."""

    calls: int = 0
    extra_arguments: bool = False
    input: torch.Tensor | None = None
    same_shape: bool = True


def find_blocks(model: nn.Module, example_inputs: Inputs) -> list[ResidualBlock]:
    """Every residual submodule of ``model`` (removable or not, with the reason), in module order."""
    calls = _record_calls(model, example_inputs)
    blocks: list[ResidualBlock] = []
    with eval_mode(model):
        for name, module in model.named_modules():
            seen = calls.get(name)
            if seen is None or not seen.calls:
                continue
            try:
                graph = _trace(module)
            except Exception as exc:  # user code fx cannot follow: skipped, with the reason
                log.info("depth: skipping %s (%s): torch.fx cannot trace it (%s: %s)", name, type(module).__name__, type(exc).__name__, str(exc)[:160])
                continue
            block = _classify(name, module, graph, seen)
            if block is not None:
                blocks.append(block)
    _refuse_nested(blocks)
    return blocks


def _record_calls(model: nn.Module, example_inputs: Inputs) -> dict[str, _Call]:
    """One forward pass with hooks on the candidate submodules (custom modules with children)."""
    seen: dict[str, _Call] = {}
    handles = []

    def hooks(name: str) -> tuple[Callable[..., None], Callable[..., None]]:
        def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            entry = seen[name]
            entry.calls += 1
            if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor):
                entry.extra_arguments = True
            elif entry.input is None:
                entry.input = args[0][:1].detach().clone()

        def post(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            entry = seen[name]
            same = bool(args) and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor) and out.shape == args[0].shape
            entry.same_shape = entry.same_shape and same and out.dtype == args[0].dtype

        return pre, post

    for name, module in model.named_modules():
        if name and not isinstance(module, _CONTAINERS) and any(True for _ in module.children()):
            seen[name] = _Call()
            pre, post = hooks(name)
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True))
    try:
        with eval_mode(model):
            model(*as_args(example_inputs))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _trace(module: nn.Module) -> fx.Graph:
    """fx graph of ``module.forward`` with every argument after the first baked in at its default."""
    params = list(inspect.signature(module.forward).parameters.values())
    if not params or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise TypeError("forward takes *args/**kwargs")
    rest = params[1:]
    if any(p.default is inspect.Parameter.empty for p in rest):
        raise TypeError(f"forward needs {len(params)} arguments")
    return fx.Tracer().trace(module, concrete_args={p.name: p.default for p in rest} or None)


def _classify(name: str, module: nn.Module, graph: fx.Graph, seen: _Call) -> ResidualBlock | None:
    """A :class:`ResidualBlock` if the graph's output is ``post(x + branches)``, else ``None``."""
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    outputs = [n for n in graph.nodes if n.op == "output"]
    if not inputs or not outputs or not isinstance(outputs[0].args[0], fx.Node):
        return None
    x = inputs[0]
    node, post_node = _through_reshapes(outputs[0].args[0]), None
    if _post_factory(module, node) is not None:
        post_node, node = node, _through_reshapes(node.args[0])
    if not _is_add(node):
        return None
    branches = _identity_branches(node, x, module)
    if branches is None:
        if not all(_depends_on(a, x) for a in _add_operands(node)):
            return None  # an add of a constant (a bias, a position embedding), not a residual
        return ResidualBlock(name, False, f"its shortcut is not the identity (it goes through {_shortcut_modules(node, x, name)})")
    if not branches:
        return None
    post = _post_name(name, post_node)
    factory = _post_factory(module, post_node) if post_node is not None else None
    ends = tuple(_branch_end(name, module, b) for b in branches)
    reason = ""
    if seen.extra_arguments:
        reason = "it is called with more than one input"
    elif seen.calls > 1:
        reason = f"it is called {seen.calls} times (a shared module)"
    elif not seen.same_shape:
        reason = "its output shape or dtype differs from its input's"
    macs = params = 0
    if not reason and seen.input is not None:
        macs, params = count_macs(module, seen.input).dense, count_parameters(module).params
    return ResidualBlock(name, not reason, reason, ends, post, macs, params, factory)


def _is_add(node: Any) -> bool:
    """An add of two tensors written in the traced module's own ``forward`` (not inside a child's)."""
    if not isinstance(node, fx.Node) or len(node.args) < 2 or node.kwargs.get("alpha", 1) != 1 or node.meta.get("nn_module_stack"):
        return False
    return (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (node.op == "call_method" and node.target in _ADD_METHODS)


def _add_operands(node: fx.Node) -> tuple[Any, Any]:
    return node.args[0], node.args[1]


def _through_reshapes(node: Any) -> Any:
    """``node`` with reshapes that keep the element order (``reshape``, ``view``, ``flatten``…) stripped.

    A chain of them from the input to an output of the input's shape (checked on the example pass)
    returns the input unchanged, so they may wrap the trunk and the output (Swin blocks do).
    """
    while isinstance(node, fx.Node) and node.args and (
        (node.op == "call_method" and node.target in _REORDERING_FREE) or (node.op == "call_function" and node.target in (torch.reshape, torch.flatten))
    ):
        node = node.args[0]
    return node


def _is_input(node: Any, x: fx.Node, module: nn.Module) -> bool:
    """``node`` is the block input itself (possibly through ``nn.Identity`` or order-keeping reshapes)."""
    node = _through_reshapes(node)
    while isinstance(node, fx.Node) and node.op == "call_module" and isinstance(module.get_submodule(str(node.target)), nn.Identity):
        node = _through_reshapes(node.args[0])
    return node is x


def _identity_branches(node: fx.Node, x: fx.Node, module: nn.Module) -> list[fx.Node] | None:
    """The branches of an add chain ending at ``node`` whose trunk is the block input, else ``None``."""
    a, b = _add_operands(node)
    for trunk, branch in ((a, b), (b, a)):
        if _is_input(trunk, x, module):
            if not isinstance(branch, fx.Node) or _is_input(branch, x, module) or not _depends_on(branch, x):
                return []
            return [branch]
    for trunk, branch in ((a, b), (b, a)):
        trunk = _through_reshapes(trunk)
        if _is_add(trunk) and isinstance(branch, fx.Node) and _depends_on(branch, x):
            inner = _identity_branches(trunk, x, module)
            if inner:
                return [*inner, branch]
    return None


def _depends_on(node: Any, x: fx.Node) -> bool:
    if not isinstance(node, fx.Node):
        return False
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n is x:
            return True
        if n in seen:
            continue
        seen.add(n)
        stack.extend(a for a in n.all_input_nodes)
    return False


def _shortcut_modules(node: fx.Node, x: fx.Node, prefix: str) -> str:
    """The modules on the add operand with the shorter path from the input (the shortcut), for messages."""
    paths = []
    for operand in _add_operands(node):
        mods: list[str] = []
        stack = [operand]
        while stack:
            n = stack.pop()
            if isinstance(n, fx.Node) and n is not x:
                if n.op == "call_module":
                    mods.append(f"{prefix}.{n.target}")
                stack.extend(n.all_input_nodes)
        paths.append(sorted(set(mods)))
    short = min(paths, key=len)
    return ", ".join(repr(m) for m in short) if short else "an operation that is not a module"


def _post_factory(module: nn.Module, node: fx.Node) -> Callable[[nn.Module], nn.Module] | None:
    """How to build ``post`` as a module, if ``node`` is one element-wise activation of one tensor."""
    if not isinstance(node, fx.Node) or not node.args or not isinstance(node.args[0], fx.Node):
        return None
    if node.op == "call_module":
        sub = module.get_submodule(str(node.target))
        if isinstance(sub, _POST_MODULES) and len(node.args) == 1 and not node.kwargs and len(node.meta.get("nn_module_stack", ())) <= 1:
            return lambda model, sub=sub: sub  # type: ignore[misc]
        return None
    if node.op in ("call_function", "call_method") and len(node.args) == 1 and set(node.kwargs) <= {"inplace"} and not node.meta.get("nn_module_stack"):
        cls = _POST_FUNCTIONS.get(node.target)
        if cls is not None:
            return lambda model, cls=cls: cls()  # type: ignore[misc]
    return None


def _post_name(name: str, node: fx.Node | None) -> str:
    if node is None:
        return ""
    if node.op == "call_module":
        return f"{name}.{node.target}"
    return str(node.target) if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))


def _branch_end(name: str, module: nn.Module, node: fx.Node) -> str:
    """Fully-qualified name of the module (or layer-scale parameter) producing the branch's output, or ``""``."""
    while isinstance(node, fx.Node):
        if node.op == "call_module":
            sub = module.get_submodule(str(node.target))
            if any(True for _ in sub.parameters()):
                return f"{name}.{node.target}"
            if not isinstance(sub, _PASS_MODULES):
                return ""
        elif node.op in ("call_function", "call_method") and node.target in (operator.mul, torch.mul, "mul", "mul_"):
            param = next((p for p in node.args[1:] if _parameter_name(p)), None)
            return f"{name}.{_parameter_name(param)}" if param is not None else ""
        elif node.op == "call_function" and node.target in (F.batch_norm, F.layer_norm, F.group_norm, F.linear, F.conv2d):
            weight = next((_parameter_name(a) for a in [*node.args[1:], *node.kwargs.values()] if _parameter_name(a).endswith("weight")), "")
            return f"{name}.{weight.rpartition('.')[0]}" if weight.rpartition(".")[0] else ""
        elif not (node.op == "call_method" and node.target in _LAYOUT_METHODS):
            return ""
        node = node.args[0]
    return ""


def _parameter_name(node: Any) -> str:
    """Name of the parameter a ``get_attr`` node (possibly reshaped) reads, else ``""``."""
    while isinstance(node, fx.Node) and node.op == "call_method" and node.target in _LAYOUT_METHODS:
        node = node.args[0]
    return str(node.target) if isinstance(node, fx.Node) and node.op == "get_attr" else ""


def _refuse_nested(blocks: list[ResidualBlock]) -> None:
    """A removable block inside another removable one is not a unit of its own (the outer one is)."""
    outer = [b.name for b in blocks if b.removable]
    for block in blocks:
        parent = next((o for o in outer if block.name.startswith(o + ".")), None)
        if block.removable and parent is not None:
            block.removable, block.reason = False, f"it lies inside the removable block {parent!r} (remove that one instead)"


__all__ = ["ResidualBlock", "find_blocks"]
