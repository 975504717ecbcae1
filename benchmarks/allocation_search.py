"""Search vs fixed per-layer allocation at equal MACs: CIFAR-10 ResNet-20 at 2x (and 3x) fewer MACs.

    python benchmarks/allocation_search.py                          # 2x and 3x, seeds 0 1 2, every strategy
    python benchmarks/allocation_search.py --targets 2 --seeds 0    # one cell, e.g. to try the budget

From the committed dense checkpoint (``benchmarks/cifar_dense.py``), each allocation prunes to the
same MACs target with the library's defaults otherwise (L2 importance, ``round_to="auto"``):

- **uniform**: every group loses the same fraction (``allocation="uniform"``);
- **global**: one L2 ranking over all groups (``allocation="global"``, the default for a MACs target);
- **sensitivity**, **evolutionary**, **rl**: ``prunekit.analysis.search_ratios`` with that strategy
  (``SearchConfig`` defaults: 40 candidates, each scored on 4 validation batches after re-estimating
  BatchNorm on 4 training batches), then the searched ratios pruned by the normal pruner;
- **fastnas**: nvidia-modelopt's FastNAS at the same FLOPs budget and the same scoring (run when
  ``modelopt`` imports; it is not a prunekit dependency, see ``MODELOPT_INSTALL``).

Every pruned model then gets the same fine-tuning budget (``--epochs`` epochs of SGD, lr 0.01
cosine, on the first ``--subset`` training images, of which 10% are held out as the validation
split the searches score on), and the test set is evaluated once per model. The seed drives the
search and the fine-tuning's batch order and crops; the validation split is the same for every seed. Target (issue 10):
the best search ≥ +0.3 points over global, mean over the seeds. Each finished cell is cached under
``benchmarks/work/allocation_search/`` (resumable; searches keep their scored candidates there too).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from cifar_dense import cifar_finetune_config, committed_resnet20, reseeded
from common import RESULTS, WORK, setup_logging, write_results

from prunekit._io import write_json
from prunekit.analysis import SearchConfig, search_ratios
from prunekit.analysis.group_space import first_batches
from prunekit.metrics import count_macs, evaluate
from prunekit.pruners import StructuredConfig, StructuredPruner
from prunekit.pruners.result import layer_channels
from prunekit.report.tables import Table
from prunekit.training import fit

SHAPE = (3, 32, 32)
FOLDER = WORK / "allocation_search"
FIXED = ("uniform", "global")
SEARCHED = ("sensitivity", "evolutionary", "rl", "fastnas")
#: nvidia-modelopt is not a dependency of prunekit; it installs on this CPU machine next to the torch pin with
MODELOPT_INSTALL = ("pip install --no-deps --target <dir> nvidia-modelopt==0.47.0 torchprofile==0.0.4 requests urllib3 idna certifi "
                    "charset-normalizer ninja nvidia-ml-py omegaconf antlr4-python3-runtime pulp regex  # then PYTHONPATH=<dir>")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--targets", type=float, nargs="+", default=[2.0, 3.0], help="MACs reductions")
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
HAVE_MODELOPT = importlib.util.find_spec("modelopt") is not None
parser.add_argument("--strategies", nargs="+", default=[*FIXED, *SEARCHED] if HAVE_MODELOPT else [*FIXED, *SEARCHED[:-1]], choices=[*FIXED, *SEARCHED])
parser.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs over the subset")
parser.add_argument("--subset", type=int, default=15000, help="training images (10%% of them the validation split)")
parser.add_argument("--trials", type=int, default=40, help="candidates per evolutionary / rl search")
parser.add_argument("--cached-only", action="store_true", help="tabulate the finished cells only (the missing ones are named), train nothing")


def prune(strategy: str, target: float, seed: int, dense: torch.nn.Module, x: torch.Tensor, data: Any, trials: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``dense`` pruned to ``target`` by ``strategy`` (a copy), with the channels it kept and what the search found."""
    model = copy.deepcopy(dense).eval()
    start = time.perf_counter()
    found: dict[str, Any] = {}
    if strategy in FIXED:
        StructuredPruner(StructuredConfig(macs_reduction=target, allocation=strategy)).prune(model, x)
    elif strategy == "fastnas":
        model = fastnas(model, target, x, data, FOLDER / f"fastnas-x{target:g}.pth")
    else:
        searched = search_ratios(model, x, StructuredConfig(macs_reduction=target), SearchConfig(strategy=strategy, trials=trials, seed=seed),
                                 train=data.train, val=data.val, cache_dir=FOLDER / f"search-{strategy}-x{target:g}-s{seed}-t{trials}", progress=False)
        searched.prune(model, x)
        found = {"search_accuracy": searched.accuracy, "candidates": searched.evaluated, "seconds_per_candidate": searched.seconds_per_candidate}
    before, after = layer_channels(dense), layer_channels(model)
    kept = {name: [after.get(name, (kind, width))[1], width] for name, (kind, width) in before.items()}
    return model, {"search_seconds": time.perf_counter() - start if strategy in SEARCHED else 0.0, "channels_kept": kept, **found}


