""""Lost in Pruning" (Liebenwein et al. 2021): prune potential on the test set vs under corruption, with and
without augmentation during retraining.

Per network, iterative global magnitude pruning (rate 0.5 per round: 2×, 4×, … 64× compression of the
prunable weights, 6 rounds), each round retrained briefly with Adam 1e-4 (LeNet-300-100: 1 epoch;
LeNet-5: a quarter of an epoch, to fit the shared 2-core machine), once on clean batches and once with ``TrainConfig.augment`` corrupting each
retraining batch with probability 0.5 by a seeded random corruption of the suite (all 11 types,
severity 1..5). Dense models come from ``common.dense_checkpoint`` (LeNet-300-100: 8 epochs Adam 1e-3,
shared with stop_condition.py; LeNet-5: 3 epochs Adam 1e-3), trained on clean data only. Every model is
evaluated on the test set (LeNet-300-100: all 10,000; LeNet-5: the first 5,000, for time), clean and under each of the 11 corruptions at severity 3 (the same
seeded corrupted batches for every model); a family's accuracy is the mean of its corruptions'.
Prune potential: the largest swept compression whose accuracy on that distribution is within
δ = 0.5 points of the dense model's there (``prunekit.metrics.prune_potential``); ``—``: no swept
point qualifies (below 2×). Nothing is tuned: the settings were fixed before the run, and the test
set is evaluated once per model. The training-time corruptions are the same types as the evaluated
ones (at random severities, with other noise draws), so the augmented arm measures robustness to a
known shift, as in the paper's guideline, not to an unseen one. ResNet-20 (CIFAR-10) starts from the shared
dense checkpoint of ``cifar_dense.py`` (committed under ``benchmarks/checkpoints/``), retrains each round for one
epoch with SGD 0.01 (momentum 0.9) and is evaluated on the first 5,000 test images.

    OMP_NUM_THREADS=1 python benchmarks/lost_in_pruning.py   # writes benchmarks/results/lost_in_pruning.{json,md,*.png}

Resumable: rounds are cached under ``benchmarks/work/lost_in_pruning/<network>-<dense key>-s<severity>/<arm>/``
and each model's evaluation beside them; a rerun picks up where it stopped. Networks may run in
separate processes (``--networks lenet5/mnist``); each run rewrites the results from all finished ones.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from cifar_dense import cifar_train_config
from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit._io import write_json
from prunekit.metrics import FirstExamples, corruption_accuracy, evaluate
from prunekit.metrics.corruptions import CORRUPTIONS, families
from prunekit.metrics.prune_potential import prune_potential
from prunekit.pruners import UnstructuredConfig
from prunekit.report import plots
from prunekit.report.tables import Table
from prunekit.schedules import build_schedule
from prunekit.training import AugmentConfig, TrainConfig
from prunekit.training.prune_finetune import load_round, prune_finetune
from prunekit.zoo import get_loaders

OUT = WORK / "lost_in_pruning"
DELTA = 0.005
RATE, ROUNDS = 0.5, 6
ADAM = {"name": "adam", "lr": 1e-3}
NETWORKS: dict[str, dict[str, Any]] = {
    "lenet_300_100/mnist": {"model": "lenet_300_100", "dataset": "mnist", "dense": TrainConfig(epochs=8, optimizer=ADAM), "finetune_epochs": 1.0},
    "lenet5/mnist": {"model": "lenet5", "dataset": "mnist", "dense": TrainConfig(epochs=3, optimizer=ADAM), "finetune_epochs": 0.25,
                     "examples": 5000},
    "lenet5/fashion_mnist": {"model": "lenet5", "dataset": "fashion_mnist", "dense": TrainConfig(epochs=3, optimizer=ADAM),
                             "finetune_epochs": 0.25, "examples": 5000},
}
#: The retraining augmentation of the "augmented" arm.
AUGMENT = AugmentConfig(corruptions=("all",), severities=(1, 2, 3, 4, 5), p=0.5)
ARMS = {"clean": None, "augmented": AUGMENT}


def resnet20_setup() -> dict[str, Any]:
    """The ResNet-20 row's settings: the shared dense CIFAR-10 ResNet-20 of ``cifar_dense.py`` (committed under
    ``benchmarks/checkpoints/``), one epoch of SGD 0.01 retraining per round, the first 5,000 test images."""
    return {"model": "resnet20", "dataset": "cifar10", "dense": cifar_train_config(), "finetune_epochs": 1.0,
            "finetune_optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}, "examples": 5000}


def distributions(corrupted: dict[str, float], clean: float) -> dict[str, float]:
    """Test accuracy, each family's mean corruption accuracy and the mean over all corruptions."""
    out = {"test": clean}
    for family, names in families().items():
        present = [corrupted[n] for n in names if n in corrupted]
        if present:
            out[family] = statistics.mean(present)
    out["all corruptions"] = statistics.mean(corrupted.values())
    return out


