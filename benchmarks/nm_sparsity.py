"""N:M (2:4) sparsity on CIFAR-10 ResNet-20: accuracy against dense and against unstructured 50%,
with and without the channel-permutation search, at the same fine-tuning budget.

    python benchmarks/nm_sparsity.py

Starts from the shared dense ResNet-20 (benchmarks/cifar_dense.py) and runs the shipped recipe
``nm_resnet20``. The recipe also exports the 2:4 model to ONNX and int8. On CPU there is no 2:4
kernel: the N:M model runs dense-with-zeros (speed needs CUDA sparse tensor cores).
"""

from __future__ import annotations

import json

from cifar_dense import cifar_train_config
from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.report.tables import Table


def main() -> None:
    setup_logging()
    _, record = dense_checkpoint("resnet20", "cifar10", cifar_train_config(), progress=False)
    run = run_recipe(load_recipe("nm_resnet20", [f"model.checkpoint={record['weights']}", f"data.root={data_root()}"]),
                     WORK / "runs", progress=False)
    s = json.loads((run / "summary.json").read_text())
    rows = [["dense", 100.0, round(100 * s["dense"]["accuracy"], 2), None]]
    for row in s["curve"]:
        if row["round"] == 1:
            rows.append([row["method"], round(100 * row["fraction_remaining"], 2), round(100 * row["accuracy"], 2),
                         round(100 * row["accuracy_before_finetune"], 2)])
    tables = [Table("ResNet-20 / CIFAR-10 test accuracy (%), 3 fine-tuning epochs each",
                    ["model", "prunable weights kept (%)", "after fine-tuning", "before fine-tuning"], rows,
                    note="CIFAR-10 here is the lossy JPEG-derived copy in ../shared/data; figures are close to, not equal to, official CIFAR-10 figures.")]
    write_results("nm_sparsity", {"curve": s["curve"], "dense_accuracy": s["dense"]["accuracy"], "run": run.name}, tables,
                  preamble=__doc__.split("\n\n", 1)[1])
    print((RESULTS / "nm_sparsity.md").read_text())


if __name__ == "__main__":
    main()
