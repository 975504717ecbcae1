"""Dynamic (input-dependent) channel pruning on CIFAR-10 ResNet-20: dense vs static vs dynamic vs static+dynamic.

    python benchmarks/dynamic_pruning.py                     # needs the dense checkpoint of benchmarks/cifar_dense.py
    python benchmarks/dynamic_pruning.py --latency-only      # random weights: times only (latency does not depend on training)

From one dense checkpoint, with one fine-tuning budget for every pruned model (``--epochs`` epochs
of SGD, cosine LR from 0.01, on the first ``--subset`` training examples):

- **static**: structured L2 pruning (global ranking, ``round_to=1``) to 2x fewer MACs, then fine-tuned;
- **dynamic**: FBS-style gates (``prunekit.dynamic``) at density 0.5 on every block-interior group
  (residual-coupled groups are not gated), fine-tuned with the L1 budget loss;
- **static+dynamic**: static pruning to 1.5x, then gates at density 0.7 (about 2x MACs in all).

Accuracy is on the whole test set (once, after fine-tuning); the dynamic models' effective MACs are
counted per test input (mean and histogram, :func:`prunekit.dynamic.gate_stats`). Latency: torch
eager, one thread, every model timed side by side (``compare_latency``: interleaved rounds,
medians after warm-up) at batch 1 (one fixed test image) and batch 64; the dynamic models run the
skip path (only active channels computed), at batch 64 both as one conv per layer over the union
of the batch's active channels and as a loop over single inputs. Each fine-tuned model is cached
under ``benchmarks/work/dynamic_pruning/`` (resumable).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, WORK, setup_logging, write_results
from cifar_dense import cifar_finetune_config, committed_resnet20

from prunekit import dynamic as dyn
from prunekit._io import load_safetensors, save_safetensors, write_json
from prunekit.metrics import compare_latency, count_macs, evaluate
from prunekit.pruners.structured import prune_structured
from prunekit.report.plots import accuracy_vs_cost, save_png
from prunekit.report.tables import Table
from prunekit.training import fit
from prunekit.zoo import create_model

MODEL, SHAPE = "resnet20", (3, 32, 32)
FOLDER = WORK / "dynamic_pruning"
#: name → (static MACs reduction or None, gate density or None)
VARIANTS: dict[str, tuple[float | None, float | None]] = {
    "dense": (None, None), "static": (2.0, None), "dynamic": (None, 0.5), "static+dynamic": (1.5, 0.7)}


def build(name: str, dense: torch.nn.Module, x: torch.Tensor, densities: dict[str, float]) -> torch.nn.Module:
    """The untrained variant ``name`` of ``dense`` (static pruning is deterministic, so a cached state dict fits it)."""
    reduction, density = VARIANTS[name]
    density = densities.get(name, density)
    model = copy.deepcopy(dense).eval()
    if reduction is not None:
        prune_structured(model, x, macs_reduction=reduction, importance="l2", round_to=1)
    if density is not None:
        model = dyn.add_gates(model, x, density=density, copy_model=False)
    return model


def trained(name: str, dense: torch.nn.Module, x: torch.Tensor, data: Any, args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fine-tune variant ``name`` (or load it from the cache)."""
    model = build(name, dense, x, {"dynamic": args.density})
    if name == "dense":
        return model, {"finetune_seconds": 0.0}
    gates = f"-d{args.density if name == 'dynamic' else VARIANTS[name][1]}-w{args.budget_weight}" if VARIANTS[name][1] is not None else ""
    key = f"{name}-e{args.epochs}-n{args.subset}{gates}"
    weights, record_file = FOLDER / f"{key}.safetensors", FOLDER / f"{key}.json"
    if weights.exists() and record_file.exists():
        model.load_state_dict(load_safetensors(weights))
        return model, json.loads(record_file.read_text())
    callbacks = [dyn.GateBudgetLoss(model, args.budget_weight)] if isinstance(model, dyn.GatedModel) else []
    start = time.perf_counter()
    result = fit(model, data.train, cifar_finetune_config(args.epochs), val=data.val, callbacks=callbacks, checkpoint=FOLDER / f"{key}.train.safetensors",
                 progress=False, description=f"fine-tune {name}")
    record = {"finetune_seconds": time.perf_counter() - start, "history": result.history}
    save_safetensors(weights, model.state_dict())
    write_json(record_file, record)
    return model.eval(), record


