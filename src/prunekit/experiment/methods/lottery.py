"""``method: lottery``: iterative magnitude pruning with reset/rewind, plus the chosen controls."""

from __future__ import annotations

from prunekit._settings import settings_of
from prunekit._io import load_safetensors
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.evaluation import layer_sparsity_rows
from prunekit.experiment.recipe import Recipe
from prunekit.masks import MaskSet
from prunekit.training.lottery import LotteryConfig, run_lottery
from prunekit.zoo import create_model


def lottery_config(recipe: Recipe) -> LotteryConfig:
    """The recipe's lottery settings; the initialisation seed is ``prune.seed`` if set, else the
    recipe's top-level ``seed`` (so ``seed=1`` alone reruns the whole experiment with another seed)."""
    spec = recipe.prune
    seed = spec.seed if "seed" in spec.model_fields_set else recipe.seed
    return settings_of(spec, LotteryConfig, train=recipe.train, seed=seed)


def run_lottery_method(ctx: RunContext) -> MethodResult:
    config = lottery_config(ctx.recipe)
    out = ctx.run.path / "lottery"
    spec_model = ctx.recipe.model

    def build():  # run_lottery seeds the RNG before each call (the controls use other seeds): do not reseed here
        return create_model(spec_model.name, ctx.data.num_classes, ctx.data.input_shape, **spec_model.kwargs).to(ctx.device)

    records = run_lottery(build, ctx.data.train, ctx.data.val, ctx.data.test, config, out, device=ctx.device, progress=ctx.progress)
    curve = []
    for rec in records:
        row = {"method": rec.kind, "round": rec.round, "fraction_remaining": rec.weights_remaining,
               "accuracy": rec.early_stop_test_accuracy, "final_accuracy": rec.test_accuracy, "early_stop_step": rec.early_stop_step}
        ctx.log(kind="round", **row)
        curve.append(row)
    for control in config.controls:  # controls share the dense round 0
        curve.insert(0, {**curve[0], "method": control})
    last = out / f"round_{config.rounds:02d}"
    model = ctx.new_model(config.seed)
    MaskSet.load(last / "masks.safetensors").attach(model)
    model.load_state_dict(load_safetensors(last / "ticket.safetensors"))
    return MethodResult(model=model, curve=curve, layers=layer_sparsity_rows(model, list(MaskSet.from_model(model))),
                        extra={"lottery_note": "accuracy = test accuracy at the iteration of minimum validation loss (early stopping), as in Frankle & Carbin"})
