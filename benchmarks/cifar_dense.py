"""Train the shared dense CIFAR-10 checkpoints that the structured, N:M and int8 benchmarks start from.

    python benchmarks/cifar_dense.py [--model resnet20] [--epochs 30]

The budget is CPU-feasible: 30 epochs of SGD (Nesterov, one-cycle LR peaking at 0.1, weight decay
5e-4, batch 128, random crop + flip) in channels-last layout (about 27% faster per step on CPU than the
default layout), about 3–4 min per epoch for ResNet-20 on 2 idle cores.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from common import data_root, dense_checkpoint, setup_logging
from torch import nn

from prunekit.training import LRScheduleConfig, OptimizerConfig, TrainConfig
from prunekit.zoo import DataBundle, get_loaders
from prunekit.zoo.data.loaders import BatchLoader


def cifar_train_config(epochs: float = 30) -> TrainConfig:
    """The dense CIFAR-10 training budget shared by the benchmarks."""
    return TrainConfig(
        epochs=epochs,
        optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lr_schedule=LRScheduleConfig(name="onecycle", pct_start=0.15),
        eval_every_epochs=5,
        channels_last=True,
    )


def cifar_finetune_config(epochs: float, seed: int = 0) -> TrainConfig:
    """The short fine-tuning budget the CIFAR pruning benchmarks share: SGD lr 0.01 (Nesterov, weight decay 5e-4), cosine, no mid-run evaluation."""
    return TrainConfig(epochs=epochs, seed=seed, eval_every_epochs=0, lr_schedule=LRScheduleConfig(name="cosine"),
                       optimizer=OptimizerConfig(name="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4))


def committed_resnet20(subset: int | None) -> tuple[nn.Module, dict[str, Any], DataBundle]:
    """The shared dense CIFAR-10 ResNet-20 (committed under ``checkpoints/``; trained if stale or missing), its record, and
    the loaders the pruning benchmarks fine-tune on: the first ``subset`` training images, 10% of them the validation split."""
    dense, record = dense_checkpoint("resnet20", "cifar10", cifar_train_config(), progress=False)
    data = get_loaders("cifar10", data_root(), batch_size=128, val_fraction=0.1, seed=0, subset=subset, progress=False)
    return dense.eval(), record, data


def reseeded(loader: BatchLoader, seed: int) -> BatchLoader:
    """A copy of ``loader`` that draws its batch order and crops from ``seed`` (``TrainConfig.seed`` does not; the split stays)."""
    out = copy.copy(loader)
    out.seed = seed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=float, default=30)
    args = parser.parse_args()
    setup_logging()
    _, record = dense_checkpoint(args.model, "cifar10", cifar_train_config(args.epochs))
    print(f"{args.model}: test accuracy {100 * record['test_accuracy']:.2f}% after {record['train_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
