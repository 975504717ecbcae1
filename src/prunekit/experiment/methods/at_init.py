"""``method: at_init``: prune a fresh initialisation (SNIP, SynFlow, ...) and each baseline, then train
each sparse net with the recipe's ``train`` (masks fixed); the dense model is the baseline."""

from __future__ import annotations

import itertools

from prunekit._settings import settings_of
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.evaluation import layer_sparsity_rows
from prunekit.masks import MaskSet
from prunekit.pruners.at_init import SAME_DENSITY, AtInitConfig, prune_at_init, random_masks_like, reinitialize
from prunekit.training import fit


def label(variant: str, main: str) -> str:
    return f"random ({main}'s layer densities, at init)" if variant == SAME_DENSITY else f"{variant} (at init)"


def run_at_init(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    config = settings_of(spec, AtInitConfig)
    batches = list(itertools.islice(ctx.data.train, config.batches))  # every variant scores the same batches
    dense_accuracy = ctx.run.result("dense")["test_accuracy"]
    curve, final, main_masks = [], None, None
    for variant in spec.variants():
        name = label(variant, config.criterion)
        model = reinitialize(ctx.new_model(), spec.init, config.include, config.exclude)
        if variant == SAME_DENSITY:
            assert main_masks is not None  # the main criterion comes first
            masks = random_masks_like(main_masks, config.seed)
            masks.attach(model)
        else:
            masks = prune_at_init(model, config.model_copy(update={"criterion": variant}), batches)
        if main_masks is None:
            main_masks = masks
        fit(model, ctx.data.train, ctx.recipe.train, val=ctx.data.val, callbacks=[ctx.logger("at_init", method=name)],
            checkpoint=ctx.run.checkpoint(f"at-init-{variant}"), device=ctx.device, progress=ctx.progress, description=f"{name} training")
        accuracy = ctx.test(model).accuracy
        row = {"method": name, "round": 1, "fraction_remaining": 1.0 - masks.sparsity(), "accuracy": accuracy}
        ctx.log(kind="round", **row)
        curve += [{"method": name, "round": 0, "fraction_remaining": 1.0, "accuracy": dense_accuracy}, row]
        if final is None:
            final = model
    assert final is not None
    return MethodResult(model=final, curve=curve, layers=layer_sparsity_rows(final, list(MaskSet.from_model(final))),
                        extra={"at_init_note": "each sparse net is pruned before training from a fresh initialisation and trained with the "
                                               "recipe's train budget; round 0 is the separately trained dense model"})