def evaluated(path: Path, model: torch.nn.Module, test: Any, severity: int) -> dict[str, Any]:
    """``model``'s clean and corrupted test accuracies, cached in ``path``."""
    if path.exists():
        return json.loads(path.read_text())
    model.eval()
    clean = evaluate(model, test).accuracy
    corrupted = corruption_accuracy(model, test, CORRUPTIONS.names(), severity=severity, seed=0)
    record = {"test": clean, "corruptions": corrupted, "distributions": distributions(corrupted, clean)}
    write_json(path, record)
    return record


def run_network(label: str, setup: dict[str, Any], severity: int) -> dict[str, Any]:
    dense, dense_record = dense_checkpoint(setup["model"], setup["dataset"], setup["dense"], progress=False)
    data = get_loaders(setup["dataset"], data_root(), batch_size=128, val_fraction=0.1, seed=0, progress=False)
    name = label.replace("/", "-")
    examples = setup.get("examples")
    test = FirstExamples(data.test, examples=examples) if examples else data.test
    # the cells of this dense model and evaluation (a retrained dense model starts afresh)
    work = OUT / (f"{name}-{dense_record['key']}-s{severity}" + (f"-n{examples}" if examples else ""))
    dense_eval = evaluated(work / "dense.json", dense, test, severity)
    dense_val = evaluate(dense, data.val).accuracy
    schedule = build_schedule({"name": "iterative", "rate": RATE, "final_sparsity": 1 - (1 - RATE) ** ROUNDS})
    arms = {}
    for arm, augment in ARMS.items():
        root = work / arm
        finetune = TrainConfig(epochs=setup["finetune_epochs"], optimizer=setup.get("finetune_optimizer", {"name": "adam", "lr": 1e-4}),
                               augment=augment, eval_every_epochs=0)
        start = time.perf_counter()
        records = prune_finetune(copy.deepcopy(dense), data.train, UnstructuredConfig(sparsity=schedule.final_sparsity, scope="global"),
                                 schedule, finetune, val=data.val, checkpoint_dir=root)
        sweep = []
        for record in records:
            model = load_round(copy.deepcopy(dense), root / f"round_{record.round:03d}")
            ev = evaluated(root / f"eval_round_{record.round:03d}.json", model, test, severity)
            compression = 1 / (1 - record.target_sparsity)
            sweep.append({"compression": compression, "sparsity": record.sparsity, "val_accuracy": record.accuracy, **ev})
        points = [(p["compression"], p["distributions"]) for p in sweep]
        arms[arm] = {"sweep": sweep, "prune_potential": prune_potential(points, dense_eval["distributions"], DELTA),
                     "seconds_this_run": time.perf_counter() - start}
    result = {"network": label, "dense_key": dense_record["key"], "test_examples": examples or data.test.dataset_size,
              "finetune_epochs": setup["finetune_epochs"], "dense_test_accuracy": dense_record["test_accuracy"],
              "dense_val_accuracy": dense_val, "dense": dense_eval, "arms": arms}
    write_json(OUT / f"{name}-s{severity}-result.json", result)
    return result


def _potential(value: float | None) -> str:
    return "—" if value is None else f"{value:g}×"


def _arms(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(arm, result["arms"][arm]) for arm in ARMS if arm in result["arms"]]


def tables(results: list[dict[str, Any]]) -> list[Table]:
    found = results[0]["dense"]["distributions"]
    dists = [d for d in ("test", *families(), "all corruptions") if d in found]
    potential = Table(f"Prune potential (largest compression within {100 * DELTA:g} points of dense), corruptions at the severity below",
                      ["network", "retraining", "test examples", *dists],
                      [[_label(r), arm, r.get("test_examples"), *(_potential(a["prune_potential"][d]) for d in dists)]
                       for r in results for arm, a in _arms(r)])
    accuracy = Table("Accuracy (%) per distribution: dense, and each swept compression",
                     ["network", "retraining", "compression", *dists],
                     [[_label(r), "—", "1× (dense)", *(round(100 * r["dense"]["distributions"][d], 2) for d in dists)] for r in results]
                     + [[_label(r), arm, f"{p['compression']:g}×", *(round(100 * p["distributions"][d], 2) for d in dists)]
                        for r in results for arm, a in _arms(r) for p in a["sweep"]])
    return [potential, accuracy]


