"""``method: structured``: remove channels/heads for real, one-shot or in prune → fine-tune steps.

Every step of every variant leaves ``structured/<variant>/step_NN/`` with the pruned architecture
(JSON spec), its weights (safetensors) and a record, so a restarted run skips finished steps and
resumes an interrupted fine-tuning from its checkpoint; a step with a damaged file is redone.
"""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from prunekit._io import read_json, write_json
from prunekit.errors import CheckpointError
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.methods import METHODS
from prunekit.experiment.recipe import SparsityLearning, StructuredMethod
from prunekit.importance import SquaredGradients, make_criterion
from prunekit.metrics import count_macs, count_parameters
from prunekit.pruners.structured import StructuredConfig, StructuredPruner, layer_channels
from prunekit.structured import DependencyGraph
from prunekit.structured.regularizers import apply_bn_l1_grad_, group_lasso_penalty
from prunekit.structured.spec import architecture_spec, load_pruned, save_pruned
from prunekit.training import Callback, Trainer, fit

log = logging.getLogger(__name__)

_ACTIVATION_CRITERIA = ("activation", "apoz")


class SparsityPenalty(Callback):
    """Network slimming (L1 subgradient on BN scales) or group lasso (a penalty on channel groups)."""

    def __init__(self, settings: SparsityLearning, groups: list[Any]) -> None:
        self.settings = settings
        self.groups = groups

    def loss_penalty(self, trainer: Trainer) -> torch.Tensor | None:
        if self.settings.kind == "group_lasso":
            return group_lasso_penalty(trainer.model, self.groups, self.settings.lam)
        return None

    def after_backward(self, trainer: Trainer) -> None:
        if self.settings.kind == "bn_l1":
            apply_bn_l1_grad_(trainer.model, self.settings.lam)


def _label(criterion: str, allocation: str, learned: bool) -> str:
    return f"{criterion} ({allocation}{', after sparsity learning' if learned else ''})"


def _calibration(ctx: RunContext, step: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` training batches, the same ones for a given step in every run."""
    loader = ctx.data.train
    loader.set_epoch(10_000 + step)
    return [(x.to(ctx.device), y.to(ctx.device)) for x, y in islice(iter(loader), n)]


def _gradient_statistics(model: nn.Module, criterion: str, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
    """Fill ``.grad`` (taylor) or return mean squared gradients (hessian) over ``batches``, in eval mode."""
    if criterion not in ("taylor", "hessian"):
        return None
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        if criterion == "taylor":
            for x, y in batches:
                (F.cross_entropy(model(x), y) / len(batches)).backward()
            return None
        with SquaredGradients(model) as squared:
            for x, y in batches:
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
        return squared.mean()
    finally:
        model.train(was_training)


def _learn_sparsity(ctx: RunContext, model: nn.Module, settings: SparsityLearning, folder: Path) -> None:
    groups = DependencyGraph.build(model, (ctx.example_input(),)).prunable_groups() if settings.kind == "group_lasso" else []
    fit(model, ctx.data.train, settings.train, val=ctx.data.val, callbacks=[SparsityPenalty(settings, groups), ctx.logger("sparsity learning")],
        checkpoint=folder / "sparsity_learning.safetensors", device=ctx.device, progress=ctx.progress, description=f"sparsity learning ({settings.kind})")


def prune_variant(ctx: RunContext, spec: StructuredMethod, config: StructuredConfig, learn: SparsityLearning | None, folder: Path) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Run all steps of one variant (resumably); returns the final model and one record per step."""
    x = ctx.example_input()
    model = ctx.dense_model()
    if learn is not None:
        _learn_sparsity(ctx, model, learn, folder)
    batches = _calibration(ctx, 0, spec.calibration_batches)
    importance = make_criterion(config.importance, batches=[b[0] for b in batches], reduction=config.reduction,
                                normalization=config.normalization) if config.importance in _ACTIVATION_CRITERIA else None
    pruner = StructuredPruner(config, importance=importance)
    pruner.anchor(model, x)
    records: list[dict[str, Any]] = []
    for index, fraction in enumerate(pruner.schedule()):
        step_dir = folder / f"step_{index:02d}"
        finished = _finished_step(ctx, step_dir)
        if finished is not None:
            record, model = finished
            records.append(record)
            continue
        squared = _gradient_statistics(model, config.importance, _calibration(ctx, index, spec.calibration_batches))
        result = pruner.step(model, x, fraction, squared_grads=squared)
        model.zero_grad(set_to_none=True)
        accuracy_pruned = ctx.test(model).accuracy
        fit(model, ctx.data.train, spec.finetune, val=ctx.data.val, callbacks=[ctx.logger("finetune", method=folder.name, round=index)],
            checkpoint=step_dir / "train.safetensors", device=ctx.device, progress=ctx.progress, description=f"fine-tune step {index}")
        save_pruned(model, step_dir)
        record = {"step": index, "fraction_of_target": fraction, "macs": result.macs_after, "params": result.params_after,
                  "accuracy_before_finetune": accuracy_pruned, "accuracy": ctx.test(model).accuracy}
        write_json(step_dir / "record.json", record)
        ctx.log(kind="structured_step", method=folder.name, **record)
        records.append(record)
    return model, records


def _finished_step(ctx: RunContext, step_dir: Path) -> tuple[dict[str, Any], nn.Module] | None:
    """A finished step's record and pruned model; ``None`` if the step has not run or a file of it is
    damaged (a warning names the file, and the step is redone)."""
    if not (step_dir / "record.json").exists():
        return None
    try:
        return read_json(step_dir / "record.json", "structured step record"), load_pruned(ctx.new_model, step_dir).to(ctx.device)
    except CheckpointError as exc:
        log.warning("%s; redoing %s", exc, step_dir)
        return None


@METHODS.register("structured")
def run_structured(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    base = StructuredConfig(**spec.model_dump(include=set(StructuredConfig.model_fields)))
    dense = ctx.dense_model()
    x = ctx.example_input()
    dense_params, dense_macs = count_parameters(dense).params, count_macs(dense, x[:1]).dense
    dense_accuracy = ctx.run.result("dense")["test_accuracy"]
    curve, final = [], None
    for index, (criterion, allocation) in enumerate(spec.variants()):
        learn = spec.sparsity_learning if index == 0 else None
        name = _label(criterion, allocation, learn is not None)
        folder = ctx.run.path / "structured" / f"{criterion}-{allocation}{'-learned' if learn else ''}"
        model, records = prune_variant(ctx, spec, base.model_copy(update={"importance": criterion, "allocation": allocation}), learn, folder)
        curve.append({"method": name, "round": 0, "fraction_remaining": 1.0, "accuracy": dense_accuracy, "macs_reduction": 1.0})
        curve += [{"method": name, "round": r["step"] + 1, "fraction_remaining": r["params"] / dense_params, "accuracy": r["accuracy"],
                   "macs_reduction": dense_macs / r["macs"], "accuracy_before_finetune": r["accuracy_before_finetune"]} for r in records]
        final = final or model
    before, after = layer_channels(dense), layer_channels(final)
    layers = [{"name": n, "channels_before": c, "channels_after": after.get(n, (k, c))[1]} for n, (k, c) in before.items()]
    extra = {"structured_note": "weights remaining = parameters of the pruned (physically smaller) model / dense parameters"}
    if spec.sparsity_learning is not None:
        extra["sparsity_learning"] = spec.sparsity_learning.model_dump(mode="json")
    return MethodResult(model=final, curve=curve, layers=layers, extra=extra, architecture=architecture_spec(final))
