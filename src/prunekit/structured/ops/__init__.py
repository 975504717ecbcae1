"""Channel rules for traced operations: how each op couples the labelled axes of its tensors.

A rule is ``rule(ctx, args, kwargs) -> info`` where ``args``/``kwargs`` are the node's raw
arguments (fx nodes or literals; resolve them with ``ctx.info`` / ``ctx.value``) and the result is
the output's :class:`~prunekit.structured.fields.TensorInfo` (or a list of them for tuple outputs).
Rules are registered in :data:`OP_RULES` under canonical op names (``torch.add``, ``operator.add``
and ``Tensor.add_`` are all ``"add"``); :func:`register_op` adds rules for your own functions
(``replace=True`` swaps an existing one on purpose).
An op without a rule leaves every channel it touches untouched, with a warning.
"""

from prunekit.structured.ops import combine, indexing, layout, linalg, pointwise  # noqa: F401  (the built-in rules register here)
from prunekit.structured.ops.registry import OP_RULES, OpRule, arg, op_name, register_op

__all__ = ["OP_RULES", "OpRule", "arg", "op_name", "register_op"]
