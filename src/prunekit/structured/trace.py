"""Tracing a model for the dependency graph: one concrete trace (:mod:`prunekit.structured.tracer`) in eval mode.

A module whose forward cannot be traced is retried as an opaque leaf (left untouched by pruning, with a warning).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from prunekit.errors import StructureError
from prunekit.structured.patches import container_state, restore_containers
from prunekit.structured.tracer import ConcreteAttribute, ConcreteProxy, ConcreteTracer, Guard, _instruction_at, concrete_value
from prunekit.structured.values import TracedInt

# the tracer's names stay importable from here, where they used to live
__all__ = [
    "ConcreteAttribute", "ConcreteProxy", "ConcreteTracer", "Guard", "Trace", "TracedInt", "_instruction_at", "bind_inputs",
    "concrete_value", "trace_model",
]


@dataclass
class Trace:
    """The traced graph plus what the tracer learnt on the way."""

    graph: fx.Graph
    root: nn.Module
    guards: list[Guard]
    opaque: dict[str, str]  # module path -> why it was not traced through
    module_outputs: dict[str, list[fx.Node]] = field(default_factory=dict)


def bind_inputs(model: nn.Module, example_inputs: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map example inputs onto ``forward``'s parameters: (traced inputs, defaults baked as constants)."""
    sig = inspect.signature(model.forward)
    try:
        bound = sig.bind(*example_inputs)
    except TypeError as exc:
        raise StructureError(f"example inputs do not match {type(model).__name__}.forward{sig}: {exc}") from None
    inputs = dict(bound.arguments)
    concrete = {
        name: p.default
        for name, p in sig.parameters.items()
        if name not in inputs and p.default is not inspect.Parameter.empty
    }
    return inputs, concrete


def trace_model(
    model: nn.Module,
    example_inputs: tuple[Any, ...],
    is_handled: Callable[[nn.Module], bool],
    opaque: set[str] | None = None,
    autowrap_functions: Sequence[Callable[..., Any]] = (),
    max_retries: int = 32,
    observer: contextlib.AbstractContextManager[Any] | None = None,
) -> Trace:
    """Trace ``model(*example_inputs)`` (in eval mode, without gradients), retrying failing modules as opaque leaves.

    ``observer`` is entered around each attempt (the last one is the trace returned): the tracer runs
    every operator for real, so it can watch the forward (count MACs, say).
    """
    inputs, concrete = bind_inputs(model, example_inputs)
    opaque_set = set(opaque or ())
    reasons: dict[str, str] = {p: "marked opaque by the caller" for p in opaque_set}
    was_training = model.training
    model.eval()
    state = container_state(model)
    try:
        for _ in range(max_retries + 1):
            tracer = ConcreteTracer(inputs, is_handled, opaque_set, autowrap_functions)
            try:
                with torch.no_grad(), observer if observer is not None else contextlib.nullcontext():
                    graph = tracer.trace(model, concrete_args=concrete or None)
            except Exception as exc:  # any failure in user code: retry with that module opaque
                failed = tracer.failed_module
                if not failed or failed in opaque_set:
                    raise StructureError(
                        f"cannot trace {type(model).__name__} with torch.fx even concretely: {type(exc).__name__}: {exc}"
                    ) from exc
                opaque_set.add(failed)
                reasons[failed] = f"its forward cannot be traced ({type(exc).__name__}: {str(exc)[:160]})"
                continue
            return Trace(graph, model, tracer.guards, reasons, tracer.module_outputs)
        raise StructureError(f"gave up tracing {type(model).__name__} after {max_retries} opaque retries")
    finally:
        restore_containers(state)
        model.train(was_training)
