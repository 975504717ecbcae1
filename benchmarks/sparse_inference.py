"""Sparse CPU inference: dense-with-zeros vs CSR/BSR execution, measured side by side.

Models: LeNet-300-100 and mlp_wide (784-2048-2048-1024-10), random init (seed 0), every Linear
weight magnitude-pruned layer-wise to 80/90/95% sparsity. For each batch size (1, 64) three
variants run interleaved in one process: ``dense`` (masks baked into plain dense weights),
``auto`` (``prunekit.deploy``: sparse only where its per-layer measurement says so) and
``all_sparse`` (every Linear as CSR). Reports median latency, speed-up over dense, and the largest
output difference from the dense-masked model.

    python benchmarks/sparse_inference.py            # writes benchmarks/results/sparse_inference.{json,md}
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

import prunekit.deployment
from prunekit._io import write_json, write_text
from prunekit.masks import MaskSet
from prunekit.metrics import compare_latency
from prunekit.zoo import create_model

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("lenet_300_100", "mlp_wide")
SPARSITIES = (0.8, 0.9, 0.95)
BATCHES = (1, 64)


def magnitude_masks(model: torch.nn.Module, sparsity: float) -> MaskSet:
    """Keep the largest-magnitude ``1 - sparsity`` of every Linear weight."""
    masks = {}
    for name, param in model.named_parameters():
        if name.endswith("weight") and param.dim() == 2:
            k = int(round(sparsity * param.numel()))
            threshold = param.detach().abs().flatten().kthvalue(k).values
            masks[name] = param.detach().abs() > threshold
    return MaskSet(masks)


def run_case(name: str, sparsity: float, batch: int, threads: int, repeats: int, min_time_s: float) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(name).eval()
    magnitude_masks(model, sparsity).attach(model)
    x = torch.randn(batch, 1, 28, 28)
    dense, _ = prunekit.deploy(model, x, force="dense")
    auto, report = prunekit.deploy(model, x)
    all_sparse, _ = prunekit.deploy(model, x, force="sparse")
    variants = {"dense": dense, "auto": auto, "all_sparse": all_sparse}
    timings = compare_latency(variants, x, warmup=5, repeats=repeats, min_time_s=min_time_s)
    with torch.inference_mode():
        reference = dense(x)
        scale = float(reference.abs().max())
        errors = {key: float((m(x) - reference).abs().max()) for key, m in (("auto", auto), ("all_sparse", all_sparse))}
    dense_ms = timings["dense"].median_ms
    return {
        "model": name,
        "sparsity": sparsity,
        "batch": batch,
        "threads": threads,
        "dense_ms": dense_ms,
        "auto_ms": timings["auto"].median_ms,
        "all_sparse_ms": timings["all_sparse"].median_ms,
        "speedup_auto": dense_ms / timings["auto"].median_ms,
        "speedup_all_sparse": dense_ms / timings["all_sparse"].median_ms,
        "max_abs_error_auto": errors["auto"],
        "max_abs_error_all_sparse": errors["all_sparse"],
        "output_scale": scale,
        "layers_sparse_auto": report.converted,
        "decisions": report.to_dict()["layers"],
    }


def markdown(rows: list[dict], env: dict) -> str:
    lines = [
        "# Sparse CPU inference (CSR/BSR, sparse weight on the left) vs dense-with-zeros",
        "",
        f"torch {env['torch']}, {env['cpus']} CPUs ({env['machine']}), 1-minute load average "
        f"{env['load_before']:.1f} before and {env['load_after']:.1f} after the run (other processes share the CPUs); "
        "medians of interleaved runs; random-init weights, layer-wise magnitude masks on every Linear.",
        "When other processes keep the cores busy, multi-threaded timings swing by 10× and more "
        "(OpenMP threads wait on each other); compare rows with the same thread count only.",
        "`auto` = `prunekit.deploy` (per-layer measured choice); `all sparse` = every Linear as CSR.",
        "",
        "| model | sparsity | batch | threads | dense ms | auto ms | all-sparse ms | speed-up auto | speed-up all-sparse "
        "| layers sparse (auto) | max abs error (auto / all) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['sparsity']:.0%} | {r['batch']} | {r['threads']} | {r['dense_ms']:.3f} | {r['auto_ms']:.3f} | "
            f"{r['all_sparse_ms']:.3f} | {r['speedup_auto']:.2f}× | {r['speedup_all_sparse']:.2f}× | "
            f"{len(r['layers_sparse_auto'])}/{len(r['decisions'])} | "
            f"{r['max_abs_error_auto']:.1e} / {r['max_abs_error_all_sparse']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="minimum interleaved rounds per case")
    parser.add_argument("--min-time", type=float, default=1.0, help="minimum seconds of timing per case")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()], help="torch thread counts to run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = {
        "torch": torch.__version__, "cpus": os.cpu_count(), "machine": platform.machine(), "load_before": os.getloadavg()[0],
    }
    start = time.perf_counter()
    threads = list(dict.fromkeys(args.threads))
    rows = [
        run_case(m, s, b, t, args.repeats, args.min_time)
        for m in MODELS for s in SPARSITIES for b in BATCHES for t in threads
    ]
    env["wall_s"] = time.perf_counter() - start
    env["load_after"] = os.getloadavg()[0]
    write_json(args.out / "sparse_inference.json", {"environment": env, "results": rows})
    write_text(args.out / "sparse_inference.md", markdown(rows, env))


if __name__ == "__main__":
    main()