def time_models(models: dict[str, torch.nn.Module], x1: torch.Tensor, x64: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """Median ms at batch 1 and 64; dynamic models run their skip path (union; at 64 also per-input loop)."""
    b1, b64 = {}, {}
    for name, m in models.items():
        if isinstance(m, dyn.GatedModel):
            b1[name] = dyn.skip_path(m)
            b64[f"{name} (union)"] = dyn.skip_path(m, "union")
            b64[f"{name} (loop)"] = dyn.skip_path(m, "loop")
            b1[f"{name} (masked dense)"] = b64[f"{name} (masked dense)"] = m
        else:
            b1[name] = b64[name] = m
    out: dict[str, dict[str, float]] = {}
    for batch, targets, x, reps in ((1, b1, x1, repeats), (64, b64, x64, max(5, repeats // 5))):
        for name, lat in compare_latency(targets, (x,), warmup=3, repeats=reps).items():
            out.setdefault(name, {})[f"b{batch}_ms"] = lat.median_ms
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--subset", type=int, default=15000, help="training examples (validation carved out of them)")
    parser.add_argument("--density", type=float, default=0.5, help="gate density of the dynamic variant")
    parser.add_argument("--budget-weight", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--latency-only", action="store_true", help="random weights, no training: latency and MACs only")
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(1)
    FOLDER.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, *SHAPE)
    data = None
    if args.latency_only:
        torch.manual_seed(0)
        dense = create_model(MODEL, 10, SHAPE).eval()
        x1, x64 = torch.randn(1, *SHAPE), torch.randn(64, *SHAPE)
        dense_record: dict[str, Any] = {"test_accuracy": None}
    else:
        dense, dense_record, data = committed_resnet20(args.subset)
        test_x = next(iter(data.test))[0]
        x1, x64 = test_x[:1], torch.cat([test_x, test_x])[:64]
    dense_macs = count_macs(dense, x).dense
    models, rows = {}, {}
    for name in VARIANTS:
        model, record = (build(name, dense, x, {"dynamic": args.density}), {}) if args.latency_only else trained(name, dense, x, data, args)
        model.eval()
        row: dict[str, Any] = {"finetune_seconds": record.get("finetune_seconds")}
        if isinstance(model, dyn.GatedModel):
            stats = dyn.gate_stats(model, data.test if data is not None else [torch.randn(64, *SHAPE)])
            row.update(macs=stats.mean_macs, dynamic=stats.to_dict())
            with torch.no_grad():
                row["skip_path_max_abs_diff"] = float((dyn.skip_path(model)(x64) - model(x64)).abs().max())
        else:
            row["macs"] = count_macs(model, x).dense
        if data is not None:
            row["test_accuracy"] = dense_record["test_accuracy"] if name == "dense" else evaluate(model, data.test).accuracy
        models[name], rows[name] = model, row
    timing = time_models(models, x1, x64, args.repeats)
    write_outputs(args, rows, timing, dense_macs)


def write_outputs(args: argparse.Namespace, rows: dict[str, dict[str, Any]], timing: dict[str, dict[str, float]], dense_macs: int) -> None:
    dense_b1, dense_b64 = timing["dense"]["b1_ms"], timing["dense"]["b64_ms"]
    table = []
    for name, row in rows.items():
        t = timing[name] if name in timing else {}
        acc = row.get("test_accuracy")
        b64_name = f"{name} (union)" if f"{name} (union)" in timing else name
        table.append([name, "—" if acc is None else f"{100 * acc:.2f}", f"{row['macs'] / 1e6:.2f}", f"{dense_macs / row['macs']:.2f}x",
                      f"{t.get('b1_ms', float('nan')):.2f}", f"{dense_b1 / t['b1_ms']:.2f}x" if t else "—",
                      f"{timing[b64_name]['b64_ms']:.1f}", f"{dense_b64 / timing[b64_name]['b64_ms']:.2f}x"])
    extra = [[name, f"{t.get('b1_ms', float('nan')):.2f}", f"{t.get('b64_ms', float('nan')):.1f}"] for name, t in timing.items() if name not in rows]
    static_b1 = timing["static"]["b1_ms"]
    best_dynamic = min((timing[n]["b1_ms"], n) for n in rows if "dynamic" in n)
    acc = {n: r.get("test_accuracy") for n, r in rows.items()}
    equal = acc["static"] is not None and acc[best_dynamic[1]] is not None and acc[best_dynamic[1]] >= acc["static"] - 0.005
    target = (f"batch-1 latency of {best_dynamic[1]} {best_dynamic[0]:.2f} ms vs static {static_b1:.2f} ms: "
              f"{'below' if best_dynamic[0] < static_b1 else 'NOT below'} the static model"
              + ("" if acc["static"] is None else f"; accuracy {100 * acc[best_dynamic[1]]:.2f}% vs {100 * acc['static']:.2f}% "
                 f"({'equal within 0.5 points or better' if equal else 'lower by more than 0.5 points'})"))
    mode = "random weights (--latency-only): no accuracy" if args.latency_only else (
        f"fine-tuning: {args.epochs} epochs on {args.subset} training examples (10% of them validation), SGD lr 0.01 cosine, "
        f"budget loss weight {args.budget_weight}")
    preamble = (f"CIFAR-10 ResNet-20, {mode}. Latency: torch eager, 1 thread, side by side, medians; dynamic rows run the skip path "
                f"(union of the batch's active channels at batch 64). Target (issue 14): at equal accuracy, batch-1 latency below the best "
                f"static model — {target}.")
    payload = {"settings": vars(args), "dense_macs": dense_macs, "rows": rows, "timing_ms": timing, "target": target, "target_met": bool(best_dynamic[0] < static_b1 and equal)}
    name = "dynamic_pruning_latency_only" if args.latency_only else "dynamic_pruning"
    tables = [Table("Accuracy, mean effective MACs per input and latency", ["model", "test acc (%)", "MACs (M)", "MACs reduction", "batch 1 (ms)",
                                                                           "batch-1 speed-up", "batch 64 (ms)", "batch-64 speed-up"], table),
              Table("Other execution modes of the dynamic models", ["mode", "batch 1 (ms)", "batch 64 (ms)"], extra,
                    note="'masked dense' computes every channel and multiplies by the gates (the training forward); "
                         "'loop' runs the 64 inputs one by one, each computing only its own channels.")]
    command = "python benchmarks/dynamic_pruning.py" + (" --latency-only" if args.latency_only else "")
    write_results(name, payload, tables, preamble, command)
    points = [{"method": n, "macs": r["macs"] / 1e6, "latency_b1": timing[n]["b1_ms"], "accuracy": r.get("test_accuracy")} for n, r in rows.items()]
    if not args.latency_only:
        save_png(accuracy_vs_cost(points, ("macs", "mean effective MACs per input (M)"), ("latency_b1", "batch-1 latency (ms)")),
                 str(RESULTS / f"{name}.png"))
    print(Path(RESULTS / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
