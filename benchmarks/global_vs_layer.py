"""Global vs layer-wise magnitude pruning vs random pruning at 2x-32x compression, mean ± std over 3 seeds.

    python benchmarks/global_vs_layer.py [--models lenet_300_100 conv2] [--seeds 0 1 2]

For each model and seed, one dense model is trained (cached); then, for each compression ratio
(2, 4, 8, 16, 32x fewer prunable weights), the shipped recipe ``magnitude_scopes`` prunes it one-shot
with global magnitude, layer-wise magnitude and layer-wise random pruning, and fine-tunes each with
the same budget. Reported: test accuracy (mean ± std over seeds) per method and ratio.
LeNet-300-100 uses all of MNIST (20 dense epochs, 3 fine-tuning epochs). Conv-2 trains on a fixed
10,000-image subset of CIFAR-10 (15 dense epochs, 2 fine-tuning epochs) to fit a 2-core CPU
budget; its test accuracy is on the full 10,000-image test set.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.report import plots
from prunekit.report.tables import Table
from prunekit.training import LRScheduleConfig, OptimizerConfig, TrainConfig

RATIOS = (2, 4, 8, 16, 32)
SETUPS = {
    "lenet_300_100": {"dataset": "mnist", "subset": None,
                      "dense": TrainConfig(epochs=20, optimizer=OptimizerConfig(lr=0.1, nesterov=True, weight_decay=5e-4), lr_schedule=LRScheduleConfig(name="cosine")),
                      "overrides": []},
    "conv2": {"dataset": "cifar10", "subset": 10000,
              "dense": TrainConfig(epochs=15, optimizer=OptimizerConfig(lr=0.05, nesterov=True, weight_decay=5e-4), lr_schedule=LRScheduleConfig(name="onecycle", pct_start=0.2)),
              "overrides": ["model.name=conv2", "data.name=cifar10", "data.subset=10000", "prune.finetune.epochs=2", "prune.finetune.optimizer.lr=0.005"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(SETUPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    setup_logging()
    results: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    dense_acc: dict[str, list[float]] = defaultdict(list)
    for model in args.models:
        setup = SETUPS[model]
        for seed in args.seeds:
            _, record = dense_checkpoint(model, setup["dataset"], setup["dense"], seed=seed, subset=setup["subset"], progress=False)
            weights = WORK / f"{record['key']}.safetensors"
            dense_acc[model].append(record["test_accuracy"])
            for ratio in RATIOS:
                overrides = [*setup["overrides"], f"seed={seed}", f"model.checkpoint={weights}", f"prune.sparsity={1 - 1 / ratio}",
                             f"data.root={data_root()}", f"name=scopes-{model}"]
                run = run_recipe(load_recipe("magnitude_scopes", overrides), WORK / "runs", progress=False)
                summary = json.loads((run / "summary.json").read_text())
                for row in summary["curve"]:
                    if row["round"] == 1:
                        results[model][row["method"]][ratio].append(row["accuracy"])
    payload, tables = {"ratios": RATIOS, "seeds": args.seeds, "models": {}}, []
    for model, methods in results.items():
        rows, curve = [], []
        for method, by_ratio in methods.items():
            cells = []
            for ratio in RATIOS:
                accs = by_ratio[ratio]
                mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
                cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}")
                curve.append({"method": method, "fraction_remaining": 1 / ratio, "accuracy": mean, "accuracy_std": std})
            rows.append([method, *cells])
        dense_mean = statistics.mean(dense_acc[model])
        rows.insert(0, ["dense", *[f"{100 * dense_mean:.2f} ± {100 * (statistics.stdev(dense_acc[model]) if len(dense_acc[model]) > 1 else 0):.2f}"] * len(RATIOS)])
        payload["models"][model] = {"dense": dense_acc[model], "methods": {m: {str(r): v for r, v in d.items()} for m, d in methods.items()}}
        tables.append(Table(f"{model} on {SETUPS[model]['dataset']}: test accuracy (%) by compression of prunable weights",
                            ["method", *[f"{r}×" for r in RATIOS]], rows))
        plots.save_png(plots.accuracy_vs_remaining(curve, dense_mean, f"{model}: global vs layer-wise vs random"), str(RESULTS / f"global_vs_layer_{model}.png"))
    images = "\n".join(f"![{m}](global_vs_layer_{m}.png)" for m in results)
    write_results("global_vs_layer", payload, tables, preamble=__doc__.split("\n\n", 1)[1] + "\n" + images + "\n")
    print((RESULTS / "global_vs_layer.md").read_text())


if __name__ == "__main__":
    main()
