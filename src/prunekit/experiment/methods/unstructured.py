"""``method: unstructured``: prune → fine-tune rounds for the chosen criterion and each baseline
(each ended early by ``stop`` when the recipe sets one; it is judged on the validation split)."""

from __future__ import annotations

from prunekit._settings import settings_of
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.evaluation import layer_sparsity_rows
from prunekit.experiment.methods.stop import check_stop_data, stop_extra
from prunekit.masks import MaskSet
from prunekit.pruners.unstructured import UnstructuredConfig
from prunekit.schedules import OneShot, build_schedule
from prunekit.training.prune_finetune import load_round, prune_finetune
from prunekit.training.stopping import stop_summary


def label(criterion: str, scope: str) -> str:
    return f"{criterion} ({scope})"


def run_unstructured(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    schedule = build_schedule(spec.schedule) if spec.schedule else OneShot(sparsity=spec.sparsity)
    base = settings_of(spec, UnstructuredConfig)
    dense_accuracy = ctx.run.result("dense")["test_accuracy"]
    check_stop_data(ctx, spec.stop)
    curve, final, stops = [], None, {}
    for criterion, scope in spec.variants():
        name = label(criterion, scope)
        rounds_dir = ctx.run.path / "rounds" / f"{criterion}-{scope}"
        model = ctx.dense_model()
        records = prune_finetune(
            model, ctx.data.train, base.model_copy(update={"criterion": criterion, "scope": scope}), schedule, spec.finetune,
            val=ctx.data.val, checkpoint_dir=rounds_dir, device=ctx.device, progress=ctx.progress,
            round_callbacks=lambda i, n=name: [ctx.logger("finetune", method=n, round=i)],
            stop=spec.stop, example_inputs=ctx.example_input() if spec.stop is not None else None,
        )
        stops[name] = stop_summary(records)
        curve.append({"method": name, "round": 0, "fraction_remaining": 1.0, "accuracy": dense_accuracy})
        for record in records:
            round_model = load_round(ctx.dense_model(), rounds_dir / f"round_{record.round:03d}")
            accuracy = ctx.test(round_model).accuracy
            row = {"method": name, "round": record.round + 1, "fraction_remaining": 1.0 - record.sparsity, "accuracy": accuracy}
            ctx.log(kind="round", **row)
            curve.append(row)
        if final is None:  # the main method comes first
            final = model
    assert final is not None
    names = list(MaskSet.from_model(final))
    extra = stop_extra(spec.stop, stops, "round") if spec.stop is not None else {}
    return MethodResult(model=final, curve=curve, layers=layer_sparsity_rows(final, names), extra=extra)
