"""Han et al. 2015 ("Learning both Weights and Connections"), Tables 1-2: LeNet-300-100 and LeNet-5 on MNIST.

    python benchmarks/han2015.py [--recipes han_lenet300 han_lenet5]

Runs the shipped recipes ``han_lenet300`` and ``han_lenet5`` (dense training, iterative magnitude
pruning with per-layer targets, retraining at 1/10 learning rate with L2) and compares the test
error, compression and per-layer kept fractions with the paper. Both hold out 5,000 training
images for validation; test error is reported once. Cached run steps are redone when their code
changed. Targets: >= 12x fewer weights at error <= 1.60% (LeNet-300-100) and <= 0.80% (LeNet-5).
Recipes not run by this invocation are carried over from the previous results and say so.
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, WORK, data_root, run_recipe_checked, setup_logging, write_results

from prunekit.experiment.recipe import load_recipe
from prunekit.report.tables import Table

PAPER = {
    "han_lenet300": {"network": "LeNet-300-100", "dense_error": 1.64, "pruned_error": 1.59, "compression": 12.0, "target_error": 1.60,
                     "layers": {"fc1.weight": 0.08, "fc2.weight": 0.09, "fc3.weight": 0.26}},
    "han_lenet5": {"network": "LeNet-5 (Caffe)", "dense_error": 0.80, "pruned_error": 0.77, "compression": 12.0, "target_error": 0.80,
                   "layers": {"features.0.weight": 0.66, "features.2.weight": 0.12, "fc1.weight": 0.08, "fc2.weight": 0.19}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", choices=tuple(PAPER), default=list(PAPER), help="recipes to run")
    args = parser.parse_args()
    setup_logging()
    previous = json.loads((RESULTS / "han2015.json").read_text()) if (RESULTS / "han2015.json").exists() else {}
    rows, layer_rows, payload = [], [], {}
    for recipe_name, paper in PAPER.items():
        if recipe_name not in args.recipes:
            if recipe_name in previous:
                payload[recipe_name] = {**previous[recipe_name], "rerun": False}
                _rows(paper, payload[recipe_name]["ours"], rows, layer_rows, " — not rerun, carried over")
            continue
        recipe = load_recipe(recipe_name, [f"data.root={data_root()}"])
        run = run_recipe_checked(recipe, WORK / "runs")
        s = json.loads((run / "summary.json").read_text())
        weights = s["pruned"]["prunable_params"]
        kept = s["pruned"]["nonzero_prunable_params"]
        ours = {
            "dense_error": 100 * (1 - s["dense"]["accuracy"]),
            "pruned_error": 100 * (1 - s["pruned"]["accuracy"]),
            "compression": s["compression_ratio"],
            "weight_compression": weights / kept,
            "layers": {r["name"]: r["kept_fraction"] for r in s["layers"]},
            "run": str(run.relative_to(WORK.parent.parent)),
        }
        ours["meets_target"] = ours["pruned_error"] <= paper["target_error"] and ours["compression"] >= 12.0
        payload[recipe_name] = {"paper": paper, "ours": ours, "rerun": True}
        _rows(paper, ours, rows, layer_rows, "")
    tables = [
        Table("Test error and compression (params / nonzero params, biases included)",
              ["network", "paper dense err %", "ours dense err %", "paper pruned err %", "ours pruned err %", "paper ratio", "ours ratio", "target", "met"], rows),
        Table("Per-layer kept fraction", ["network", "layer", "paper", "ours"], layer_rows),
    ]
    write_results("han2015", payload, tables, preamble=__doc__.split("\n\n", 1)[1],
                  command="python benchmarks/han2015.py --recipes " + " ".join(args.recipes))
    print((RESULTS / "han2015.md").read_text())


def _rows(paper: dict, ours: dict, rows: list, layer_rows: list, label: str) -> None:
    """Append one network's result row and per-layer rows."""
    rows.append([paper["network"] + label, paper["dense_error"], round(ours["dense_error"], 2), paper["pruned_error"], round(ours["pruned_error"], 2),
                 f"{paper['compression']:.0f}×", f"{ours['compression']:.1f}×", f"≤ {paper['target_error']}% at ≥ 12×", "yes" if ours["meets_target"] else "NO"])
    for layer, frac in paper["layers"].items():
        layer_rows.append([paper["network"] + label, layer, f"{100 * frac:.0f}%", f"{100 * ours['layers'][layer]:.1f}%"])


if __name__ == "__main__":
    main()
