"""``method: dst``: RigL or SET sparse training from a fresh initialisation (the dense model is the baseline)."""

from __future__ import annotations

from prunekit._settings import settings_of
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.evaluation import layer_sparsity_rows
from prunekit.masks import MaskSet
from prunekit.training import fit
from prunekit.training.dst import SET, DSTConfig, RigL


def run_dst(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    config = settings_of(spec, DSTConfig)
    trainer = (RigL if spec.algorithm == "rigl" else SET)(config)
    model = ctx.new_model()
    trainer.prepare(model)
    fit(model, ctx.data.train, spec.train, val=ctx.data.val, callbacks=[trainer, ctx.logger("dst", method=spec.algorithm)],
        checkpoint=ctx.run.checkpoint("dst-train"), device=ctx.device, progress=ctx.progress, description=f"{spec.algorithm} training")
    masks = MaskSet.from_model(model)
    name = f"{spec.algorithm.upper()} ({spec.distribution})"
    curve = [{"method": name, "round": 0, "fraction_remaining": 1.0, "accuracy": ctx.run.result("dense")["test_accuracy"]},
             {"method": name, "round": 1, "fraction_remaining": 1.0 - masks.sparsity(), "accuracy": ctx.test(model).accuracy}]
    return MethodResult(model=model, curve=curve, layers=layer_sparsity_rows(model, list(masks)),
                        extra={"dst_note": "dynamic sparse training starts from a fresh initialisation; round 0 is the separately trained dense model"})
