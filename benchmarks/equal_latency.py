"""Accuracy at equal measured latency, and depth vs width: CIFAR-10 ResNet-20 made 2x faster on onnxruntime.

    python benchmarks/equal_latency.py                  # seeds 0 1 2
    python benchmarks/equal_latency.py --seeds 0        # one seed

From the committed dense checkpoint (``benchmarks/cifar_dense.py``), four ways to a faster model on
onnxruntime (CPU, batch 1, one thread), each measured side by side with the dense model:

- **prunekit latency**: ``prune_structured(model, x, latency_reduction=2.0)`` (``--speedup``), everything
  else default (the runtime's latency tables, the knapsack allocation, channel counts on its measured
  staircase). The speed-up it measures (3 s side by side) is the target of the three others, so that
  all four compare at the same measured latency;
- **prunekit MACs**: ``prune_structured(model, x, macs_reduction=r)`` with defaults (``round_to="auto"``),
  ``r`` bisected until the measured speed-up is within 5% of the target;
- **Torch-Pruning 1.6.1**: ``MetaPruner`` with ``GroupMagnitudeImportance(p=2)``, global pruning and its
  README's ``round_to=8``, the pruning ratio bisected the same way;
- **depth**: ``prune_depth`` (``output_change`` importance on 64 validation images), the number of
  removed residual blocks chosen as the one whose measured speed-up is closest to the target.

The search for ``r``, the ratio and the block count uses measured latency only (no accuracy). Each
pruned model is saved once (``save_pruned``) and then fine-tuned with the same budget per seed
(``--epochs`` epochs of SGD, lr 0.01 cosine, on the first ``--subset`` training images, 10% of them
held out), the test set evaluated once per model. A last table times dense and all pruned models
side by side. Targets (issue 10): latency-aware prunekit ≥ +0.5 points over Torch-Pruning at the
same measured latency (mean over seeds); depth vs width reported. The issue names ResNet-56; the
committed dense checkpoint is ResNet-20, so this runs on ResNet-20.
Results are cached under ``benchmarks/work/equal_latency/`` (resumable).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from cifar_dense import cifar_finetune_config, committed_resnet20, reseeded
from common import RESULTS, WORK, setup_logging, write_results

from prunekit._io import write_json
from prunekit.errors import ConfigError
from prunekit.deployment.runtimes import measured_speedup, time_side_by_side
from prunekit.metrics import count_macs, evaluate
from prunekit.pruners.depth import prune_depth
from prunekit.pruners.structured import prune_structured
from prunekit.report.tables import Table
from prunekit.structured import load_pruned, save_pruned
from prunekit.training import fit
from prunekit.zoo import create_model

MODEL, SHAPE = "resnet20", (3, 32, 32)
RUNTIME = "onnxruntime"
FOLDER = WORK / "equal_latency"
#: variant → its folder/file key under FOLDER
VARIANTS = {"prunekit latency": "prunekit-latency", "prunekit MACs": "prunekit-macs", "Torch-Pruning (round_to=8)": "torch-pruning", "depth": "depth"}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--speedup", type=float, default=2.0, help="measured latency reduction every variant is brought to")
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs over the subset")
parser.add_argument("--subset", type=int, default=15000, help="training images (10%% of them the validation split)")


def speedup_of(dense: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, min_time_s: float = 1.0) -> float:
    return measured_speedup(dense, model, (x,), RUNTIME, threads=1, repeats=30, min_time_s=min_time_s).speedup


def bisect(make: Callable[[float], torch.nn.Module], dense: torch.nn.Module, x: torch.Tensor, lo: float, hi: float, target: float,
           steps: int = 10) -> tuple[float, torch.nn.Module, float]:
    """The setting in [lo, hi] (more pruning as it grows) whose measured speed-up is within 5% of ``target``, else the closest tried."""
    best: tuple[float, float, torch.nn.Module, float] | None = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        model = make(mid)
        got = speedup_of(dense, model, x)
        if best is None or abs(got - target) < best[0]:
            best = (abs(got - target), mid, model, got)
        if abs(got / target - 1) <= 0.05:
            break
        lo, hi = (mid, hi) if got < target else (lo, mid)
    assert best is not None
    return best[1], best[2], best[3]


def torch_pruning(dense: torch.nn.Module, x: torch.Tensor, ratio: float) -> torch.nn.Module:
    import torch_pruning as tp

    model = copy.deepcopy(dense)
    tp.pruner.MetaPruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio, global_pruning=True,
                         round_to=8, ignored_layers=[model.fc]).step()
    return model


def depth(dense: torch.nn.Module, calib: torch.Tensor, blocks: int) -> torch.nn.Module:
    model = copy.deepcopy(dense).eval()
    prune_depth(model, calib, blocks=blocks)
    return model


def build(name: str, dense: torch.nn.Module, x: torch.Tensor, calib: torch.Tensor, target: float) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Variant ``name`` brought to ``target`` measured speed-up, with the setting that got it there."""
    start = time.perf_counter()
    if name == "prunekit latency":
        model = copy.deepcopy(dense).eval()
        prune_structured(model, x, latency_reduction=target)
        setting: dict[str, Any] = {"latency_reduction": target}
        got = speedup_of(dense, model, x, min_time_s=3.0)  # the speed-up every other variant is then brought to
    elif name == "prunekit MACs":
        def macs_target(r: float) -> torch.nn.Module:
            model = copy.deepcopy(dense).eval()
            prune_structured(model, x, macs_reduction=r)
            return model

        r, model, got = bisect(macs_target, dense, x, 1.0, 12.0, target)
        setting = {"macs_reduction": r}
    elif name.startswith("Torch-Pruning"):
        ratio, model, got = bisect(lambda r: torch_pruning(dense, x, r), dense, x, 0.0, 0.95, target)
        setting = {"pruning_ratio": ratio}
    else:
        tried = {}
        for k in range(1, 9):
            try:
                tried[k] = depth(dense, calib, k)
            except ConfigError:  # more blocks than the model can lose
                break
        speedups = {k: speedup_of(dense, m, x) for k, m in tried.items()}
        k = min(speedups, key=lambda k: abs(speedups[k] - target))
        model, got, setting = tried[k], speedups[k], {"blocks_removed": k, "speedups_tried": speedups}
    return model, {"setting": setting, "measured_speedup_at_build": got, "build_seconds": time.perf_counter() - start}


