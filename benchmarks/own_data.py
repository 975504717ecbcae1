"""Own data end to end: a folder of PNGs and a user's own ``.pt`` checkpoint, pruned 2× by one ``prunekit prune`` command.

What a new user does, following only the README. The benchmark writes part of the CIFAR-10 copy
(../shared/data) as PNG files, ``<folder>/{train,test}/<class>/<n>.png`` (``--per-class`` training
and a fifth as many test images per class), and trains the "user's" CIFAR ResNet-20 on that folder
with a plain PyTorch loop outside prunekit (SGD 0.1, momentum 0.9, one-cycle, ``--epochs``), saved
with ``torch.save(model.state_dict(), "user_resnet20.pt")``. Then it runs, as a subprocess:

    prunekit prune resnet20 --data imagefolder:<folder> --checkpoint user_resnet20.pt --macs-reduction 2

with every other setting at its default (2 fine-tuning epochs, structured L2 pruning with the channel
rounding that the default runtime's staircase asks for), and reads the run's summary.json: test
accuracy of dense and pruned, MACs, and the speed-up measured side by side by the evaluation step.

    python benchmarks/own_data.py     # writes benchmarks/results/own_data.{json,md}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import WORK, data_root, setup_logging, write_results
from PIL import Image
from torch.nn import functional as F

from prunekit.report.tables import Table
from prunekit.zoo import create_model
from prunekit.zoo.data import image_folder_loaders, load_dataset


def write_png_folder(folder: Path, per_class: int) -> dict[str, int]:
    """``per_class`` training and ``per_class // 5`` test PNGs per class from the CIFAR-10 copy (first ones of each class)."""
    counts = {}
    for split, n in (("train", per_class), ("test", max(1, per_class // 5))):
        ds = load_dataset("cifar10", data_root(), split, download=False, progress=False)
        labels = ds.labels.numpy()
        written = 0
        for c, name in enumerate(ds.class_names):
            target = folder / split / name
            target.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(np.flatnonzero(labels == c)[:n]):
                path = target / f"{k:05d}.png"
                if not path.exists():
                    Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()).save(path)
                written += 1
        counts[split] = written
    return counts


def train_user_model(folder: Path, epochs: int, out: Path) -> dict:
    """The user's own training, outside prunekit: plain PyTorch, saved as a ``.pt`` state dict."""
    bundle = image_folder_loaders(folder, batch_size=128, val_fraction=0.0, seed=0, progress=False)
    torch.manual_seed(0)
    model = create_model("resnet20", bundle.num_classes, bundle.input_shape)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=epochs * len(bundle.train))
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in bundle.train:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            schedule.step()
    torch.save(model.state_dict(), out)
    return {"epochs": epochs, "train_images": bundle.train.dataset_size, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1000, help="training PNGs per class (test: a fifth of it)")
    parser.add_argument("--epochs", type=int, default=15, help="the user's own dense training epochs")
    args = parser.parse_args()
    setup_logging()
    work = WORK / "own_data"
    folder = work / f"cifar10_png_{args.per_class}"
    counts = write_png_folder(folder, args.per_class)
    checkpoint = work / f"user_resnet20_{args.per_class}_{args.epochs}ep.pt"
    training = json.loads(checkpoint.with_suffix(".json").read_text()) if checkpoint.with_suffix(".json").exists() else None
    if training is None:
        training = train_user_model(folder, args.epochs, checkpoint)
        checkpoint.with_suffix(".json").write_text(json.dumps(training))
    command = [sys.executable, "-m", "prunekit", "prune", "resnet20", "--data", f"imagefolder:{folder}", "--checkpoint", str(checkpoint),
               "--macs-reduction", "2", "--out", str(work / "runs"), "--force", "-q"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"prunekit prune failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    run_dir = max((work / "runs").glob(f"resnet20-on-{folder.name}-*"), key=lambda p: (p / "summary.json").stat().st_mtime)
    summary = json.loads((run_dir / "summary.json").read_text())
    dense, pruned = summary["dense"], summary["pruned"]
    steps = {step: json.loads((run_dir / "steps" / f"{step}.json").read_text()).get("seconds") for step in ("dense", "prune")}
    row = {"images": counts, "user_training": training, "command": " ".join(command[2:]), "prune_seconds": seconds, "step_seconds": steps,
           "dense_accuracy": dense["accuracy"], "pruned_accuracy": pruned["accuracy"], "agreement": pruned["agreement"],
           "dense_macs": dense["macs"], "pruned_macs": pruned["macs"], "theoretical_speedup": summary["theoretical_speedup"],
           "measured_speedup": summary.get("measured_speedup"), "latency_runtime": summary.get("latency_runtime"),
           "latency_batch_size": summary.get("latency_batch_size"), "dense_latency_ms": dense.get("latency_ms"),
           "pruned_latency_ms": pruned.get("latency_ms"), "run_dir": run_dir.name}
    table = Table("A PNG image folder and a user's .pt checkpoint, pruned by `prunekit prune --macs-reduction 2` (defaults)",
                  ["images (train/test)", "user training", "dense test (%)", "pruned test (%)", "agreement (%)", "MACs reduction",
                   "measured speed-up", "prune command (min)"],
                  [[f"{counts['train']}/{counts['test']}", f"{training['epochs']} epochs", round(100 * row["dense_accuracy"], 2),
                    round(100 * row["pruned_accuracy"], 2), round(100 * row["agreement"], 1), f"{row['theoretical_speedup']:.2f}×",
                    f"{row['measured_speedup']:.2f}× ({row['latency_runtime']}, batch {row['latency_batch_size']})" if row["measured_speedup"] else "n/a",
                    round(seconds / 60, 1)]])
    write_results("own_data", {"rows": [row]}, [table], "\n\n".join(__doc__.split("\n\n")[1:4]))


if __name__ == "__main__":
    main()
