"""Realised speed-up of structured pruning: measured latency ratio vs MACs ratio.

Models: CIFAR ResNet-56, VGG-16 and MobileNetV2 (32×32) and ResNet-50 (224×224), each pruned to
1.5×, 2× and 3× fewer MACs (L2 magnitude, global ranking), with channel counts free or rounded to
multiples of 8 or 16 (16 is the channel block of onnxruntime's AVX-512 convolution kernels).
Where ``round_to=16`` cannot reach the target (layers of only 16 channels cannot be pruned in steps
of 16), one more row keeps 16 elsewhere and rounds those narrow layers to 8 (``layer_round_to``).
Dense and pruned models are timed side by side (``prunekit.metrics.compare_latency``:
interleaved rounds, medians after warm-up) with torch eager and onnxruntime, at batch 1 and 64,
on one thread for both runtimes (this machine's two cores are shared; one thread gives stable
ratios). Efficiency = measured speed-up ÷ MACs ratio (1.0 = the MACs cut is fully realised).

    python benchmarks/structured_speedup.py        # writes benchmarks/results/structured_speedup.{json,md}
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from prunekit._io import write_json, write_text  # noqa: E402
from prunekit.metrics import compare_latency, count_macs  # noqa: E402
from prunekit.pruners import StructuredPruner  # noqa: E402
from prunekit.pruners.structured import layer_channels  # noqa: E402
from prunekit.zoo import create_model  # noqa: E402

MODELS = {"resnet56": (3, 32, 32), "vgg16": (3, 32, 32), "mobilenetv2": (3, 32, 32), "resnet50": (3, 224, 224)}
TARGETS = (1.5, 2.0, 3.0)
ROUNDINGS = (1, 8, 16)
BIG_BATCH_ROUNDING = 16  # the 224×224 model is timed at batch 64 only with this rounding
NARROW_CHANNELS, NARROW_ROUND_TO = 16, 8  # layers this narrow cannot shrink under round_to=16: the extra row rounds them to 8


class OrtModel:
    """An onnxruntime session callable like a module (one thread, batch size dynamic)."""

    def __init__(self, model: torch.nn.Module, example: torch.Tensor, directory: str, name: str) -> None:
        import onnxruntime as ort

        path = os.path.join(directory, f"{name}.onnx")
        batch = torch.export.Dim("batch", min=1, max=1024)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (example,), path, dynamo=True, dynamic_shapes={"x": {0: batch}}, verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor):
        return self.session.run(None, {self.input: x.numpy()})


def timing_plan(name: str, batch: int) -> tuple[int, int]:
    """(warm-up, repeats): fewer for the 224×224 model at batch 64."""
    if name == "resnet50" and batch > 1:
        return 1, 3
    return (3, 15) if batch == 1 else (2, 7)


def measure(name: str, dense: torch.nn.Module, pruned: torch.nn.Module, ort_dense: OrtModel, ort_pruned: OrtModel, batches: list[int]) -> dict:
    out = {}
    shape = MODELS[name]
    for batch in batches:
        x = torch.randn(batch, *shape)
        warmup, repeats = timing_plan(name, batch)
        eager = compare_latency({"dense": dense, "pruned": pruned}, x, warmup=warmup, repeats=repeats)
        onnx = compare_latency({"dense": ort_dense, "pruned": ort_pruned}, x, warmup=warmup, repeats=repeats)
        out[f"eager_b{batch}"] = {"dense_ms": eager["dense"].median_ms, "pruned_ms": eager["pruned"].median_ms, "speedup": eager["dense"].median_ms / eager["pruned"].median_ms}
        out[f"ort_b{batch}"] = {"dense_ms": onnx["dense"].median_ms, "pruned_ms": onnx["pruned"].median_ms, "speedup": onnx["dense"].median_ms / onnx["pruned"].median_ms}
    return out


def run_case(name: str, dense: torch.nn.Module, ort_dense: OrtModel, example: torch.Tensor, dense_macs: int, target: float,
             round_to: int, layer_round_to: dict[str, int], tmp: str) -> dict:
    """Prune a copy of ``dense`` to ``target`` and time it against the dense model."""
    pruned = copy.deepcopy(dense)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        StructuredPruner(macs_reduction=target, round_to=round_to, layer_round_to=layer_round_to).prune(pruned, example)
    pruned.eval()
    macs = count_macs(pruned, example).dense
    ort_pruned = OrtModel(pruned, example, tmp, f"{name}_{target}_{round_to}_{len(layer_round_to)}")
    batches = [1, 64] if (name != "resnet50" or round_to == BIG_BATCH_ROUNDING) else [1]
    timings = measure(name, dense, pruned, ort_dense, ort_pruned, batches)
    row = {"model": name, "target": target, "round_to": round_to, "layer_round_to": layer_round_to, "macs_dense": dense_macs,
           "macs_pruned": macs, "macs_ratio": dense_macs / macs, **timings}
    for key in [k for k in timings if k.endswith("b64")]:
        row[f"{key}_efficiency"] = timings[key]["speedup"] / row["macs_ratio"]
    label = f"r{round_to}" + (f"+narrow{NARROW_ROUND_TO}" if layer_round_to else "")
    print(f"{name:12s} {target:.1f}x {label} macs {row['macs_ratio']:.2f}x " + " ".join(f"{k}={v['speedup']:.2f}" for k, v in timings.items()), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--targets", type=float, nargs="*", default=list(TARGETS))
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            shape = MODELS[name]
            dense = create_model(name).eval()
            example = torch.randn(1, *shape)
            dense_macs = count_macs(dense, example).dense
            ort_dense = OrtModel(dense, example, tmp, f"{name}_dense")
            narrow = {layer: NARROW_ROUND_TO for layer, (_, channels) in layer_channels(dense).items() if channels <= NARROW_CHANNELS}
            for target in args.targets:
                for round_to in ROUNDINGS:
                    row = run_case(name, dense, ort_dense, example, dense_macs, target, round_to, {}, tmp)
                    rows.append(row)
                    if round_to == NARROW_CHANNELS and row["macs_ratio"] < 0.98 * target and narrow:
                        rows.append(run_case(name, dense, ort_dense, example, dense_macs, target, round_to, narrow, tmp))
    elapsed = time.perf_counter() - start
    out = Path(args.out)
    write_json(out / "structured_speedup.json", {"rows": rows, "threads": 1, "seconds": elapsed, "torch": torch.__version__})
    lines = [
        "# Realised speed-up of structured pruning (dense vs pruned, side by side)",
        "",
        "One thread for torch and onnxruntime; medians after warm-up; MACs from prunekit.metrics.count_macs.",
        "Speed-up = dense latency / pruned latency; efficiency = speed-up / MACs ratio (target ≥ 0.8 at batch 64).",
        f"ResNet-50 (224×224) is timed at batch 64 only with round_to={BIG_BATCH_ROUNDING}, and with 3 repeats.",
        "",
        "| model | target | round_to | MACs ratio | eager b1 | eager b64 | ORT b1 | ORT b64 | eff. eager b64 | eff. ORT b64 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(row: dict, key: str) -> str:
        return f"{row[key]['speedup']:.2f}×" if key in row else "-"

    for r in rows:
        eff = lambda k: f"{r[k]:.2f}" if k in r else "-"  # noqa: E731
        rounding = f"{r['round_to']} (≤{NARROW_CHANNELS}-ch layers: {NARROW_ROUND_TO})" if r.get("layer_round_to") else str(r["round_to"])
        lines.append(f"| {r['model']} | {r['target']}× | {rounding} | {r['macs_ratio']:.2f} | {fmt(r, 'eager_b1')} | {fmt(r, 'eager_b64')} | "
                     f"{fmt(r, 'ort_b1')} | {fmt(r, 'ort_b64')} | {eff('eager_b64_efficiency')} | {eff('ort_b64_efficiency')} |")
    lines += ["", f"Total run time: {elapsed / 60:.1f} min."]
    write_text(out / "structured_speedup.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