def verdict(results: list[dict[str, Any]]) -> str:
    """The paper's two claims, checked on these numbers (``None`` potentials, below 2×, count as 1×)."""
    lines = []
    for r in results:
        clean = {d: v or 1.0 for d, v in r["arms"]["clean"]["prune_potential"].items()}
        aug = {d: v or 1.0 for d, v in r["arms"]["augmented"]["prune_potential"].items()}
        shifted = [d for d in ("all corruptions", *families()) if d in clean]
        lower = [d for d in shifted if clean[d] < clean["test"]]
        raised = [d for d in shifted if aug[d] > clean[d]]
        lines.append(f"- {_label(r)}: with clean retraining, prune potential under shift is lower than on test ({clean['test']:g}×) "
                     f"for {len(lower)} of {len(shifted)} distributions ({', '.join(f'{d} {clean[d]:g}×' for d in lower) or 'none'}); "
                     f"augmented retraining raises it for {len(raised)} of {len(shifted)} "
                     f"({', '.join(f'{d} {clean[d]:g}× → {aug[d]:g}×' for d in raised) or 'none'}); on test it goes {clean['test']:g}× → {aug['test']:g}×.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=[*NETWORKS, "resnet20/cifar10"])
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--tables-only", action="store_true", help="rewrite the results from the finished networks, run nothing")
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(1)
    for label in args.networks if not args.tables_only else ():
        setup = NETWORKS.get(label) or (resnet20_setup() if label == "resnet20/cifar10" else None)
        if setup is None:
            raise SystemExit(f"unknown network {label!r}; choose from {[*NETWORKS, 'resnet20/cifar10']}")
        run_network(label, setup, args.severity)
        write_tables(args.severity)
    write_tables(args.severity)


def carried_over(finished: set[str], severity: int) -> list[dict[str, Any]]:
    """The previous results file's networks that this work folder has not finished (a fresh checkout runs only some
    networks), each marked with the date of the run it comes from."""
    previous = RESULTS / "lost_in_pruning.json"
    if not previous.exists():
        return []
    record = json.loads(previous.read_text())
    if record.get("severity") != severity:
        return []
    since = record.get("generated", "an earlier run")
    return [{**r, "carried_over": r.get("carried_over", since)} for r in record.get("results", []) if r["network"] not in finished]


def _label(result: dict[str, Any]) -> str:
    return result["network"] + (f" (carried over from {result['carried_over']})" if result.get("carried_over") else "")


def write_tables(severity: int) -> None:
    """The results file from every network finished so far (several processes may run networks side by side)."""
    files = [OUT / f"{label.replace('/', '-')}-s{severity}-result.json" for label in [*NETWORKS, "resnet20/cifar10"]]
    results = [json.loads(f.read_text()) for f in files if f.exists()]
    results += carried_over({r["network"] for r in results}, severity)
    if not results:
        return
    for r in results:
        for arm, a in _arms(r):
            points = [(p["compression"], p["distributions"]) for p in a["sweep"]]
            fig = plots.accuracy_vs_ratio(points, r["dense"]["distributions"], a["prune_potential"], xlabel="compression (×)",
                                          title=f"{r['network']}, {arm} retraining (★ prune potential, δ 0.5)")
            fig.axes[0].set_xscale("log", base=2)
            plots.save_png(fig, str(RESULTS / f"lost_in_pruning_{r['network'].replace('/', '-')}_{arm}.png"))
    images = "\n".join(f"![{r['network']} {arm}](lost_in_pruning_{r['network'].replace('/', '-')}_{arm}.png)" for r in results for arm, _ in _arms(r))
    preamble = __doc__.split("\n\n", 1)[1] + f"\nSeverity {severity}.\n\n" + verdict(results) + "\n\n" + images + "\n"
    write_results("lost_in_pruning", {"delta": DELTA, "severity": severity, "augment": AUGMENT.model_dump(mode="json"), "results": results},
                  tables(results), preamble=preamble, command="OMP_NUM_THREADS=1 python benchmarks/lost_in_pruning.py")


if __name__ == "__main__":
    main()
