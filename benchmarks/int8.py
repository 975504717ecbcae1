"""int8 after pruning: accuracy, size and onnxruntime latency of a CIFAR-10 ResNet-20, dense vs
structurally pruned (2x fewer MACs, from the ``structured_resnet20`` run) vs pruned + int8; also the
same recipe with channels rounded to multiples of 8 (``prune.round_to=8``, no baselines; trained
here if missing, about 10 minutes), which is what makes pruned models fast in onnxruntime.

    python benchmarks/int8.py

Every model is exported with the dynamo ONNX exporter and validated in onnxruntime; int8 is static
post-training quantization (QDQ, per-channel weights, 8 calibration batches of training images).
Latencies are medians of all models interleaved round-robin in one process (onnxruntime, one
thread), at batch 1 and 64. Run benchmarks/structured_accuracy.py (part "prunekit") first.
"""

from __future__ import annotations

import json
from itertools import islice

import torch
from cifar_dense import cifar_train_config
from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit.deployment import evaluate_onnx, export_onnx, quantize_int8
from prunekit.deployment.onnx_export import OnnxRunner
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_dir_for, run_recipe
from prunekit.metrics import compare_latency
from prunekit.report.tables import Table
from prunekit.zoo import get_loaders


def recipe_overrides(record: dict) -> list[str]:
    """Settings that point ``structured_resnet20`` at the shared dense checkpoint and the data."""
    return [f"model.checkpoint={record['weights']}", f"data.root={data_root()}"]


def main() -> None:
    setup_logging()
    torch.set_num_threads(1)
    dense, record = dense_checkpoint("resnet20", "cifar10", cifar_train_config(), progress=False)
    recipe = load_recipe("structured_resnet20", recipe_overrides(record))
    run = run_dir_for(recipe, WORK / "runs").path
    rounded = run_recipe(load_recipe("structured_resnet20", [*recipe_overrides(record), "prune.round_to=8", "prune.baselines=[]"]),
                         WORK / "runs", progress=False)
    summary = json.loads((run / "summary.json").read_text())
    data = get_loaders("cifar10", data_root(), batch_size=128, val_fraction=0.1, seed=0, progress=False)
    calibration = [x for x, _ in islice(iter(data.train), 8)]
    out = WORK / "int8"
    x = next(iter(data.test))[0]
    export_onnx(dense.eval(), x[:8], out / "dense.onnx")
    quantize_int8(out / "dense.onnx", out / "dense.int8.onnx", calibration=calibration)
    files = {"dense": out / "dense.onnx", "dense + int8": out / "dense.int8.onnx",
             "pruned 2× MACs": run / "export" / "model.onnx", "pruned 2× MACs + int8": run / "export" / "model.int8.onnx",
             "pruned 2× MACs, round_to 8": rounded / "export" / "model.onnx",
             "pruned 2× MACs, round_to 8 + int8": rounded / "export" / "model.int8.onnx"}
    accuracy = {name: evaluate_onnx(path, data.test, threads=1).accuracy for name, path in files.items()}
    runners = {name: OnnxRunner(path, threads=1) for name, path in files.items()}
    latency = {batch: compare_latency(runners, x[:batch] if batch <= len(x) else x.repeat(2, 1, 1, 1)[:batch], warmup=5, repeats=30)
               for batch in (1, 64)}
    rows, payload = [], {}
    base = {b: latency[b]["dense"].median_ms for b in latency}
    for name, path in files.items():
        size = path.stat().st_size
        payload[name] = {"bytes": size, "accuracy": accuracy[name], "latency_ms": {b: latency[b][name].median_ms for b in latency}}
        rows.append([name, round(100 * accuracy[name], 2), f"{size / 1e6:.3f}", round(files["dense"].stat().st_size / size, 2),
                     *(f"{latency[b][name].median_ms:.2f} ({base[b] / latency[b][name].median_ms:.2f}×)" for b in (1, 64))])
    rounded_summary = json.loads((rounded / "summary.json").read_text())
    payload["pruned_summary"] = {"macs_reduction": summary["dense"]["macs"] / summary["pruned"]["macs"], "run": run.name}
    payload["rounded_summary"] = {"macs_reduction": rounded_summary["dense"]["macs"] / rounded_summary["pruned"]["macs"], "run": rounded.name}
    write_results("int8", payload, [Table("ResNet-20 / CIFAR-10 in onnxruntime (one thread)",
                                          ["model", "test acc (%)", "ONNX MB", "smaller than dense", "latency b1 ms (speed-up)", "latency b64 ms (speed-up)"], rows,
                                          note="CIFAR-10 here is the lossy JPEG-derived copy in ../shared/data.")],
                  preamble=__doc__.split("\n\n", 1)[1])
    print((RESULTS / "int8.md").read_text())


if __name__ == "__main__":
    main()