def fastnas(model: torch.nn.Module, target: float, x: torch.Tensor, data: Any, checkpoint: Path) -> torch.nn.Module:
    """nvidia-modelopt's FastNAS at ``1/target`` of the dense FLOPs, on the same search budget as ours: candidates scored by
    accuracy on 4 validation batches after BatchNorm re-estimation on training batches; channels in steps of 8 (our staircase
    step here; its default of 32 leaves ResNet-20 three choices and cannot reach 2x)."""
    import modelopt.torch.prune as mtp  # optional; see MODELOPT_INSTALL

    val = first_batches(data.val, 4)
    bn = first_batches(data.train, 16)

    def score(m: torch.nn.Module) -> float:
        return evaluate(m, val).accuracy

    ratios = tuple(0.05 * i for i in range(1, 21))
    rules = {"nn.Conv2d": {"channels_ratio": ratios, "kernel_size": (), "channel_divisor": 8},
             "nn.BatchNorm2d": {"features_ratio": ratios, "feature_divisor": 8}}
    pruned, _ = mtp.prune(model, mode=[("fastnas", rules)], constraints={"flops": f"{100 / target:.4f}%"}, dummy_input=x,
                          config={"data_loader": bn, "score_func": score, "checkpoint": str(checkpoint), "verbose": False})
    return pruned.eval()


def cell_file(strategy: str, target: float, seed: int, args: argparse.Namespace) -> Path:
    key = f"{strategy}-x{target:g}-s{seed}-e{args.epochs:g}-n{args.subset}" + (f"-t{args.trials}" if strategy in ("evolutionary", "rl") else "")
    return FOLDER / f"{key}.json"


