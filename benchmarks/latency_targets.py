"""Latency targets on the runtime a model is deployed to, and "never slower" with default settings.

Part 1 (latency targets): CIFAR ResNet-56, MobileNetV2 and VGG-16 (32×32) and ResNet-50 (224×224,
batch 1 only: one 224×224 forward at batch 64 takes seconds on one thread) are pruned with
``prune_structured(model, x, latency_reduction=T, runtime=R, batch_size=B)`` (L2 magnitude,
everything else default: knapsack allocation over measured per-layer tables, channel counts on the
runtime's measured staircase). The speed-up is the pruner's own final check: dense and pruned
timed side by side on that runtime (interleaved, medians after warm-up, one thread).
Efficiency = speed-up ÷ MACs ratio.

Part 2 (defaults): the same models pruned to 1.5×/2×/3× fewer MACs with default settings
(``round_to="auto"``, i.e. the default runtime's staircase) and, for comparison, with the old
default ``round_to=1``; each timed side by side against dense on both runtimes at batch 1 and 64.
A case is "slower" when the pruned model's median latency exceeds the dense one's.

Every case is appended to ``benchmarks/work/latency_targets.jsonl`` as it finishes; a rerun skips
finished cases (``--fresh`` starts over).

    python benchmarks/latency_targets.py      # writes benchmarks/results/latency_targets.{json,md}
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
import warnings

import torch
from common import WORK, write_results

from prunekit._io import append_jsonl, read_jsonl
from prunekit.deployment import measured_speedup
from prunekit.deployment.runtimes import prepare_on
from prunekit.metrics import count_macs
from prunekit.pruners import prune_structured
from prunekit.metrics._inputs import batched
from prunekit.report.tables import Table
from prunekit.zoo import create_model

MODELS = {"resnet56": (3, 32, 32), "mobilenetv2": (3, 32, 32), "vgg16": (3, 32, 32), "resnet50": (3, 224, 224)}
TARGETS = (1.5, 2.0, 3.0)
RUNTIMES = ("onnxruntime", "torch")
BATCHES = (1, 64)
LOG = WORK / "latency_targets.jsonl"


def batches_for(model: str) -> tuple[int, ...]:
    return (1,) if model == "resnet50" else BATCHES


def latency_case(model: str, target: float, runtime: str, batch: int) -> dict:
    torch.manual_seed(0)
    dense = create_model(model).eval()
    x = torch.randn(1, *MODELS[model])
    macs = count_macs(dense, x).dense
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = prune_structured(dense, x, latency_reduction=target, runtime=runtime, batch_size=batch)
    seconds = time.perf_counter() - start
    assert result.speedup is not None
    macs_ratio = macs / result.macs_after
    return {"part": "latency", "model": model, "target": target, "runtime": runtime, "batch": batch, "macs_ratio": macs_ratio,
            "speedup": result.speedup.speedup, "efficiency": result.speedup.speedup / macs_ratio, "spread": result.speedup.spread,
            "reliable": result.speedup.reliable, "prune_seconds": seconds, "within_5pct": abs(result.speedup.speedup - target) <= 0.05 * target}


def default_case(model: str, target: float, round_to: str | int) -> list[dict]:
    torch.manual_seed(0)
    dense = create_model(model).eval()
    x = torch.randn(1, *MODELS[model])
    pruned = copy.deepcopy(dense)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = prune_structured(pruned, x, macs_reduction=target, round_to=round_to)
    rows = []
    for runtime in RUNTIMES:
        for batch in batches_for(model):
            inputs = batched((x,), batch)
            check = measured_speedup(prepare_on(runtime, dense, inputs), prepare_on(runtime, pruned, inputs), inputs, runtime, repeats=9, min_time_s=0.5)
            rows.append({"part": "defaults", "model": model, "target": target, "round_to": str(round_to), "runtime": runtime, "batch": batch,
                         "macs_ratio": result.macs_reduction, "speedup": check.speedup, "reliable": check.reliable, "slower": check.speedup < 1.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--targets", type=float, nargs="*", default=list(TARGETS))
    parser.add_argument("--parts", nargs="*", default=["defaults", "latency"])
    parser.add_argument("--fresh", action="store_true", help="forget finished cases")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    if args.fresh and LOG.exists():
        LOG.unlink()
    done = read_jsonl(LOG) if LOG.exists() else []
    seen = {(r["part"], r["model"], r["target"], r.get("runtime"), r.get("batch"), r.get("round_to")) for r in done}
    start = time.perf_counter()
    for model in args.models:
        for target in args.targets:
            if "defaults" in args.parts:
                for round_to in ("auto", 1):
                    if ("defaults", model, target, RUNTIMES[0], 1, str(round_to)) not in seen:
                        for row in default_case(model, target, round_to):
                            append_jsonl(LOG, row)
                            print(row, flush=True)
            if "latency" in args.parts:
                for runtime in RUNTIMES:
                    for batch in batches_for(model):
                        if ("latency", model, target, runtime, batch, None) not in seen:
                            row = latency_case(model, target, runtime, batch)
                            append_jsonl(LOG, row)
                            print(row, flush=True)
    rows = read_jsonl(LOG)
    write_report(rows, time.perf_counter() - start)


def write_report(rows: list[dict], seconds: float) -> None:
    latency_rows, default_rows = [], []
    for r in sorted((r for r in rows if r["part"] == "latency"), key=lambda r: (r["model"], r["runtime"], r["batch"], r["target"])):
        latency_rows.append([r["model"], r["runtime"], r["batch"], f"{r['target']}×", f"{r['speedup']:.2f}×", "yes" if r["within_5pct"] else "NO",
                    f"{r['macs_ratio']:.2f}", f"{r['efficiency']:.2f}", f"{r['spread']:.0%}" + ("" if r["reliable"] else " (noisy)"), f"{r['prune_seconds']:.0f}"])
    grouped: dict[tuple, dict] = {}
    for r in (r for r in rows if r["part"] == "defaults"):
        grouped.setdefault((r["model"], r["target"], r["round_to"]), {})[(r["runtime"], r["batch"])] = r
    slower = {"auto": 0, "1": 0}
    for (model, target, round_to), cells in sorted(grouped.items()):
        cell = lambda rt, b: f"{cells[(rt, b)]['speedup']:.2f}×" if (rt, b) in cells else "-"  # noqa: E731
        n = sum(c["slower"] for c in cells.values())
        slower[round_to] += n
        macs = next(iter(cells.values()))["macs_ratio"]
        default_rows.append([model, f"{target}×", "auto (default)" if round_to == "auto" else round_to, f"{macs:.2f}", cell("onnxruntime", 1),
                             cell("onnxruntime", 64), cell("torch", 1), cell("torch", 64), n])
    latency = Table("Latency targets: measured speed-up on the runtime (dense vs pruned side by side, one thread)",
                    ["model", "runtime", "batch", "target", "speed-up", "within 5%", "MACs ratio", "efficiency", "spread", "prune time (s)"], latency_rows)
    defaults = Table("MACs targets with default settings vs the old default round_to=1: speed-up over dense",
                     ["model", "target", "round_to", "MACs ratio", "ORT b1", "ORT b64", "torch b1", "torch b64", "slower cases"], default_rows)
    lat = [r for r in rows if r["part"] == "latency"]
    summary = {"latency_cases": len(lat), "within_5pct": sum(r["within_5pct"] for r in lat),
               "efficiency_b64_min": min((r["efficiency"] for r in lat if r["batch"] == 64), default=None),
               "slower_with_defaults": slower["auto"], "slower_with_round_to_1": slower["1"]}
    preamble = (__doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2] + "\n\n"
                f"Summary: {summary['within_5pct']}/{summary['latency_cases']} latency targets met within 5%; "
                f"slower-than-dense cases with default settings: {summary['slower_with_defaults']} (old default round_to=1: {summary['slower_with_round_to_1']}).")
    write_results("latency_targets", {"rows": rows, "summary": summary, "seconds": seconds}, [latency, defaults], preamble)
    print(summary)


if __name__ == "__main__":
    main()
