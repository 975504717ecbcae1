"""Global vs layer-wise magnitude pruning vs random pruning at 2x-32x compression, mean ± std over 3 seeds.

    python benchmarks/global_vs_layer.py [--models lenet_300_100 conv2] [--seeds 0 1 2] [--cached-only]

For each model and seed, one dense model is trained (cached); then, for each compression ratio
(2, 4, 8, 16, 32x fewer prunable weights), the shipped recipe ``magnitude_scopes`` prunes it one-shot
with global magnitude, layer-wise magnitude and layer-wise random pruning, and fine-tunes each with
the same budget. Reported: test accuracy (mean ± std over seeds) per method and ratio.
LeNet-300-100 uses all of MNIST (20 dense epochs, 3 fine-tuning epochs). Conv-2 trains on a
10,000-image subset of CIFAR-10 picked by the seed (15 dense epochs, 2 fine-tuning epochs) to fit a
2-core CPU budget, and its seeds share one dense model (seed 0): they vary the random masks and the
fine-tuning subset and order, not the dense training. Its test accuracy is on the full 10,000-image test set.
``--cached-only`` writes the tables from the runs already finished, and says how many seeds each
cell has.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_dir_for, run_recipe
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
              "dense_seed": 0,
              "overrides": ["model.name=conv2", "data.name=cifar10", "data.subset=10000", "prune.finetune.epochs=2", "prune.finetune.optimizer.lr=0.005"]},
}


def _cell(accs: list[float], expected: int) -> str:
    """``mean ± std`` in percent, with the number of seeds when some are missing."""
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    cell = f"{100 * statistics.mean(accs):.2f} ± {100 * std:.2f}"
    return cell if len(accs) == expected else f"{cell} (n={len(accs)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(SETUPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cached-only", action="store_true", help="report only the runs already finished; train nothing")
    args = parser.parse_args()
    setup_logging()
    results: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    dense_acc: dict[str, dict[str, float]] = defaultdict(dict)
    for model in args.models:
        setup = SETUPS[model]
        for seed in args.seeds:
            dense_seed = setup.get("dense_seed", seed)
            _, record = dense_checkpoint(model, setup["dataset"], setup["dense"], seed=dense_seed, subset=setup["subset"], progress=False)
            weights = Path(record["weights"])
            dense_acc[model][record["key"]] = record["test_accuracy"]
            for ratio in RATIOS:
                overrides = [*setup["overrides"], f"seed={seed}", f"model.checkpoint={weights}", f"prune.sparsity={1 - 1 / ratio}",
                             f"data.root={data_root()}", f"name=scopes-{model}"]
                recipe = load_recipe("magnitude_scopes", overrides)
                if args.cached_only and not (run_dir_for(recipe, WORK / "runs").path / "summary.json").exists():
                    continue
                run = run_recipe(recipe, WORK / "runs", progress=False)
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
                if not accs:
                    cells.append("-")
                    continue
                mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
                cells.append(_cell(accs, len(args.seeds)))
                curve.append({"method": method, "fraction_remaining": 1 / ratio, "accuracy": mean, "accuracy_std": std})
            rows.append([method, *cells])
        dense = list(dense_acc[model].values())
        rows.insert(0, ["dense", *[_cell(dense, len(dense))] * len(RATIOS)])
        payload["models"][model] = {"dense": dense, "methods": {m: {str(r): v for r, v in d.items()} for m, d in methods.items()}}
        tables.append(Table(f"{model} on {SETUPS[model]['dataset']}: test accuracy (%) by compression of prunable weights",
                            ["method", *[f"{r}×" for r in RATIOS]], rows))
        plots.save_png(plots.accuracy_vs_remaining(curve, statistics.mean(dense), f"{model}: global vs layer-wise vs random"),
                       str(RESULTS / f"global_vs_layer_{model}.png"))
    images = "\n".join(f"![{m}](global_vs_layer_{m}.png)" for m in results)
    write_results("global_vs_layer", payload, tables, preamble=__doc__.split("\n\n", 1)[1] + "\n" + images + "\n")
    print((RESULTS / "global_vs_layer.md").read_text())


if __name__ == "__main__":
    main()