def cell(strategy: str, target: float, seed: int, dense: torch.nn.Module, x: torch.Tensor, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One pruned and fine-tuned model's record (cached)."""
    record_file = cell_file(strategy, target, seed, args)
    key = record_file.stem
    if record_file.exists():
        return json.loads(record_file.read_text())
    model, found = prune(strategy, target, seed, dense, x, data, args.trials)
    macs = count_macs(model, x).dense
    before = evaluate(model, data.val).accuracy
    start = time.perf_counter()
    fit(model, reseeded(data.train, seed), cifar_finetune_config(args.epochs, seed), progress=False, checkpoint=FOLDER / f"{key}.train.safetensors",
        description=f"fine-tune {strategy} x{target:g} seed {seed}")
    record = {"strategy": strategy, "target": target, "seed": seed, "macs": macs, "val_accuracy_before_finetune": before,
              "val_accuracy": evaluate(model, data.val).accuracy, "test_accuracy": evaluate(model, data.test).accuracy,
              "finetune_seconds": time.perf_counter() - start, **found}
    write_json(record_file, record)
    return record


def summarise(records: list[dict[str, Any]], dense_macs: int) -> tuple[list[list[str]], dict[str, Any]]:
    """Table rows (mean ± std over seeds per target and allocation, Δ vs global) and the target verdict per MACs target."""
    rows, verdicts = [], {}
    for target in sorted({r["target"] for r in records}):
        by_strategy: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            if r["target"] == target:
                by_strategy.setdefault(r["strategy"], []).append(r)
        means = {s: statistics.mean(100 * r["test_accuracy"] for r in rs) for s, rs in by_strategy.items()}
        for strategy, rs in by_strategy.items():
            accs = [100 * r["test_accuracy"] for r in rs]
            spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
            rows.append([f"{target:g}×", strategy, f"{statistics.mean(dense_macs / r['macs'] for r in rs):.3f}×", f"{means[strategy]:.2f}{spread}",
                         str(len(rs)), f"{statistics.mean(r['search_seconds'] for r in rs):.0f}",
                         f"{means[strategy] - means['global']:+.2f}" if "global" in means else "—"])
        ours = {s: m for s, m in means.items() if s in SEARCHED and s != "fastnas"}  # the target is about prunekit's searches
        if "global" in means and ours:
            best = max(ours, key=ours.get)
            delta = ours[best] - means["global"]
            verdicts[f"{target:g}x"] = {"best_search": best, "delta_vs_global": delta, "met": delta >= 0.3,
                                        "fastnas_delta_vs_global": means["fastnas"] - means["global"] if "fastnas" in means else None}
    return rows, verdicts


def modelopt_note() -> str:
    if not HAVE_MODELOPT:
        return f"nvidia-modelopt's FastNAS was not run: modelopt is not importable here (it is not a prunekit dependency; {MODELOPT_INSTALL})"
    from importlib.metadata import version

    return (f"fastnas: nvidia-modelopt {version('nvidia-modelopt')} FastNAS (its sensitivity profile + binary search at the FLOPs "
            "budget, scored like ours on 4 validation batches after BatchNorm re-estimation, channel divisor 8), installed beside the "
            f"torch pin with {MODELOPT_INSTALL}")


def main() -> None:
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(1)
    FOLDER.mkdir(parents=True, exist_ok=True)
    dense, dense_record, data = committed_resnet20(args.subset)
    x = torch.randn(1, *SHAPE)
    dense_macs = count_macs(dense, x).dense
    cells = [(s, t, seed) for t in args.targets for seed in args.seeds for s in args.strategies]
    missing = [c for c in cells if not cell_file(*c, args).exists()] if args.cached_only else []
    records = [cell(*c, dense, x, data, args) for c in cells if c not in missing]
    rows, verdicts = summarise(records, dense_macs)
    preamble = (f"CIFAR-10 ResNet-20 from the committed dense checkpoint ({100 * dense_record['test_accuracy']:.2f}% test). Each pruned model: "
                f"{args.epochs:g} epoch(s) of SGD (lr 0.01, cosine) on {args.subset} training images (10% held out for validation, which "
                f"the searches score on); test accuracy once per model; mean ± std over seeds {args.seeds}. Library defaults otherwise "
                f"(L2 importance, round_to='auto'). Target (issue 10): prunekit's best search ≥ +0.3 points over global. " + "; ".join(
                    f"{t}: {v['best_search']} {v['delta_vs_global']:+.2f} points ({'met' if v['met'] else 'NOT met'})"
                    + ("" if v["fastnas_delta_vs_global"] is None else f", FastNAS {v['fastnas_delta_vs_global']:+.2f}") for t, v in verdicts.items())
                + f". {modelopt_note()}." + (f" Not run yet (--cached-only): {', '.join(f'{s} {t:g}x seed {seed}' for s, t, seed in missing)}." if missing else ""))
    table = Table("Test accuracy after the same fine-tuning, per allocation", ["MACs target", "allocation", "MACs reduction", "test acc (%)", "seeds",
                                                                            "search s", "Δ vs global (points)"], rows)
    write_results("allocation_search", {"settings": vars(args), "dense_macs": dense_macs, "dense_test_accuracy": dense_record["test_accuracy"],
                                        "records": records, "missing": missing, "verdicts": verdicts, "modelopt": modelopt_note()}, [table], preamble,
                  "python benchmarks/allocation_search.py")
    print(Path(RESULTS / "allocation_search.md").read_text())


if __name__ == "__main__":
    main()
