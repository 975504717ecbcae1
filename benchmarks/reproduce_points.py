"""One point of each slow benchmark, rerun on the current code, beside the figure committed in benchmarks/results/.

    python benchmarks/reproduce_points.py [--points resnet20_dense structured_l2 torch_pruning nm_permuted lenet300_scopes]

A refactor must not move results; the full benchmarks take hours on a 2-core CPU, so this reruns
one representative point of each (same recipe, seed and budget as the committed run) and compares:

- ``resnet20_dense``: the shared dense CIFAR-10 ResNet-20 (benchmarks/cifar_dense.py) — retrained,
  not reused, so it also shows how far a retrained dense model moves;
- ``structured_l2``: recipe ``structured_resnet20`` (global L2 to 2× fewer MACs, 5 fine-tuning epochs) without its
  baselines, and its int8 export evaluated in onnxruntime (structured_accuracy, int8);
- ``torch_pruning``: Torch-Pruning's MetaPruner at 2× MACs with the same fine-tuning (structured_accuracy);
- ``nm_permuted``: recipe ``nm_resnet20``, 2:4 with the permutation search, 3 epochs, without baselines (nm_sparsity);
- ``lenet300_scopes``: global/layer-wise/random magnitude pruning of LeNet-300-100 at 8×, seed 0 (global_vs_layer).

A point "reproduces" when its accuracy is within ``TOLERANCE`` (0.5 points) of the committed one and
its MACs reduction within 2%. The CIFAR points start from a retrained dense model (trained in
channels-last layout since the committed run, so not bitwise the same weights): their differences
include that retraining. Each point is cached under benchmarks/work/reproduce/ and the table lists
what has run so far.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifar_dense import cifar_train_config
from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results
from global_vs_layer import SETUPS
from structured_accuracy import torch_pruning_rows

from prunekit._io import write_json
from prunekit.deployment import evaluate_onnx
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.report.tables import Table
from prunekit.zoo import get_loaders

CACHE = WORK / "reproduce"
TOLERANCE = 0.005  # accuracy, as a fraction
MACS_TOLERANCE = 0.02  # relative


def _committed(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _round1(summary: dict[str, Any], method: str) -> dict[str, Any]:
    return next(r for r in summary["curve"] if r["round"] == 1 and r["method"] == method)


def _resnet20() -> tuple[Any, dict[str, Any]]:
    return dense_checkpoint("resnet20", "cifar10", cifar_train_config(), progress=False)


def _recipe(name: str, record: dict[str, Any], *overrides: str) -> Path:
    recipe = load_recipe(name, [f"model.checkpoint={record['weights']}", f"data.root={data_root()}", "prune.baselines=[]", *overrides])
    return run_recipe(recipe, WORK / "runs", progress=False)


def resnet20_dense() -> list[dict[str, Any]]:
    _, record = _resnet20()
    return [{"point": "dense ResNet-20 / CIFAR-10", "accuracy": record["test_accuracy"],
             "committed": _committed("structured_accuracy")["dense_accuracy"]}]


def structured_l2() -> list[dict[str, Any]]:
    _, record = _resnet20()
    run = _recipe("structured_resnet20", record)
    row = _round1(json.loads((run / "summary.json").read_text()), "l2 (global)")
    old = next(r for r in _committed("structured_accuracy")["rows"] if r["method"] == "prunekit l2 (global)")
    test = get_loaders("cifar10", data_root(), batch_size=128, val_fraction=0.1, seed=0, progress=False).test
    int8 = evaluate_onnx(run / "export" / "model.int8.onnx", test, threads=1).accuracy
    return [{"point": "prunekit L2 (global), 2× MACs, 5 epochs", "accuracy": row["accuracy"], "committed": old["accuracy"],
             "macs_reduction": row["macs_reduction"], "committed_macs_reduction": old["macs_reduction"], "run": run.name},
            {"point": "  … its int8 export (onnxruntime)", "accuracy": int8, "committed": _committed("int8")["pruned 2× MACs + int8"]["accuracy"]}]


def torch_pruning() -> list[dict[str, Any]]:
    dense, _ = _resnet20()
    finetune = load_recipe("structured_resnet20").prune.finetune
    row = torch_pruning_rows(dense, finetune, "-reproduce")[0]
    old = next(r for r in _committed("structured_accuracy")["rows"] if r["method"].startswith("Torch-Pruning"))
    return [{"point": "Torch-Pruning MetaPruner L2 (global), 2× MACs, 5 epochs", "accuracy": row["accuracy"], "committed": old["accuracy"],
             "macs_reduction": row["macs_reduction"], "committed_macs_reduction": old["macs_reduction"]}]


def nm_permuted() -> list[dict[str, Any]]:
    _, record = _resnet20()
    run = _recipe("nm_resnet20", record)
    row = _round1(json.loads((run / "summary.json").read_text()), "2:4 (permuted)")
    old = _round1(_committed("nm_sparsity"), "2:4 (permuted)")
    return [{"point": "2:4 (permuted), 3 epochs", "accuracy": row["accuracy"], "committed": old["accuracy"], "run": run.name}]


def lenet300_scopes() -> list[dict[str, Any]]:
    setup = SETUPS["lenet_300_100"]
    _, record = dense_checkpoint("lenet_300_100", setup["dataset"], setup["dense"], seed=0, subset=setup["subset"], progress=False)
    recipe = load_recipe("magnitude_scopes", [*setup["overrides"], "seed=0", f"model.checkpoint={record['weights']}", f"prune.sparsity={1 - 1 / 8}",
                                              f"data.root={data_root()}", "name=scopes-lenet_300_100"])
    summary = json.loads((run_recipe(recipe, WORK / "runs", progress=False) / "summary.json").read_text())
    committed = _committed("global_vs_layer")["models"]["lenet_300_100"]
    rows = [{"point": "dense LeNet-300-100 / MNIST, seed 0", "accuracy": record["test_accuracy"], "committed": committed["dense"][0]}]
    for row in summary["curve"]:
        if row["round"] == 1:
            rows.append({"point": f"LeNet-300-100 {row['method']} at 8×, seed 0", "accuracy": row["accuracy"],
                         "committed": committed["methods"][row["method"]]["8"][0]})
    return rows


POINTS: dict[str, Callable[[], list[dict[str, Any]]]] = {f.__name__: f for f in (resnet20_dense, structured_l2, torch_pruning, nm_permuted, lenet300_scopes)}


def _verdict(row: dict[str, Any]) -> bool:
    ok = abs(row["accuracy"] - row["committed"]) <= TOLERANCE
    if "macs_reduction" in row:
        ok = ok and abs(row["macs_reduction"] / row["committed_macs_reduction"] - 1) <= MACS_TOLERANCE
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", nargs="+", choices=list(POINTS), default=list(POINTS))
    args = parser.parse_args()
    setup_logging()
    for name in args.points:
        target = CACHE / f"{name}.json"
        if not target.exists():
            write_json(target, {"rows": POINTS[name]()})
    done = {name: json.loads((CACHE / f"{name}.json").read_text())["rows"] for name in POINTS if (CACHE / f"{name}.json").exists()}
    table = []
    for rows in done.values():
        for r in rows:
            macs = f"{r['macs_reduction']:.3f} ({r['committed_macs_reduction']:.3f})" if "macs_reduction" in r else "–"
            table.append([r["point"], round(100 * r["committed"], 2), round(100 * r["accuracy"], 2), round(100 * (r["accuracy"] - r["committed"]), 2),
                          macs, "yes" if _verdict(r) else "no"])
    missing = [name for name in POINTS if name not in done]
    write_results("reproduce_points", {"points": done, "missing": missing, "tolerance": TOLERANCE, "macs_tolerance": MACS_TOLERANCE}, [
        Table("Committed figure vs rerun on the current code", ["point", "committed acc (%)", "rerun acc (%)", "Δ (points)",
                                                               "MACs reduction (committed)", "reproduces"], table,
              note=("not run yet: " + ", ".join(missing)) if missing else "every point has run")],
        preamble=__doc__.split("\n\n", 1)[1])
    print((RESULTS / "reproduce_points.md").read_text())


if __name__ == "__main__":
    main()
