"""Multi-process training under torchrun: 1 vs N processes, throughput and accuracy (CIFAR ResNet-20).

    python benchmarks/ddp_scaling.py [--procs 1,2] [--subset 1024] [--epochs 2] [--global-batch 64] [--test 1000] [--threads 1]

Each setting is launched with ``torchrun --standalone --nproc_per_node=N`` running this script in
worker mode: ``prunekit.training.fit`` under a process group (gloo on CPU, nccl on CUDA GPUs,
one GPU per process). The global batch is fixed, so every setting takes the same optimizer steps
on the same examples (each of N processes gets ``global_batch / N`` per step from its shard) and
the accuracies are comparable. On CPU each process runs ``--threads`` threads (default 1, as in
the other benchmarks: on a loaded machine several threads per process spin and are slower than
one), so N processes use N times the cores of one. Throughput is ``fit``'s images/s (all ranks' examples over rank
0's epoch time) of the last epoch; accuracy is on ``--test`` test images (a seeded sample). Without
the CIFAR-10 copy (``PRUNEKIT_DATA`` or ../shared/data) synthetic 32×32 data stands in (said so in
the output).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import WORK, data_root, setup_logging, write_results

from prunekit.report.tables import Table


def _data(args: argparse.Namespace):
    """CIFAR-10 (a seeded subset) when its files are there, else synthetic 32×32 images; and its name."""
    from prunekit.zoo import get_loaders

    try:
        return get_loaders("cifar10", data_root(), batch_size=args.batch, val_fraction=0.0, subset=args.subset, download=False,
                           progress=False), "CIFAR-10"
    except Exception as exc:  # noqa: BLE001 - any missing/unreadable copy: fall back, and say so
        from prunekit.zoo.data.dataset import ArrayDataset
        from prunekit.zoo.data.loaders import BatchLoader, DataBundle

        g = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 10, (args.subset + args.test,), generator=g)
        images = (torch.rand(len(labels), 3, 32, 32, generator=g) * 64 + labels.view(-1, 1, 1, 1) * 16).to(torch.uint8)
        split = {"mean": [0.5] * 3, "std": [0.25] * 3, "name": "synthetic"}
        train = BatchLoader(ArrayDataset(images[: args.subset], labels[: args.subset], **split, split="train"), batch_size=args.batch, shuffle=True)
        test = BatchLoader(ArrayDataset(images[args.subset :], labels[args.subset :], **split, split="test"), batch_size=100)
        bundle = DataBundle("synthetic", train, None, test, 10, (3, 32, 32), tuple(map(str, range(10))), "synthetic")
        return bundle, f"synthetic 32x32 (no CIFAR-10 copy: {exc})"


def worker(args: argparse.Namespace) -> None:
    """One rank of a setting: train, then rank 0 writes the result file."""
    from prunekit.metrics import evaluate
    from prunekit.training import LRScheduleConfig, OptimizerConfig, TrainConfig, distributed, fit
    from prunekit.zoo import create_model
    from prunekit.zoo.data.loaders import BatchLoader

    cuda = torch.cuda.is_available()
    distributed.init_from_env("cuda" if cuda else "cpu")
    n = distributed.world_size()
    if not cuda:
        torch.set_num_threads(args.threads)
    device = distributed.local_device("cuda" if cuda else "cpu")
    args.batch = args.global_batch // n
    data, source = _data(args)
    torch.manual_seed(0)
    model = create_model("resnet20", data.num_classes, data.input_shape)
    config = TrainConfig(epochs=args.epochs, optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
                         lr_schedule=LRScheduleConfig(name="onecycle", pct_start=0.15), eval_every_epochs=0)
    start = time.perf_counter()
    result = fit(model, data.train, config, device=device, progress=False)
    seconds = time.perf_counter() - start
    if distributed.is_main_process():
        test = data.test.dataset  # its files may be sorted by class: a seeded sample of it
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.test]
        ev = evaluate(model, BatchLoader(test, pick, batch_size=100), device=device)
        record = {"processes": n, "backend": torch.distributed.get_backend() if distributed.is_distributed() else "none",
                  "device": str(device) if cuda else "cpu", "threads_per_process": torch.get_num_threads(), "data": source,
                  "per_process_batch": args.batch, "steps": result.steps, "train_seconds": seconds,
                  "images_per_second": result.final["images_per_second"], "test_accuracy": ev.accuracy, "test_images": ev.count}
        Path(args.result).write_text(json.dumps(record))
    distributed.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--subset", type=int, default=1024, help="training images (seeded CIFAR-10 train permutation)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    setup_logging()
    gpus = torch.cuda.device_count()
    procs = [int(p) for p in args.procs.split(",")]
    if any(args.global_batch % n for n in procs):
        raise SystemExit(f"--global-batch {args.global_batch} must divide by every process count in --procs {args.procs}")
    work = WORK / "ddp_scaling"
    work.mkdir(parents=True, exist_ok=True)
    rows, load = [], []
    for n in procs:
        load.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
        result = work / f"procs{n}.json"
        result.unlink(missing_ok=True)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__, "--worker",
                   f"--result={result}", f"--subset={args.subset}", f"--epochs={args.epochs}", f"--global-batch={args.global_batch}",
                   f"--test={args.test}", f"--threads={args.threads}"]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        rows.append(json.loads(result.read_text()))
    base = rows[0]["images_per_second"]
    table = Table("ResNet-20, same global batch and steps in every setting",
                  ["processes", "backend", "device", "threads/process", "batch/process", "steps", "images/s", "speed-up", "test accuracy"],
                  [[r["processes"], r["backend"], r["device"], r["threads_per_process"], r["per_process_batch"], r["steps"],
                    f"{r['images_per_second']:.1f}", f"{r['images_per_second'] / base:.2f}×", f"{100 * r['test_accuracy']:.2f}%"] for r in rows])
    hardware = (f"{gpus} CUDA GPU(s), NCCL" if gpus else f"no GPU available: CPU only ({os.cpu_count()} cores), gloo")
    preamble = (f"{hardware}. Data: {rows[0]['data']}, {args.subset} training images, {args.epochs} epochs, global batch "
                f"{args.global_batch}, accuracy on {rows[0]['test_images']} test images. Launched with "
                f"`torchrun --standalone --nproc_per_node=N`; on CPU each process runs {args.threads} thread(s), so N processes "
                f"use N times the cores of one (at most {os.cpu_count()} here): the speed-up is bounded by that and lowered by the "
                "gradient all-reduce and by other load on the machine"
                + (f" (1-minute load average before each setting: {', '.join(f'{v:.1f}' for v in load)})." if None not in load else "."))
    write_results("ddp_scaling", {"settings": vars(args) | {"gpus": gpus}, "rows": rows, "load_average": load}, [table], preamble)
    print(preamble)
    print(table.to_markdown())


if __name__ == "__main__":
    main()
