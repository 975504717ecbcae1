"""``method: nm``: N:M masks (optionally after channel permutation), fine-tuned with the masks fixed."""

from __future__ import annotations

from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.evaluation import layer_sparsity_rows
from prunekit.masks import MaskSet
from prunekit.pruners import UnstructuredConfig, prune_nm, prune_unstructured
from prunekit.training import fit


def run_nm(ctx: RunContext) -> MethodResult:
    spec = ctx.recipe.prune
    main = "nm_permuted" if spec.permute else "nm_plain"
    labels = {"nm_permuted": f"{spec.n}:{spec.m} (permuted)", "nm_plain": f"{spec.n}:{spec.m}",
              "unstructured": f"unstructured {100 * (1 - spec.n / spec.m):.0f}% (layer)"}
    dense_accuracy = ctx.run.result("dense")["test_accuracy"]
    curve, final = [], None
    for variant in dict.fromkeys((main, *spec.baselines)):
        model = ctx.dense_model()
        if variant == "unstructured":
            prune_unstructured(model, UnstructuredConfig(sparsity=1 - spec.n / spec.m, scope="layer", include=spec.include, exclude=spec.exclude))
        else:
            permute = variant == "nm_permuted"
            prune_nm(model, spec.n, spec.m, permute=permute, include=spec.include, exclude=spec.exclude, seed=ctx.recipe.seed,
                     example_inputs=ctx.example_input() if permute else None)
        pruned_accuracy = ctx.test(model).accuracy
        fit(model, ctx.data.train, spec.finetune, val=ctx.data.val, callbacks=[ctx.logger("finetune", method=labels[variant])],
            checkpoint=ctx.run.checkpoint(f"nm-{variant}-train"), device=ctx.device, progress=ctx.progress, description=f"fine-tune {labels[variant]}")
        masks = MaskSet.from_model(model)
        row = {"method": labels[variant], "round": 1, "fraction_remaining": 1 - masks.sparsity(), "accuracy": ctx.test(model).accuracy,
               "accuracy_before_finetune": pruned_accuracy}
        ctx.log(kind="round", **row)
        curve += [{"method": labels[variant], "round": 0, "fraction_remaining": 1.0, "accuracy": dense_accuracy}, row]
        final = final or model
    names = list(MaskSet.from_model(final))
    return MethodResult(model=final, curve=curve, layers=layer_sparsity_rows(final, names),
                        extra={"nm_note": "N:M sparsity needs sparse tensor-core kernels (CUDA) to run faster; on CPU there is no 2:4 kernel and the model runs dense-with-zeros"})
