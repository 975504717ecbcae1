"""Accuracy at a fixed budget: CIFAR-10 ResNet-20 pruned to 2x fewer MACs, then N fine-tuning epochs (5 by default).

    python benchmarks/structured_accuracy.py [--parts prunekit slimming torch_pruning] [--finetune-epochs 5]

All methods start from the same dense checkpoint (benchmarks/cifar_dense.py: 30 epochs, one-cycle
SGD) and get the same fine-tuning budget: N epochs of SGD (lr 0.02, cosine over the N epochs, Nesterov,
wd 5e-4, batch 128, crop + flip). Methods:

- prunekit, shipped recipe ``structured_resnet20``: global L2 (main), global Taylor, global random
  scores, and uniform per-layer L2;
- prunekit network slimming: 3 extra epochs of sparsity learning (L1 on BN scales, λ=1e-4), then
  global BN-scale ranking (this method gets the 3 extra epochs; the others do not);
- Torch-Pruning 1.6.1 ``MetaPruner`` with ``GroupMagnitudeImportance(p=2)`` and global pruning,
  its pruning ratio bisected until the MACs reduction is 2.0 ± 2%, fine-tuned with prunekit's loop.

Targets: our best ≥ Torch-Pruning's, and the dense-vs-pruned gap within 1 point. The parts can run
in separate processes (``--parts``); each caches its result under benchmarks/work/.
``--finetune-epochs N`` (N ≠ 5) reruns prunekit's global L2 and Torch-Pruning with an N-epoch budget
and writes ``structured_accuracy_ft<N>``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from cifar_dense import cifar_train_config
from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit._io import write_json
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.metrics import count_macs, count_parameters, evaluate
from prunekit.report.tables import Table
from prunekit.training import fit
from prunekit.zoo import get_loaders

CACHE = WORK / "structured_accuracy"
DEFAULT_EPOCHS = 5


def _recipe_part(name: str, overrides: list[str], dense_path: str, epochs: int) -> list[dict]:
    if epochs != DEFAULT_EPOCHS:
        overrides = [*overrides, f"prune.finetune.epochs={epochs}", "prune.baselines=[]"]
    run = run_recipe(load_recipe("structured_resnet20", [f"model.checkpoint={dense_path}", f"data.root={data_root()}", *overrides]),
                     WORK / "runs", progress=False)
    s = json.loads((run / "summary.json").read_text())
    rows = []
    for row in s["curve"]:
        if row["round"] == 1:
            rows.append({"method": f"prunekit {row['method']}", "macs_reduction": row["macs_reduction"], "params_remaining": row["fraction_remaining"],
                         "accuracy": row["accuracy"], "accuracy_before_finetune": row["accuracy_before_finetune"], "run": run.name})
    return rows


def torch_pruning_rows(dense: torch.nn.Module, recipe_finetune, suffix: str) -> list[dict]:
    import copy

    import torch_pruning as tp

    data = get_loaders("cifar10", data_root(), batch_size=128, val_fraction=0.1, seed=0, progress=False)
    x = next(iter(data.test))[0][:1]
    base_macs = count_macs(dense, x).dense

    def prune(ratio: float) -> torch.nn.Module:
        model = copy.deepcopy(dense)
        pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
                                      global_pruning=True, ignored_layers=[model.fc])
        pruner.step()
        return model

    lo, hi, model = 0.0, 0.9, None
    for _ in range(20):
        mid = (lo + hi) / 2
        model = prune(mid)
        reduction = base_macs / count_macs(model, x).dense
        if abs(reduction - 2.0) <= 0.04:
            break
        lo, hi = (mid, hi) if reduction < 2.0 else (lo, mid)
    before = evaluate(model, data.test).accuracy
    fit(model, data.train, recipe_finetune, val=data.val, checkpoint=CACHE / f"torch_pruning{suffix}.train.safetensors", progress=False)
    return [{"method": "Torch-Pruning 1.6.1 MetaPruner, L2 (global)", "macs_reduction": base_macs / count_macs(model, x).dense,
             "params_remaining": count_parameters(model).params / count_parameters(dense).params, "pruning_ratio": mid,
             "accuracy": evaluate(model, data.test).accuracy, "accuracy_before_finetune": before}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", nargs="+", default=None, help="default: all three (only prunekit and torch_pruning with --finetune-epochs)")
    parser.add_argument("--finetune-epochs", type=int, default=DEFAULT_EPOCHS)
    args = parser.parse_args()
    epochs = args.finetune_epochs
    suffix, name = ("", "structured_accuracy") if epochs == DEFAULT_EPOCHS else (f"-ft{epochs}", f"structured_accuracy_ft{epochs}")
    setup_logging()
    dense, record = dense_checkpoint("resnet20", "cifar10", cifar_train_config(), progress=False)
    dense_path = record["weights"]
    finetune = load_recipe("structured_resnet20").prune.finetune.model_copy(update={"epochs": epochs})
    parts = {
        "prunekit": lambda: _recipe_part("prunekit", [], dense_path, epochs),
        "slimming": lambda: _recipe_part("slimming", [
            "name=structured-resnet20-slimming", "prune.importance=bn_scale", "prune.baselines=[]",
            "prune.sparsity_learning.kind=bn_l1", "prune.sparsity_learning.lam=0.0001", "prune.sparsity_learning.train.epochs=3",
            "prune.sparsity_learning.train.optimizer.lr=0.02", "prune.sparsity_learning.train.optimizer.weight_decay=0.0005",
            "prune.sparsity_learning.train.lr_schedule.name=cosine", "export=null"], dense_path, epochs),
        "torch_pruning": lambda: torch_pruning_rows(dense, finetune, suffix),
    }
    if epochs != DEFAULT_EPOCHS:
        del parts["slimming"]
    args.parts = args.parts or list(parts)
    unknown = sorted(set(args.parts) - set(parts))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)} for {epochs} fine-tuning epochs; choose from {', '.join(parts)}")
    for part in args.parts:
        target = CACHE / f"{part}{suffix}.json"
        if not target.exists():
            start = time.perf_counter()
            rows = parts[part]()
            write_json(target, {"rows": rows, "seconds": time.perf_counter() - start})
    if not all((CACHE / f"{p}{suffix}.json").exists() for p in parts):
        print("partial results cached; run again with the remaining --parts to write the table")
        return
    rows = [r for p in parts for r in json.loads((CACHE / f"{p}{suffix}.json").read_text())["rows"]]
    dense_acc = record["test_accuracy"]
    table = [["dense ResNet-20", 1.0, 1.0, round(100 * dense_acc, 2), None, 0.0]]
    for r in sorted(rows, key=lambda r: -r["accuracy"]):
        table.append([r["method"], round(r["macs_reduction"], 3), round(r["params_remaining"], 3), round(100 * r["accuracy"], 2),
                      round(100 * r["accuracy_before_finetune"], 2), round(100 * (dense_acc - r["accuracy"]), 2)])
    ours = max(r["accuracy"] for r in rows if r["method"].startswith("prunekit"))
    theirs = max(r["accuracy"] for r in rows if r["method"].startswith("Torch-Pruning"))
    findings = [["best prunekit − Torch-Pruning (points)", round(100 * (ours - theirs), 2)],
                ["dense − best prunekit (points)", round(100 * (dense_acc - ours), 2)],
                ["target met: ours ≥ Torch-Pruning", ours >= theirs], ["target met: gap ≤ 1 point", dense_acc - ours <= 0.01]]
    write_results(name, {"dense_accuracy": dense_acc, "finetune_epochs": epochs, "rows": rows}, [
        Table(f"ResNet-20 / CIFAR-10 at 2× fewer MACs, {epochs} fine-tuning epochs", ["method", "MACs reduction", "params remaining", "test acc (%)", "before fine-tuning (%)", "gap to dense (points)"], table,
              note="CIFAR-10 here is the lossy JPEG-derived copy in ../shared/data; absolute accuracies are close to, not equal to, official CIFAR-10 figures."),
        Table("Findings", ["measure", "value"], findings)], preamble=__doc__.split("\n\n", 1)[1],
        command="python benchmarks/structured_accuracy.py" + ("" if epochs == DEFAULT_EPOCHS else f" --finetune-epochs {epochs}"))
    print((RESULTS / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
