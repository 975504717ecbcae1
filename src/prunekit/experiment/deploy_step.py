"""The deploy step: sparse CPU execution where measured faster, timed against the dense-with-zeros model."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from prunekit._parametrize import plain_copy
from prunekit.deployment import DeployConfig, deploy
from prunekit.experiment.context import RunContext
from prunekit.experiment.recipe import DeploySection
from prunekit.metrics import compare_latency
from prunekit.metrics._inputs import batched

log = logging.getLogger(__name__)


def deploy_step(ctx: RunContext, pruned: nn.Module, section: DeploySection) -> dict[str, Any]:
    """Convert eligible layers, then time the deployed model against the stripped pruned model."""
    run = ctx.run
    saved = run.reuse("deploy", dict)
    if saved is not None:
        return saved
    example = ctx.example_input().cpu()
    (batch,) = batched((example,), section.batch_size)
    model = plain_copy(pruned).cpu()
    fast, report = deploy(model, batch, DeployConfig(**section.model_dump(exclude={"batch_size"})))
    log.info("deploy: %d of %d eligible layers run sparse", len(report.converted), len(report.layers))
    with torch.inference_mode():
        timing = compare_latency({"dense kernels": model, "deployed": fast}, batch, warmup=3, repeats=ctx.recipe.evaluate.latency_repeats,
                                 progress=ctx.progress, description="deploy latency")
    result = {
        **report.to_dict(),
        "batch_size": section.batch_size,
        "latency_ms": {k: v.median_ms for k, v in timing.items()},
        "speedup": timing["dense kernels"].median_ms / timing["deployed"].median_ms,
        "test_accuracy": ctx.test(fast.to(ctx.device), "test: deployed").accuracy,
    }
    run.mark_done("deploy", result)
    return result
