"""The op-rule registry: canonical op names, :data:`OP_RULES`, :func:`register_op` and argument lookup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import fx

from prunekit._registry import Registry

OpRule = Callable[..., Any]

#: canonical op name -> rule.
OP_RULES: Registry[OpRule] = Registry("op rule")

_ALIASES = {
    "iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "truediv", "ifloordiv": "floordiv",
    "imatmul": "matmul", "ipow": "pow", "__matmul__": "matmul", "__rmatmul__": "matmul", "concat": "cat",
    "concatenate": "cat", "swapaxes": "transpose", "swapdims": "transpose", "moveaxis": "movedim",
    "true_divide": "div", "divide": "div", "multiply": "mul", "subtract": "sub", "clip": "clamp",
    "absolute": "abs", "negative": "neg", "greater": "gt", "less": "lt",
}


def register_op(*names: str, replace: bool = False) -> Callable[[OpRule], OpRule]:
    """Decorator registering a rule under one or more canonical names.

    A name that already has a rule is refused (nothing is registered) unless ``replace=True``.
    """

    def decorator(rule: OpRule) -> OpRule:
        taken = [name for name in names if name in OP_RULES]
        if taken and not replace:
            owners = ", ".join(f"{name!r} ({_qualname(OP_RULES.get(name))})" for name in taken)
            raise ValueError(
                f"op rule already registered for {owners}; to replace it on purpose use "
                f"@register_op({', '.join(map(repr, taken))}, replace=True)"
            )
        for name in names:
            OP_RULES.add(name, rule, overwrite=True)
        return rule

    return decorator


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def op_name(node: fx.Node) -> str:
    """Canonical name of a call_function / call_method node's operation."""
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    name = _ALIASES.get(name, name)
    if name.endswith("_") and not name.endswith("__") and name[:-1] in OP_RULES and name not in OP_RULES:
        name = _ALIASES.get(name[:-1], name[:-1])
    return name


def arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    """Positional-or-keyword argument lookup."""
    if index < len(args):
        return args[index]
    return kwargs.get(name, default)
