"""``method: dynamic``: input-dependent channel gates (FBS style), optionally after static structured pruning.

The dense model (or its statically pruned copy, ``prune.static``) gets one gate per gateable group
and is fine-tuned with the budget loss; its checkpoint ``dynamic-train`` resumes an interrupted
fine-tuning (static pruning is deterministic, so a restart prunes again). The report gets the
per-group gate rates (``layers``), the MACs per test input (mean, histogram) and the skip path's
batch-1 latency beside the dense model's (``extra["dynamic"]``, copied into ``summary.json``).
"""

from __future__ import annotations


from torch import nn

from prunekit import dynamic as dyn
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.metrics import compare_latency, count_macs
from prunekit.pruners.structured import prune_structured
from prunekit.structured.spec import architecture_spec
from prunekit.training import fit


def run_dynamic(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    x = ctx.example_input()[:1]
    dense = ctx.dense_model()
    dense_macs = count_macs(dense, x).dense
    base: nn.Module = ctx.dense_model()
    label = "dynamic" if spec.static is None else "static+dynamic"
    architecture = None
    if spec.static is not None:
        prune_structured(base, x, spec.static)
        architecture = architecture_spec(base)
    gated = dyn.add_gates(base, x, density=spec.density, groups=spec.groups, copy_model=False)
    before = ctx.test(gated).accuracy
    fit(gated, ctx.data.train, spec.finetune, val=ctx.data.val, callbacks=[dyn.GateBudgetLoss(gated, spec.budget_weight), ctx.logger("finetune", method=label)],
        checkpoint=ctx.run.checkpoint("dynamic-train"), device=ctx.device, progress=ctx.progress, description=f"fine-tune {label}")
    gated.eval()
    stats = dyn.gate_stats(gated, ctx.test_batches(), device=ctx.device)
    accuracy = ctx.test(gated).accuracy
    timing = compare_latency({"dense": dense.cpu(), "skip path": dyn.skip_path(gated.cpu())}, (x.cpu(),), warmup=3, repeats=20)
    gated.to(ctx.device)
    row = {"method": label, "round": 1, "fraction_remaining": 1.0, "accuracy": accuracy, "macs_reduction": dense_macs / stats.mean_macs,
           "accuracy_before_finetune": before}
    dense_accuracy = ctx.run.result("dense")["test_accuracy"]
    curve = [{"method": label, "round": 0, "fraction_remaining": 1.0, "accuracy": dense_accuracy, "macs_reduction": 1.0}, row]
    ctx.log(kind="dynamic", **row)
    layers = [{"name": r.name, "channels": r.channels, "gate_rate": r.mean, "gate_rate_min": r.min, "gate_rate_max": r.max} for r in stats.rates]
    summary = {**stats.to_dict(), "density": spec.density, "static": None if spec.static is None else spec.static.model_dump(mode="json", exclude_defaults=True),
               "dense_macs_of_unpruned": dense_macs, "latency_b1_ms": {k: v.median_ms for k, v in timing.items()}}
    extra = {"dynamic": summary, "gated": gated.description(),
             "dynamic_note": f"dynamic gates: {len(gated.sites)} groups at density {spec.density}; mean effective MACs per input "
                             f"{stats.mean_macs / 1e6:.2f}M ({summary['macs_reduction']:.2f}x fewer than the gated model's dense count); "
                             f"the summary's latency is the masked dense forward, the skip path's batch-1 latency is "
                             f"{timing['skip path'].median_ms:.2f} ms vs dense {timing['dense'].median_ms:.2f} ms"}
    return MethodResult(model=gated, curve=curve, layers=layers, extra=extra, architecture=architecture)
