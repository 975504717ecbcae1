"""The compress step: Deep Compression of the pruned model, verified by decompressing it again."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunekit._parametrize import plain_copy
from prunekit.compression import CompressionConfig, attach_weight_sharing, compress_model, load_compressed_into, share_weights
from prunekit.errors import CheckpointError
from prunekit.experiment.artifacts import build_model
from prunekit.experiment.context import RunContext
from prunekit.experiment.recipe import CompressSection
from prunekit.metrics.size import effective_parameters
from prunekit.structured.spec import architecture_spec
from prunekit.training import distributed, fit

log = logging.getLogger(__name__)


def compress_step(ctx: RunContext, pruned: nn.Module, section: CompressSection, name: str = "compressed") -> dict[str, Any]:
    """Quantize (and fine-tune centroids), write ``<name>.pkdc``, decompress it and check that the
    weights are bit-identical and the accuracy equals the in-memory quantized model's.

    ``name`` lets one run hold several compressions (the recipe's is ``compressed``)."""
    run = ctx.run
    step = "compress" if name == "compressed" else f"compress-{name}"
    saved = run.reuse(step, dict)
    if saved is not None:
        return saved
    log.info("compress: weight sharing (conv %d bits, fc %d bits)%s", section.conv_bits, section.fc_bits,
             ", fine-tuning centroids" if section.finetune else "")
    spec = CompressionConfig(**section.model_dump(exclude={"finetune"}))
    model = plain_copy(pruned)
    if section.finetune is not None:
        handle = attach_weight_sharing(model, spec)
        fit(model, ctx.data.train, section.finetune, val=ctx.data.val, callbacks=[ctx.logger("centroid fine-tuning")],
            checkpoint=run.checkpoint(f"{step}-finetune"), device=ctx.device, progress=ctx.progress,
            description="centroid fine-tuning")
        quantization = handle.strip()
    else:
        quantization = share_weights(model, spec, apply=True)
    if not distributed.is_main_process():
        return {}  # under torchrun the other ranks only help fine-tune; rank 0 writes and checks the file
    if spec.extras_precision == "float16":  # the model then holds what the file will: its other tensors rounded
        _round_extras_(model, quantization.layers)
    quantized_eval = ctx.test(model, "test: quantized")
    path = run.path / f"{name}.pkdc"
    report = compress_model(model, path, spec, quantization, metadata={"run": run.id})
    # a fresh model of the pruned architecture (channels or blocks removed), filled only from the file
    restored = build_model({**ctx.description, "architecture": architecture_spec(model)}).to(ctx.device)
    load_compressed_into(restored, path)
    expected, got = effective_parameters(model), effective_parameters(restored)
    if any(not torch.equal(expected[k], got[k]) for k in expected):
        raise CheckpointError(f"{path}: decompressed weights differ from the quantized model")
    restored_eval = ctx.test(restored, "test: decompressed")
    result = {
        **report.to_dict(),
        "dense_float32_bytes": 4 * sum(p.numel() for p in effective_parameters(ctx.dense_model()).values()),
        "accuracy_quantized": quantized_eval.accuracy,
        "accuracy_decompressed": restored_eval.accuracy,
        "bit_identical": True,
        "predictions_identical": bool(torch.equal(quantized_eval.predictions, restored_eval.predictions)),
    }
    result["ratio_vs_dense_float32"] = result["dense_float32_bytes"] / result["file_bytes"]
    run.mark_done(step, result)
    return result


def _round_extras_(model: nn.Module, quantized: Mapping[str, Any]) -> None:
    """Round the floating tensors that are not weight-shared to float16, in place."""
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name not in quantized and tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.float16).to(tensor.dtype))
