"""Measuring a structured step: MACs, params and output shapes before and after (the pruned model must still
run and keep its output shapes), and what a measured speed-up warns about."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from prunekit.deployment.runtimes import SpeedupCheck
from prunekit.errors import StructureError
from prunekit.metrics.macs import ForwardCounter, counted_forward
from prunekit.pruners.objective import measure_model
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.values import TensorMeta

log = logging.getLogger("prunekit.pruners.structured")  # the pruner's logger, which users filter its messages by

#: A latency target that needed this many times more MACs reduction than speed-up hit the runtime's per-layer overhead.
OVERHEAD_BOUND = 2.5


def model_costs(model: nn.Module, inputs: tuple[Any, ...]) -> dict[str, int]:
    return {metric: int(measure_model(metric, model, inputs)) for metric in ("macs", "params")}


def measure(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    """:func:`model_costs` and the shapes of the model's outputs, from one forward (eval mode, no gradients).

    MACs are counted as the ``"macs"`` cost metric measures them (:func:`prunekit.metrics.count_macs`).
    """
    report, output = counted_forward(model, inputs, effective=False)
    return {"macs": int(report.dense), "params": int(measure_model("params", model, inputs))}, [tuple(t.shape) for t in _flatten_outputs(output)]


def traced_measure(graph: DependencyGraph, counter: ForwardCounter, inputs: tuple[Any, ...]) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    """:func:`measure` of the unpruned model from the forward ``graph``'s tracer ran (``counter`` watched it):
    the same counts and output shapes without another forward (one when the counter could not count)."""
    model = graph.model
    dense = counter.dense()
    if dense is None:
        return measure(model, inputs)
    output = next(n for n in graph.prop.trace.graph.nodes if n.op == "output")
    return {"macs": dense, "params": int(measure_model("params", model, inputs))}, [tuple(m.shape) for m in _flatten_outputs(output.args[0])]


def checked_measure(model: nn.Module, inputs: tuple[Any, ...], reference: Sequence[tuple[int, ...]]) -> dict[str, int]:
    """:func:`measure` of the pruned model, which must still run and produce outputs of the ``reference`` shapes."""
    try:
        counted, got = measure(model, inputs)
    except Exception as exc:
        raise StructureError(f"the pruned model no longer runs ({type(exc).__name__}: {exc}); please report this model") from exc
    if list(got) != list(reference):
        raise StructureError(f"the pruned model's outputs changed shape: {reference} -> {got}")
    return counted


def _flatten_outputs(out: Any) -> list[Any]:
    """Tensors of a forward's output in order (of a traced output: the tensors' :class:`TensorMeta` summaries)."""
    if isinstance(out, fx.Node):
        out = out.meta.get("value")
    if isinstance(out, (torch.Tensor, TensorMeta)):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten_outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten_outputs(o)]
    return []


def speedup_warnings(check: SpeedupCheck | None, macs_ratio: float) -> list[str]:
    """What a measured speed-up says the user should know: slower than dense, or bought with far more MACs than it saved time."""
    if check is None:
        return []
    if check.speedup < 1.0:
        return [slower_warning(check)]
    if macs_ratio > OVERHEAD_BOUND * check.speedup:
        message = (f"{check.speedup:.2f}× faster on {check.runtime} took {macs_ratio:.1f}× fewer MACs: at batch {check.batch_size} this model's "
                   f"time is mostly per-layer overhead, not arithmetic. Fewer layers (prunekit.prune_depth), a larger batch or another "
                   f"runtime gains more than narrower layers")
        log.warning(message)
        return [message]
    return []


def slower_warning(check: SpeedupCheck) -> str:
    """The warning for a pruned model slower than the dense one, with how to prune for the runtime instead."""
    return (f"the pruned model is SLOWER than the dense one: {check.describe()}. Prune for the runtime instead: "
            f"latency_reduction=... with runtime={check.runtime!r}, batch_size={check.batch_size} (channel counts then follow its measured "
            f"staircase), or round_to='auto'")
