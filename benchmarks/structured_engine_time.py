"""Engine time: dependency graph + importance + surgery, prunekit vs Torch-Pruning, over depth.

Both tools prune 50 % of channels (uniform, L2 magnitude, classifier ignored) in the same process,
interleaved, on one thread; each figure is the median of ``--repeats`` fresh models. Models: the
ImageNet ResNet-50 at 224×224 and CIFAR ResNets of growing depth (20 … 1202 layers). A straight
line is fitted to time vs depth (slope, R²), and the growth exponent is the slope of log time vs
log depth (1 = linear).

    python benchmarks/structured_engine_time.py        # writes benchmarks/results/structured_engine_time.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from prunekit._io import write_json, write_text  # noqa: E402
from prunekit.importance import ScoringContext, make_criterion  # noqa: E402
from prunekit.structured import DependencyGraph, remove_units  # noqa: E402
from prunekit.zoo import cifar_resnet, create_model  # noqa: E402

DEPTHS = [20, 56, 110, 218, 434, 866, 1202]


def prunekit_engine(model: torch.nn.Module, x: torch.Tensor) -> None:
    graph = DependencyGraph.build(model, x)
    ctx = ScoringContext(model, graph)
    criterion = make_criterion("l2")
    plan = {}
    for group in graph.prunable_groups():
        scores = criterion(group, ctx)
        plan[group] = torch.argsort(scores)[: group.size // 2].tolist()
    remove_units(graph, plan)


def torch_pruning_engine(model: torch.nn.Module, x: torch.Tensor) -> None:
    import torch_pruning as tp

    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=0.5, ignored_layers=[model.fc])
    pruner.step()


def timed(fn, build, x) -> float:
    model = build().eval()
    t0 = time.perf_counter()
    fn(model, x)
    return time.perf_counter() - t0


def fit(depths: list[int], seconds: list[float]) -> dict[str, float]:
    d, s = np.asarray(depths, float), np.asarray(seconds, float)
    slope, intercept = np.polyfit(d, s, 1)
    pred = slope * d + intercept
    r2 = 1 - ((s - pred) ** 2).sum() / ((s - s.mean()) ** 2).sum()
    exponent = np.polyfit(np.log(d), np.log(s), 1)[0]
    return {"slope_s_per_layer": float(slope), "intercept_s": float(intercept), "r2": float(r2), "growth_exponent": float(exponent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depths", type=int, nargs="*", default=DEPTHS)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    tools = {"prunekit": prunekit_engine, "torch_pruning": torch_pruning_engine}
    cases = [("resnet50@224", lambda: create_model("resnet50"), torch.randn(1, 3, 224, 224), None)]
    cases += [(f"resnet{d}", (lambda d=d: cifar_resnet(d)), torch.randn(1, 3, 32, 32), d) for d in args.depths]
    rows = []
    for name, build, x, depth in cases:
        for fn in tools.values():  # warm-up (imports, allocator)
            timed(fn, build, x) if depth in (None, 20) else None
        samples = {tool: [] for tool in tools}
        for _ in range(args.repeats):
            for tool, fn in tools.items():
                samples[tool].append(timed(fn, build, x))
        row = {"model": name, "depth": depth, **{tool: statistics.median(v) for tool, v in samples.items()}, "samples": samples}
        rows.append(row)
        print(f"{name:14s} prunekit {row['prunekit']:.3f}s  torch_pruning {row['torch_pruning']:.3f}s", flush=True)
    series = [r for r in rows if r["depth"]]
    fits = {tool: fit([r["depth"] for r in series], [r[tool] for r in series]) for tool in tools}
    out = Path(args.out)
    write_json(out / "structured_engine_time.json", {"rows": rows, "fits": fits, "repeats": args.repeats, "threads": 1, "torch": torch.__version__})
    lines = [
        "# Engine time: graph build + importance + surgery (50 % channels, L2)",
        "",
        f"Median of {args.repeats} fresh models per cell, one thread, both tools interleaved in one process.",
        "",
        "| model | prunekit (s) | Torch-Pruning (s) | ratio TP/prunekit |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['model']} | {r['prunekit']:.3f} | {r['torch_pruning']:.3f} | {r['torch_pruning'] / r['prunekit']:.2f} |" for r in rows]
    lines += ["", "Fit over the CIFAR ResNet depth series (time = slope·depth + intercept):", "", "| tool | slope (ms/layer) | R² | growth exponent (log-log) |", "|---|---:|---:|---:|"]
    lines += [f"| {tool} | {f['slope_s_per_layer'] * 1e3:.2f} | {f['r2']:.4f} | {f['growth_exponent']:.2f} |" for tool, f in fits.items()]
    write_text(out / "structured_engine_time.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