def pruned(name: str, dense: torch.nn.Module, x: torch.Tensor, calib: torch.Tensor, asked: float, target: float) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The untrained pruned variant brought to ``target`` measured speed-up (the latency-aware one: asked for ``asked``),
    built once and then loaded from ``save_pruned``'s folder (depth: rebuilt from its block count)."""
    folder = FOLDER / f"{VARIANTS[name]}-x{asked:g}"
    record_file = folder / "build.json"
    if record_file.exists():
        record = json.loads(record_file.read_text())
        if name == "depth":
            return depth(dense, calib, record["setting"]["blocks_removed"]), record
        return load_pruned(lambda: create_model(MODEL, 10, SHAPE), folder).eval(), record
    model, record = build(name, dense, x, calib, asked if name == "prunekit latency" else target)
    if name != "depth":
        save_pruned(model, folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(record_file, record)
    return model, record


def finetuned(name: str, model: torch.nn.Module, seed: int, data: Any, args: argparse.Namespace, folder_key: str) -> dict[str, Any]:
    record_file = FOLDER / f"{folder_key}-s{seed}-e{args.epochs:g}-n{args.subset}.json"
    if record_file.exists():
        return json.loads(record_file.read_text())
    start = time.perf_counter()
    fit(model, reseeded(data.train, seed), cifar_finetune_config(args.epochs, seed), progress=False, checkpoint=record_file.with_suffix(".train.safetensors"),
        description=f"fine-tune {name} seed {seed}")
    record = {"variant": name, "seed": seed, "val_accuracy": evaluate(model, data.val).accuracy, "test_accuracy": evaluate(model, data.test).accuracy,
              "finetune_seconds": time.perf_counter() - start}
    write_json(record_file, record)
    return record


def main() -> None:
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(1)
    FOLDER.mkdir(parents=True, exist_ok=True)
    dense, dense_record, data = committed_resnet20(args.subset)
    calib = next(iter(data.val))[0][:64]
    x = torch.randn(1, *SHAPE)
    dense_macs = count_macs(dense, x).dense
    untrained, builds, results = {}, {}, {}
    target = args.speedup
    for name in VARIANTS:  # the latency-aware variant first: the others are brought to the speed-up it measures
        model, builds[name] = pruned(name, dense, x, calib, args.speedup, target)
        if name == "prunekit latency":
            target = builds[name]["measured_speedup_at_build"]
        untrained[name] = model
        builds[name]["macs"] = count_macs(model, x).dense
    for name, model in untrained.items():  # every build (timed) first, then the fine-tuning (not timed)
        results[name] = [finetuned(name, copy.deepcopy(model), seed, data, args, f"{VARIANTS[name]}-x{args.speedup:g}") for seed in args.seeds]
    timing = time_side_by_side({"dense": dense, **untrained}, (x,), RUNTIME, threads=1, repeats=50, min_time_s=2.0)
    rows, accs = [], {}
    for name in VARIANTS:
        acc = [100 * r["test_accuracy"] for r in results[name]]
        accs[name] = statistics.mean(acc)
        rows.append([name, json.dumps({k: v for k, v in builds[name]["setting"].items() if k != "speedups_tried"}),
                     f"{dense_macs / builds[name]['macs']:.2f}×", f"{timing['dense'].median_ms / timing[name].median_ms:.2f}×",
                     f"{accs[name]:.2f}" + (f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""), str(len(acc))])
    delta_tp = accs["prunekit latency"] - accs["Torch-Pruning (round_to=8)"]
    width_best = max(("prunekit latency", "prunekit MACs", "Torch-Pruning (round_to=8)"), key=accs.get)
    verdict = {"latency_vs_torch_pruning": delta_tp, "met": delta_tp >= 0.5, "depth_minus_best_width": accs["depth"] - accs[width_best]}
    preamble = (f"CIFAR-10 ResNet-20 from the committed dense checkpoint ({100 * dense_record['test_accuracy']:.2f}% test), prunekit asked for "
                f"{args.speedup:g}× lower latency on onnxruntime (CPU, batch 1, 1 thread), and the other variants brought to the "
                f"{target:.2f}× it measured, then {args.epochs:g} epoch(s) "
                f"of SGD (lr 0.01, cosine) on {args.subset} training images (10% held out), test accuracy once per model, mean ± std over "
                f"seeds {args.seeds}. The speed-up column is from one final side-by-side run of all five models. Target (issue 10): "
                f"latency-aware prunekit ≥ +0.5 points over Torch-Pruning: {delta_tp:+.2f} points ({'met' if verdict['met'] else 'NOT met'}). "
                f"Depth vs the best width variant ({width_best}): {verdict['depth_minus_best_width']:+.2f} points.")
    table = Table("Test accuracy at equal measured latency", ["variant", "setting", "MACs reduction", "measured speed-up", "test acc (%)", "seeds"], rows)
    write_results("equal_latency", {"settings": vars(args), "runtime": RUNTIME, "target_speedup": target, "dense_macs": dense_macs, "dense_test_accuracy": dense_record["test_accuracy"],
                                    "builds": builds, "results": results, "timing_ms": {k: v.median_ms for k, v in timing.items()}, "verdict": verdict},
                  [table], preamble, "python benchmarks/equal_latency.py")
    print(Path(RESULTS / "equal_latency.md").read_text())


if __name__ == "__main__":
    main()
