"""``method: depth``: remove whole residual blocks by importance, then fine-tune (the criterion and each baseline).

Pruning is deterministic given the dense model and the calibration batches, so a restarted run
prunes again and resumes the fine-tuning from its checkpoint (``depth-<criterion>-train``).
"""

from __future__ import annotations

import torch

from prunekit._settings import settings_of
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.metrics import count_macs, count_parameters
from prunekit.pruners.depth import DepthConfig, DepthResult, prune_depth
from prunekit.structured.spec import architecture_spec
from prunekit.training import calibration_data, fit


def run_depth(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    base = settings_of(spec, DepthConfig)
    x = ctx.example_input()[:1]
    dense = ctx.dense_model()
    dense_macs, dense_params = count_macs(dense, x).dense, count_parameters(dense).params
    dense_accuracy = ctx.run.result("dense")["test_accuracy"]
    calibration = torch.cat([b[0] for b in calibration_data(ctx.data.train, 0, spec.calibration_batches, ctx.device)])
    curve, final, first = [], None, None
    for criterion in spec.variants():
        label = f"depth {criterion}"
        model = ctx.dense_model()
        result: DepthResult = prune_depth(model, calibration, base.model_copy(update={"importance": criterion}))
        pruned_accuracy = ctx.test(model).accuracy
        fit(model, ctx.data.train, spec.finetune, val=ctx.data.val, callbacks=[ctx.logger("finetune", method=label)],
            checkpoint=ctx.run.checkpoint(f"depth-{criterion}-train"), device=ctx.device, progress=ctx.progress, description=f"fine-tune {label}")
        row = {"method": label, "round": 1, "fraction_remaining": result.params_after / dense_params, "accuracy": ctx.test(model).accuracy,
               "macs_reduction": dense_macs / max(1, count_macs(model, x).dense), "accuracy_before_finetune": pruned_accuracy}
        ctx.log(kind="depth", removed=result.removed, **row)
        curve += [{"method": label, "round": 0, "fraction_remaining": 1.0, "accuracy": dense_accuracy, "macs_reduction": 1.0}, row]
        if final is None:
            final, first = model, result
    assert final is not None and first is not None
    layers = [{"name": n, "importance": s, "macs": first.block_macs[n], "removed": n in first.removed} for n, s in first.importance.items()]
    extra = {"depth_removed": first.removed, "depth_not_removable": first.not_removable,
             "depth_note": "removed blocks are replaced by their post-activation (or nn.Identity); weights remaining = parameters after / dense"}
    return MethodResult(model=final, curve=curve, layers=layers, extra=extra, architecture=architecture_spec(final))
