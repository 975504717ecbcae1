"""bf16 autocast vs fp32 training on CPU: throughput and accuracy, CIFAR ResNet-20 on a CIFAR-10 subset.

    python benchmarks/amp_cpu.py [--subset 256] [--epochs 3] [--batch-size 64] [--test 1024]

Three settings train the same initial weights on the same batches (seed 0, standard augmentation,
SGD + Nesterov, one-cycle LR): ``fp32``, ``fp32 + channels_last`` and ``bf16`` autocast
(``TrainConfig.precision``). Their epochs run interleaved in one process (epoch e of each setting,
then epoch e + 1 ...; each pause and exact resume goes through ``fit``'s checkpoint), so changing
machine load hits all alike. Throughput is ``fit``'s images/s per epoch, median over the epochs
after the first (warm-up excluded); accuracy and loss are measured in fp32 on ``--test`` images
drawn from the test split with a seeded permutation. Whether bf16 pays off on a CPU depends on native bf16 instructions
(AVX512-BF16 / AMX); the CPU flags are recorded with the results.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from common import WORK, data_root, setup_logging, write_results

from prunekit.metrics import evaluate
from prunekit.report.tables import Table
from prunekit.training import Callback, LRScheduleConfig, OptimizerConfig, TrainConfig, fit, read_train_state
from prunekit.zoo import create_model, get_loaders

SETTINGS = {"fp32": {}, "fp32 + channels_last": {"channels_last": True}, "bf16": {"precision": "bf16"}}


class _Pause(Exception):
    """Raised at the start of an epoch to hand the CPU to the next setting."""


class _PauseAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):  # noqa: ANN001 - Callback signature
        if epoch == self.epoch:
            raise _Pause


def cpu_flags() -> list[str]:
    """The CPU's bf16-relevant instruction-set flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in set(flags) if f.startswith(("avx512", "amx")) or f == "avx2")


def test_sample(loader, n: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:  # noqa: ANN001 - any batch loader
    """``n`` test images drawn with a seeded permutation (the split's file order is grouped by class), in batches."""
    xs, ys = zip(*loader)
    x, y = torch.cat(xs), torch.cat(ys)
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n]
    return [(x[pick[i:i + batch_size]], y[pick[i:i + batch_size]]) for i in range(0, len(pick), batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=256, help="training images (from the seeded CIFAR-10 train permutation)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test", type=int, default=1024, help="test images for accuracy (seeded random sample)")
    args = parser.parse_args()
    setup_logging()
    data = get_loaders("cifar10", data_root(), batch_size=args.batch_size, val_fraction=0.0, subset=args.subset, progress=False)
    test = test_sample(data.test, args.test, args.batch_size)
    torch.manual_seed(0)
    initial = create_model("resnet20", data.num_classes, data.input_shape)
    base = dict(epochs=args.epochs, optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
                lr_schedule=LRScheduleConfig(name="onecycle", pct_start=0.15), eval_every_epochs=0)
    configs = {name: TrainConfig(**base, **extra) for name, extra in SETTINGS.items()}
    models = {name: copy.deepcopy(initial) for name in configs}
    work = WORK / "amp_cpu"
    work.mkdir(parents=True, exist_ok=True)
    checkpoints = {name: work / f"{name.replace(' ', '_').replace('+', '')}.safetensors" for name in configs}
    for path in checkpoints.values():
        path.unlink(missing_ok=True)  # this benchmark's own scratch files: every run measures from scratch
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for name, config in configs.items():
            try:
                fit(models[name], data.train, config, checkpoint=checkpoints[name], callbacks=[_PauseAt(epoch + 1)], progress=False,
                    description=f"{name} training")
            except _Pause:
                pass
    rows, records = [], {}
    for name in configs:
        history = read_train_state(checkpoints[name]).extra["history"]
        ev = evaluate(models[name], test)
        speeds = [r["images_per_second"] for r in history]
        records[name] = {"images_per_second": speeds, "median_images_per_second": statistics.median(speeds[1:] or speeds),
                         "train_loss": [r["train_loss"] for r in history], "test_accuracy": ev.accuracy, "test_loss": ev.loss,
                         "epoch_seconds": [r["seconds"] for r in history]}
    reference = records["fp32"]["median_images_per_second"]
    for name, rec in records.items():
        rec["speedup_vs_fp32"] = rec["median_images_per_second"] / reference
        rows.append([name, round(rec["median_images_per_second"], 1), f"{rec['speedup_vs_fp32']:.2f}×", round(rec["train_loss"][-1], 3),
                     f"{100 * rec['test_accuracy']:.2f}%", round(rec["test_loss"], 3)])
    flags = cpu_flags()
    payload = {"model": "resnet20", "dataset": "cifar10", "subset": args.subset, "epochs": args.epochs, "batch_size": args.batch_size,
               "test_images": sum(len(y) for _, y in test), "threads": torch.get_num_threads(), "cpu_flags": flags,
               "total_seconds": time.perf_counter() - start, "settings": records}
    note = (f"Median images/s of epochs 2–{args.epochs} (epoch 1 is warm-up), epochs interleaved across settings in one process, "
            f"{torch.get_num_threads()} threads; CPU flags: {', '.join(flags) or 'unknown'}. Accuracy on {payload['test_images']} test images "
            f"after {args.epochs} epochs on {args.subset} training images: a small budget, for comparing settings, not a trained model.")
    table = Table(f"ResNet-20, CIFAR-10 subset ({args.subset} images, batch {args.batch_size})",
                  ["setting", "images/s", "vs fp32", "final train loss", "test accuracy", "test loss"], rows, note)
    write_results("amp_cpu", payload, [table], preamble=__doc__.split("\n\n")[0], command="python benchmarks/amp_cpu.py")
    print(table.to_markdown())


if __name__ == "__main__":
    main()
