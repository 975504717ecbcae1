"""``method: structured``: remove channels/heads for real, one-shot or in prune → fine-tune steps.

Every step of every variant leaves ``structured/<variant>/step_NN/`` with the pruned architecture
(JSON spec), its weights (safetensors) and a record, so a restarted run skips finished steps and
resumes an interrupted fine-tuning from its checkpoint; a step with a damaged file is redone.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit._settings import settings_of
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.methods.search import searched_config
from prunekit.experiment.methods.stop import check_stop_data, stop_extra
from prunekit.experiment.method_sections import StructuredSection
from prunekit.training.sparsity import SparsityLearningConfig
from prunekit.importance import make_criterion
from prunekit.metrics import count_macs, count_parameters
from prunekit.deployment.latency_tables import measure_staircase
from prunekit.pruners.layer_staircases import layer_staircases
from prunekit.pruners.structured import StructuredConfig, StructuredPruner, layer_channels, pinned_channel_step
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.spec import architecture_spec
from prunekit.training import calibration_data, prune_finetune_structured
from prunekit.training.stopping import stop_summary

_ACTIVATION_CRITERIA = ("activation", "apoz")


def _label(criterion: str, allocation: str, learned: bool) -> str:
    return f"{criterion} ({allocation}{', after sparsity learning' if learned else ''})"


def prune_variant(ctx: RunContext, spec: StructuredSection, config: StructuredConfig, learn: SparsityLearningConfig | None,
                  folder: Path) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """Run the steps of one variant (resumably); returns the final model, one record per step and how it ended.

    Activation criteria score every step on the calibration batches of step 0. ``spec.stop`` is
    judged on the validation split; the records' accuracies are on the test split.
    """
    x = ctx.example_input()
    importance = None
    if config.importance in _ACTIVATION_CRITERIA:
        batches = calibration_data(ctx.data.train, 0, spec.calibration_batches, ctx.device)
        importance = make_criterion(config.importance, batches=[b[0] for b in batches], reduction=config.reduction, normalization=config.normalization)
    run = prune_finetune_structured(
        ctx.dense_model(), StructuredPruner(config, importance=importance), ctx.data.train, spec.finetune, example_inputs=x, val=ctx.data.val,
        calibration_batches=spec.calibration_batches, sparsity_learning=learn, checkpoint_dir=folder, rebuild=ctx.new_model, device=ctx.device,
        progress=ctx.progress, step_callbacks=lambda index: [ctx.logger("finetune", method=folder.name, round=index)],
        sparsity_callbacks=[ctx.logger("sparsity learning")], on_step_end=lambda r: ctx.log(kind="structured_step", method=folder.name, **asdict(r)),
        evaluate_fn=lambda model: ctx.test(model).accuracy, stop=spec.stop,
    )
    return run.model, [asdict(r) for r in run.steps], stop_summary(run)


def staircase_extra(config: StructuredConfig, dense: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The channel staircase the channel counts followed (runtime, step, timings of a probe conv and of the dense
    model's costliest distinct layers), for the report; a pinned step has no timings."""
    pinned = pinned_channel_step()
    target = config.runtime_target
    if pinned is not None:
        return {"staircase": {"runtime": target.name, "step": pinned, "pinned": True}}
    measured = measure_staircase(target.name, target.batch_size, target.threads)
    own = layer_staircases(DependencyGraph.build(dense, x), (x,), target, step=measured.step)
    return {"staircase": {"runtime": target.name, "batch_size": target.batch_size, "threads": target.threads, **asdict(measured), "layers": own},
            "staircase_note": f"channel counts follow the measured channel staircase of {target.name} (step {measured.step}, "
                              f"batch {target.batch_size}, {target.threads} thread(s))"}


def run_structured(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    base = settings_of(spec, StructuredConfig)
    dense = ctx.dense_model()
    x = ctx.example_input()
    dense_params, dense_macs = count_parameters(dense).params, count_macs(dense, x[:1]).dense
    dense_accuracy = ctx.run.result("dense")["test_accuracy"]
    check_stop_data(ctx, spec.stop)
    curve, final, stops, searched, kept = [], None, {}, {}, {}
    before = layer_channels(dense)
    for index, (criterion, allocation) in enumerate(spec.variants()):
        learn = spec.sparsity_learning if index == 0 else None
        name = _label(criterion, allocation, learn is not None)
        folder = ctx.run.path / "structured" / f"{criterion}-{allocation}{'-learned' if learn else ''}"
        if spec.search is not None and allocation == f"search-{spec.search.strategy}":
            config, searched = searched_config(ctx, spec.search, base.model_copy(update={"importance": criterion}), spec.calibration_batches)
        else:
            config = base.model_copy(update={"importance": criterion, "allocation": allocation})
        model, records, stops[name] = prune_variant(ctx, spec, config, learn, folder)
        widths = layer_channels(model)
        kept[name] = [widths.get(n, (k, c))[1] / c for n, (k, c) in before.items()]
        curve.append({"method": name, "round": 0, "fraction_remaining": 1.0, "accuracy": dense_accuracy, "macs_reduction": 1.0})
        curve += [{"method": name, "round": r["step"] + 1, "fraction_remaining": r["params"] / dense_params, "accuracy": r["accuracy"],
                   "macs_reduction": dense_macs / r["macs"], "accuracy_before_finetune": r["accuracy_before_finetune"]} for r in records]
        final = final or model
    after = layer_channels(final)
    layers = [{"name": n, "channels_before": c, "channels_after": after.get(n, (k, c))[1]} for n, (k, c) in before.items()]
    extra = {"structured_note": "weights remaining = parameters of the pruned (physically smaller) model / dense parameters"}
    if spec.sparsity_learning is not None:
        extra["sparsity_learning"] = spec.sparsity_learning.model_dump(mode="json")
    if spec.stop is not None:
        extra.update(stop_extra(spec.stop, stops, "step"))
    extra.update(searched)
    if len(kept) > 1:  # the allocations side by side (e.g. searched vs uniform vs global), for the report
        extra["allocations"] = {"layers": list(before), "kept_fraction": kept}
    if base.round_to == "auto" or base.latency_target:
        extra.update(staircase_extra(base, dense, x[:1]))
    return MethodResult(model=final, curve=curve, layers=layers, extra=extra, architecture=architecture_spec(final))
