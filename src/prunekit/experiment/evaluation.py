"""The evaluation step: dense vs pruned on accuracy, size, MACs, disk, latency, agreement and PIE examples."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from prunekit._parametrize import plain_copy
from prunekit.deployment.runtimes import time_side_by_side
from prunekit.metrics._inputs import batched
from prunekit.metrics.pie import pie_examples
from prunekit.metrics import (
    FirstExamples, agreement, compare_latency, corruption_accuracy, corruption_summary, count_macs, count_parameters, evaluate, prune_potential,
    size_on_disk,
)

COUNTING_NOTE = (
    "Parameters count every parameter (biases and norms included); nonzero parameters count the "
    "values the model computes with (masks applied). MACs count convolutions and matrix "
    "multiplications per example; effective MACs count only nonzero weights of conv/linear layers. "
    "Size on disk is the effective state dict as safetensors, raw and xz-compressed."
)


def profile(model: nn.Module, example_input: Tensor) -> dict[str, Any]:
    """Size, MACs and disk figures of ``model`` for one example shaped like ``example_input``."""
    size = count_parameters(model)
    macs = count_macs(model, example_input[:1])
    disk = size_on_disk(model)
    return {
        "params": size.params,
        "nonzero_params": size.nonzero_params,
        "prunable_params": size.prunable_params,
        "nonzero_prunable_params": size.nonzero_prunable_params,
        "macs": macs.dense,
        "effective_macs": macs.effective,
        "disk_bytes": disk.raw_bytes,
        "disk_compressed_bytes": disk.compressed_bytes,
    }


def compare(
    dense: nn.Module,
    pruned: nn.Module,
    test: Iterable[tuple[Tensor, Tensor]],
    example_input: Tensor,
    num_classes: int,
    latency_batch_size: int | None = 64,
    latency_repeats: int = 20,
    corruptions: tuple[str, ...] = (),
    corruption_severity: int = 3,
    latency_runtime: str = "torch",
    progress: bool = False,
) -> dict[str, Any]:
    """Everything ``summary.json`` reports about a dense/pruned pair (side-by-side latency on ``latency_runtime``).

    ``test`` is re-iterated for each pass (pass a :class:`prunekit.metrics.FirstExamples` to evaluate on
    fewer examples); ``out["evaluation"]`` says how many examples were used, of how many;
    ``out["pie_examples"]`` lists the examples the pruned model gets wrong and the dense right.
    ``progress`` shows a bar per test pass, per corruption and for the latency timing."""
    ev_dense = evaluate(dense, test, num_classes, progress=progress, description="test: dense")
    ev_pruned = evaluate(pruned, test, num_classes, progress=progress, description="test: pruned")
    out: dict[str, Any] = {
        "evaluation": {"examples": ev_dense.count, "total_examples": total_examples(test)},
        "dense": {"accuracy": ev_dense.accuracy, "loss": ev_dense.loss, **profile(dense, example_input)},
        "pruned": {
            "accuracy": ev_pruned.accuracy,
            "loss": ev_pruned.loss,
            "agreement": agreement(ev_dense.predictions, ev_pruned.predictions),
            **profile(pruned, example_input),
        },
        "per_class": {"dense": ev_dense.per_class_accuracy, "pruned": ev_pruned.per_class_accuracy},
        "pie_examples": pie_examples(ev_dense.predictions, ev_pruned.predictions, ev_dense.labels),
        "counting_note": COUNTING_NOTE,
    }
    if corruptions:
        out["corruption_severity"] = corruption_severity
        for name, model in (("dense", dense), ("pruned", pruned)):
            out[name]["corruption_accuracy"] = corruption_accuracy(model, test, corruptions, corruption_severity,
                                                                   progress=progress, label=f"corrupted: {name}")
        out["corruption_summary"] = corruption_summary(out["dense"]["corruption_accuracy"], out["pruned"]["corruption_accuracy"])
    out["compression_ratio"] = out["dense"]["params"] / max(1, out["pruned"]["nonzero_params"])
    out["theoretical_speedup"] = out["dense"]["macs"] / max(1, out["pruned"]["effective_macs"])
    if latency_batch_size:
        (batch,) = batched((example_input,), latency_batch_size)
        # time what a user would deploy: masks and other parametrizations made permanent
        models = {"dense": plain_copy(dense), "pruned": plain_copy(pruned)}
        if latency_runtime == "torch":
            timing = compare_latency(models, batch, warmup=3, repeats=latency_repeats, progress=progress, description="latency")
        else:
            timing = time_side_by_side(models, (batch,), latency_runtime, threads=torch.get_num_threads(), repeats=latency_repeats)
        out["dense"]["latency_ms"] = timing["dense"].median_ms
        out["pruned"]["latency_ms"] = timing["pruned"].median_ms
        out["latency_batch_size"] = latency_batch_size
        out["latency_runtime"] = latency_runtime
        out["measured_speedup"] = timing["dense"].median_ms / timing["pruned"].median_ms
    return out


def curve_prune_potential(curve: Iterable[dict[str, Any]], dense_accuracy: float, delta: float = 0.005) -> dict[str, Any]:
    """``{"delta", "methods": {method: largest fraction pruned within delta of dense on test, or None}}``
    from the run's curve rows (``method``, ``fraction_remaining``, ``accuracy``)."""
    curve = list(curve)
    methods = {}
    for method in dict.fromkeys(r["method"] for r in curve):
        sweep = [(1.0 - r["fraction_remaining"], {"test": r["accuracy"]}) for r in curve if r["method"] == method]
        methods[method] = prune_potential(sweep, {"test": dense_accuracy}, delta)["test"]
    return {"delta": delta, "methods": methods}


def total_examples(batches: Iterable[Any]) -> int | None:
    """Examples in the whole test set behind ``batches`` (a loader or :class:`FirstExamples`), if known."""
    if isinstance(batches, FirstExamples):
        return batches.total_examples
    size = getattr(batches, "dataset_size", None)
    return None if size is None else int(size)


def evaluation_note(evaluation: dict[str, Any]) -> str | None:
    """The summary note for an evaluation on part of the test set (``None`` for the whole of it)."""
    used, total = evaluation.get("examples"), evaluation.get("total_examples")
    if used is None or total is None or used >= total:
        return None
    return (f"evaluation used {used:,} of {total:,} test examples (evaluate.subset / evaluate.max_batches): "
            "accuracies are estimates on that part, not full test-set accuracy")


def layer_sparsity_rows(model: nn.Module, names: Iterable[str]) -> list[dict[str, Any]]:
    """Per-parameter ``{name, params, kept_fraction}`` rows for the report."""
    from prunekit.masks import effective_weight

    rows = []
    with torch.no_grad():
        for name in names:
            w = effective_weight(model, name)
            rows.append({"name": name, "params": w.numel(), "kept_fraction": float((w != 0).float().mean())})
    return rows
