"""Corruption severities against trained models: accuracy of every corruption at severities 1..5.

A calibration check, not a robustness result: severity 5 should be clearly harder than 1 for every
type, on 28×28 grey (LeNet-300-100, MNIST, the cached dense checkpoint of ``stop_condition.py``:
8 epochs Adam) and 32×32 colour images (the user ResNet-20 of ``own_data.py``: 10 epochs on 1,000
CIFAR-10 PNGs per class, run that first with ``--epochs 10``; its row is skipped when the checkpoint
is missing). Evaluated on the first ``--mnist-examples`` / ``--cifar-examples`` test examples, one
thread, seed 0.

    python benchmarks/corruption_calibration.py   # writes benchmarks/results/corruption_calibration.{json,md}
"""

from __future__ import annotations

import argparse

import torch
from common import WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit.metrics import CORRUPTIONS, FirstExamples, corruption_accuracy, evaluate
from prunekit.report.tables import Table
from prunekit.training import TrainConfig
from prunekit.zoo import get_loaders
from prunekit.zoo.checkpoints import load_weights
from prunekit.zoo.data import image_folder_loaders
from prunekit.zoo.models.registry import create_model

CIFAR_FOLDER, CIFAR_CHECKPOINT = WORK / "own_data" / "cifar10_png_1000", WORK / "own_data" / "user_resnet20_1000_10ep.pt"


def by_severity(model: torch.nn.Module, test: FirstExamples) -> dict[str, object]:
    """Clean accuracy and, per corruption, accuracy at severities 1..5."""
    rows: dict[str, list[float]] = {name: [] for name in CORRUPTIONS.names()}
    for severity in range(1, 6):
        for name, accuracy in corruption_accuracy(model, test, CORRUPTIONS.names(), severity=severity).items():
            rows[name].append(accuracy)
    return {"examples": sum(len(y) for _, y in test), "clean": evaluate(model, test).accuracy, "by_severity": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-examples", type=int, default=2000)
    parser.add_argument("--cifar-examples", type=int, default=500)
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(1)
    results = {}
    lenet, _ = dense_checkpoint("lenet_300_100", "mnist", TrainConfig(epochs=8, optimizer={"name": "adam", "lr": 1e-3}))
    mnist = get_loaders("mnist", data_root(), batch_size=500, progress=False)
    results["lenet_300_100 / MNIST"] = by_severity(lenet.eval(), FirstExamples(mnist.test, examples=args.mnist_examples))
    if CIFAR_CHECKPOINT.exists():
        resnet = create_model("resnet20")
        resnet.load_state_dict(load_weights(CIFAR_CHECKPOINT, resnet))
        cifar = image_folder_loaders(CIFAR_FOLDER, batch_size=250, seed=0)
        results["resnet20 / CIFAR-10 PNGs"] = by_severity(resnet.eval(), FirstExamples(cifar.test, examples=args.cifar_examples))
    tables = [Table(f"{label}: {r['examples']} test examples, clean accuracy {100 * r['clean']:.1f}%",
                    ["corruption", *(f"severity {s} (%)" for s in range(1, 6))],
                    [[name, *(round(100 * a, 1) for a in accs)] for name, accs in r["by_severity"].items()])
             for label, r in results.items()]
    write_results("corruption_calibration", {"results": results}, tables, preamble=__doc__.split("\n\n")[1])


if __name__ == "__main__":
    main()
