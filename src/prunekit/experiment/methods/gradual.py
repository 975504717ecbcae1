"""``method: gradual``: masks follow a sparsity schedule while the dense model keeps training."""

from __future__ import annotations

from prunekit._settings import settings_of
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.evaluation import layer_sparsity_rows
from prunekit.masks import MaskSet
from prunekit.pruners.unstructured import UnstructuredConfig
from prunekit.schedules import build_schedule
from prunekit.training import fit
from prunekit.training.pruning_callbacks import GradualPruning


def run_gradual(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    config = settings_of(spec, UnstructuredConfig)
    model = ctx.dense_model()
    pruning = GradualPruning(config, build_schedule(spec.schedule))
    pruning.prepare(model)
    fit(model, ctx.data.train, spec.train, val=ctx.data.val, callbacks=[pruning, ctx.logger("gradual")],
        checkpoint=ctx.run.checkpoint("gradual-train"), device=ctx.device, progress=ctx.progress, description="gradual pruning")
    masks = MaskSet.from_model(model)
    name = f"{spec.criterion} ({spec.scope}, gradual)"
    curve = [
        {"method": name, "round": 0, "fraction_remaining": 1.0, "accuracy": ctx.run.result("dense")["test_accuracy"]},
        {"method": name, "round": 1, "fraction_remaining": 1.0 - masks.sparsity(), "accuracy": ctx.test(model).accuracy},
    ]
    return MethodResult(model=model, curve=curve, layers=layer_sparsity_rows(model, list(masks)))
