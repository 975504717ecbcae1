"""The export step: ONNX (validated in onnxruntime, timed) and optional int8 post-training quantization."""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit._parametrize import plain_copy
from prunekit.deployment import evaluate_onnx, export_onnx, quantize_int8
from prunekit.deployment.onnx_export import OnnxRunner
from prunekit.experiment.context import RunContext
from prunekit.experiment.evaluation import total_examples
from prunekit.experiment.recipe import ExportSection
from prunekit.metrics import Evaluation, compare_latency
from prunekit.metrics._inputs import batched

log = logging.getLogger(__name__)


def export_step(ctx: RunContext, pruned: nn.Module, section: ExportSection) -> dict[str, Any]:
    """Write ``export/model.onnx`` (and ``export/model.int8.onnx``) with accuracy, size and latency."""
    run = ctx.run
    saved = run.reuse("export", dict)
    if saved is not None:
        return saved
    folder = run.path / "export"
    model = plain_copy(pruned).cpu()
    example = ctx.example_input().cpu()
    log.info("export: ONNX%s", " + int8" if section.int8 else "")
    exported = export_onnx(model, example, folder / "model.onnx")
    result: dict[str, Any] = {
        "onnx": {"path": "export/model.onnx", "bytes": (folder / "model.onnx").stat().st_size,
                 "max_abs_error": exported.max_abs_error, "accuracy": None},
    }
    checked = _evaluate(ctx, section, folder / "model.onnx", "onnx accuracy")
    if checked is not None:
        result["onnx"]["accuracy"] = checked.accuracy
        result["evaluation"] = {"examples": checked.count, "total_examples": total_examples(ctx.test_batches())}
    candidates = {"torch eager": model, "onnxruntime": OnnxRunner(folder / "model.onnx")}
    if section.int8:
        calibration = [x for x, _ in islice(iter(ctx.data.train), section.calibration_batches)]
        int8 = quantize_int8(folder / "model.onnx", folder / "model.int8.onnx", calibration=calibration, mode=section.int8_mode,
                             progress=ctx.progress)
        result["int8"] = {"path": "export/model.int8.onnx", "bytes": int8.int8_bytes, "float_bytes": int8.float_bytes,
                          "accuracy": None, "mode": section.int8_mode}
        checked = _evaluate(ctx, section, folder / "model.int8.onnx", "int8 accuracy")
        if checked is not None:
            result["int8"]["accuracy"] = checked.accuracy
        candidates["onnxruntime int8"] = OnnxRunner(folder / "model.int8.onnx")
    (batch,) = batched((example,), section.latency_batch_size)
    with torch.inference_mode():
        timing = compare_latency(candidates, batch, warmup=3, repeats=ctx.recipe.evaluate.latency_repeats, progress=ctx.progress,
                                 description="export latency")
    result["latency_ms"] = {name: t.median_ms for name, t in timing.items()}
    result["latency_batch_size"] = section.latency_batch_size
    run.mark_done("export", result)
    return result


def _evaluate(ctx: RunContext, section: ExportSection, path: Path, description: str) -> Evaluation | None:
    """An exported model's test accuracy on the run's test batches (``None`` when ``export.accuracy`` is off)."""
    if not section.accuracy:
        return None
    return evaluate_onnx(path, ctx.test_batches(), ctx.data.num_classes, progress=ctx.progress, description=description)
