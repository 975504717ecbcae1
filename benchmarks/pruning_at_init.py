"""Pruning at initialisation on LeNet-300-100 / MNIST: SNIP, SynFlow, random, and random with SNIP's layer densities.

    OMP_NUM_THREADS=1 python benchmarks/pruning_at_init.py [--sparsities 0.9 0.95 0.98] [--seeds 0 1 2] [--epochs 5] [--cached-only]

Each cell (criterion, sparsity, seed) draws a fresh LeNet-300-100 with variance-scaling
(Glorot-normal) weights and zero biases from the seed, prunes it before any training with
:func:`prunekit.pruners.at_init.prune_at_init` (global scope; SNIP from one training batch of 100;
SynFlow data-free over 100 rounds of an exponential schedule; random: uniform global scores), and
trains the sparse net with its masks fixed. ``random (SNIP densities)`` keeps exactly SNIP's
per-layer counts of the same seed, at random positions (the control of Frankle et al. 2021).
Training budget (the paper: 250K iterations of batch 100): ``--epochs`` epochs (default 5: 2,700 iterations) of batch 100 on the
54,000 training images left after a seeded 10% validation split, SGD momentum 0.9, lr 0.1 with
cosine decay, weight decay 5e-4. The budget was fixed in advance, not tuned (no time on the
contended CPU); the validation error is reported beside the test error and nothing was chosen by
test error. Cells are cached under ``benchmarks/work/pruning_at_init/`` (atomic JSON per cell),
so an interrupted run resumes; ``--cached-only`` writes the tables from the finished cells.

The longer budget closer to the paper's (100 epochs: 54,000 iterations, about a fifth of its 250K), for SNIP at
95% and 98% only (about 5 minutes per cell on one core), then the tables with both budgets::

    OMP_NUM_THREADS=1 python benchmarks/pruning_at_init.py --epochs 100 --methods snip --sparsities 0.95 0.98
    OMP_NUM_THREADS=1 python benchmarks/pruning_at_init.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict

import torch
from common import WORK, data_root, setup_logging, write_results

from prunekit._io import write_json
from prunekit.experiment.rundir import settings_hash
from prunekit.metrics import evaluate
from prunekit.pruners.at_init import AtInitConfig, prune_at_init, random_masks_like, reinitialize
from prunekit.report.tables import Table
from prunekit.training import LRScheduleConfig, OptimizerConfig, TrainConfig, fit
from prunekit.zoo import create_model, get_loaders

CELLS = WORK / "pruning_at_init"
#: Bump when the pruning or training code changes what a cell computes (old cells are then not reused).
CODE_VERSION = 1
METHODS = ("snip", "synflow", "random", "random (SNIP densities)")
#: Lee et al. 2019, Table 1 (LeNet-300-100): test error (%) at each sparsity.
PAPER = {0.95: 1.6, 0.98: 2.4}


def _train_config(epochs: float, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, seed=seed, optimizer=OptimizerConfig(lr=0.1, momentum=0.9, weight_decay=5e-4),
                       lr_schedule=LRScheduleConfig(name="cosine"), eval_every_epochs=0)


def _fresh(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return reinitialize(create_model("lenet_300_100"), "glorot_normal")


def run_cell(method: str, sparsity: float, seed: int, epochs: float, cached_only: bool) -> dict | None:
    settings = {"method": method, "sparsity": sparsity, "seed": seed, "epochs": epochs, "code": CODE_VERSION}
    path = CELLS / f"{method.split()[0]}-{sparsity}-{seed}-{settings_hash(settings)}.json"
    if path.exists():
        return json.loads(path.read_text())
    if cached_only:
        return None
    data = get_loaders("mnist", data_root(), batch_size=100, val_fraction=0.1, seed=seed, progress=False)
    model = _fresh(seed)
    start = time.perf_counter()
    if method == "random (SNIP densities)":
        masks = random_masks_like(prune_at_init(_fresh(seed), AtInitConfig(criterion="snip", sparsity=sparsity), data.train), seed)
        masks.attach(model)
    else:
        masks = prune_at_init(model, AtInitConfig(criterion=method, sparsity=sparsity, seed=seed), data.train)
    prune_seconds = time.perf_counter() - start
    fit(model, data.train, _train_config(epochs, seed), progress=False, description=f"{method} {sparsity}")
    record = {"settings": settings, "layer_sparsity": masks.layer_sparsity(), "sparsity": masks.sparsity(),
              "val_error": 100 * (1 - evaluate(model, data.val).accuracy), "test_error": 100 * (1 - evaluate(model, data.test).accuracy),
              "prune_seconds": prune_seconds, "seconds": time.perf_counter() - start}
    write_json(path, record)
    return record


def _cell(values: list[float], expected: int) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    text = f"{statistics.mean(values):.2f} ± {std:.2f}" if len(values) > 1 else f"{values[0]:.2f}"
    return text if len(values) == expected else f"{text} (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--longer-epochs", type=float, default=100.0, help="also tabulate the finished cells trained this long (never trains them)")
    parser.add_argument("--cached-only", action="store_true", help="write the tables from the finished cells; train nothing")
    args = parser.parse_args()
    setup_logging()
    test, val = defaultdict(list), defaultdict(list)
    layers: dict[tuple[str, float], dict[str, float]] = {}
    for seed in args.seeds:  # one seed's whole grid first, so an interrupted run has every cell at least once
        for sparsity in args.sparsities:
            for method in args.methods:
                record = run_cell(method, sparsity, seed, args.epochs, args.cached_only)
                if record is not None:
                    test[method, sparsity].append(record["test_error"])
                    val[method, sparsity].append(record["val_error"])
                    layers.setdefault((method, sparsity), record["layer_sparsity"])
    n = len(args.seeds)
    head = ["method", *[f"{100 * s:g}%" for s in args.sparsities]]
    rows = [[m, *[_cell(test[m, s], n) for s in args.sparsities]] for m in args.methods]
    rows.append(["SNIP (Lee et al. 2019, Table 1)", *[f"{PAPER[s]:.1f}" if s in PAPER else "-" for s in args.sparsities]])
    val_rows = [[m, *[_cell(val[m, s], n) for s in args.sparsities]] for m in args.methods]
    targets = []
    for s, paper in PAPER.items():
        if test["snip", s]:
            ours = statistics.mean(test["snip", s])
            targets.append([f"SNIP at {100 * s:g}%", f"≤ {paper}", f"{ours:.2f}", "yes" if ours <= paper else "NO"])
    longer = {(m, s): [r["test_error"] for seed in args.seeds if (r := run_cell(m, s, seed, args.longer_epochs, True)) is not None]
              for m in args.methods for s in args.sparsities} if args.longer_epochs != args.epochs else {}
    for s, paper in PAPER.items():
        if len(longer.get(("snip", s), [])) == n:
            ours = statistics.mean(longer["snip", s])
            targets.append([f"SNIP at {100 * s:g}% ({args.longer_epochs:g} epochs)", f"≤ {paper}", f"{ours:.2f}", "yes" if ours <= paper else "NO"])
    longer_rows = [[m, *[_cell(longer[m, s], n) for s in args.sparsities]] for m in args.methods if any(longer[m, s] for s in args.sparsities)]
    layer_names = sorted({name for d in layers.values() for name in d})
    layer_rows = [[m, f"{100 * s:g}%", *[f"{100 * layers[m, s][name]:.2f}" for name in layer_names]] for (m, s) in sorted(layers) if m != "random (SNIP densities)"]
    tables = [
        Table(f"LeNet-300-100 on MNIST, pruned at initialisation: test error (%) by sparsity, mean ± std over seeds {args.seeds}", head, rows),
        Table("The same cells: validation error (%) (5,400 held-out training images)", head, val_rows),
        Table("Targets (SNIP, mean test error)", ["cell", "paper", "ours", "met"], targets),
        Table(f"Longer budget ({args.longer_epochs:g} epochs, same schedule; only the cells run): test error (%)", head, longer_rows),
        Table("Per-layer sparsity (%) of the masks (the first finished seed of each cell)", ["method", "sparsity", *layer_names], layer_rows),
    ]
    payload = {"sparsities": args.sparsities, "seeds": args.seeds, "epochs": args.epochs, "paper": {str(k): v for k, v in PAPER.items()},
               "test_error": {f"{m}@{s}": v for (m, s), v in test.items()}, "val_error": {f"{m}@{s}": v for (m, s), v in val.items()},
               "layer_sparsity": {f"{m}@{s}": v for (m, s), v in layers.items()},
               "longer_epochs": args.longer_epochs, "longer_test_error": {f"{m}@{s}": v for (m, s), v in longer.items() if v}}
    write_results("pruning_at_init", payload, tables, preamble=__doc__.split("\n\n", 1)[1],
                  command=f"python benchmarks/pruning_at_init.py --epochs {args.epochs:g} --seeds {' '.join(map(str, args.seeds))}")
    print(tables[0].to_markdown())


if __name__ == "__main__":
    main()
