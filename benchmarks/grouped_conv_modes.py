"""Grouped-conv modes: channel stripes vs whole groups vs ``grouped_conv="auto"`` on timm models with grouped convs.

Each model (timm, through the torchvision stand-in, random init with seed 0 and the coverage
benchmark's re-initialisation of degenerate parameters, 96×96 input) is pruned with
``StructuredPruner(grouped_conv=mode)`` (default ``round_to``, as the coverage benchmark prunes)
for a ratio target (0.5 of every group) and a MACs target (3× fewer). ``auto, stripes only`` is
what ``"auto"`` did before it chose per conv (stripes wherever exact, whole groups only where a
norm merges the stripes): the pruner with that choice preset. MACs are counted with
``prunekit.metrics.count_macs`` (dense). Reported: the MACs reduction, how many grouped convs
each run pruned by stripes / whole groups, and the prune call's time (one thread).

    python benchmarks/grouped_conv_modes.py      # writes benchmarks/results/grouped_conv_modes.{json,md}
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402
from prunekit.pruners import StructuredPruner  # noqa: E402
from prunekit.report.tables import Table  # noqa: E402
from structured_coverage import reinit_degenerate  # noqa: E402

MODELS = ("regnetx_002", "resnext26ts", "regnetz_005", "resnest14d")
MODES = ("channels", "groups", "auto, stripes only", "auto")
TARGETS = {"ratio 0.5": {"ratio": 0.5}, "3x MACs": {"macs_reduction": 3.0}}


def run(name: str, mode: str, target: dict) -> dict:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    reinit_degenerate(model)
    x = torch.randn(1, 3, 96, 96)
    pruner = StructuredPruner(**target, grouped_conv="auto" if mode.startswith("auto") else mode)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "auto, stripes only":
            pruner._whole_groups = frozenset()  # the choice preset: stripes wherever "auto" finds them exact
            result = pruner.step(model, x, 1.0)
        else:
            result = pruner.prune(model, x)
    seconds = time.perf_counter() - start
    modes = list(result.grouped_conv.values())
    return {"model": name, "mode": mode, "macs_before": result.macs_before, "macs_after": result.macs_after,
            "macs_reduction": result.macs_reduction, "stripes": modes.count("channels"), "groups": modes.count("groups"), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), help="timm model names")
    args = parser.parse_args()
    from support.torchvision_standin import install

    install()
    torch.set_num_threads(1)
    rows: dict[str, list[dict]] = {}
    for label, target in TARGETS.items():
        rows[label] = []
        for name in args.only:
            for mode in MODES:
                rows[label].append(run(name, mode, target))
                print(label, rows[label][-1], flush=True)
    tables = [Table(label, ["model", "grouped_conv", "MACs reduction", "convs by stripes / whole groups", "prune s"],
                    [[r["model"], r["mode"], f"{r['macs_reduction']:.2f}×", f"{r['stripes']} / {r['groups']}", f"{r['seconds']:.2f}"] for r in rs])
              for label, rs in rows.items()]
    write_results("grouped_conv_modes", {"targets": TARGETS, "rows": rows}, tables, preamble=__doc__.split("\n\n")[1])


if __name__ == "__main__":
    main()
