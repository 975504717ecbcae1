"""Frankle & Carbin 2019, Figure 3/4: lottery tickets on LeNet-300-100 (MNIST).

    python benchmarks/lottery_ticket.py

Runs the shipped recipe ``lottery_lenet300``: iterative magnitude pruning (20% per round, output
layer 10%) with reset to initialisation, against random re-initialisation and random masks, and
tabulates early-stopping test accuracy against the fraction of weights remaining.
Targets (the paper's shape): tickets stay at or above dense accuracy down to <= 7% of weights
remaining; randomly re-initialised tickets fall below dense already at ~21% remaining.
"""

from __future__ import annotations

import json
from collections import defaultdict

from common import RESULTS, WORK, data_root, setup_logging, write_results

from prunekit._io import write_bytes
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.report import plots
from prunekit.report.tables import Table


def main() -> None:
    setup_logging()
    run = run_recipe(load_recipe("lottery_lenet300", [f"data.root={data_root()}"]), WORK / "runs", progress=False)
    s = json.loads((run / "summary.json").read_text())
    by_round: dict[int, dict[str, dict]] = defaultdict(dict)
    for row in s["curve"]:
        by_round[row["round"]][row["method"]] = row
    dense = by_round[0]["ticket"]["accuracy"]
    kinds = ["ticket", "random_reinit", "random_mask"]
    rows = []
    for r in sorted(by_round):
        entry = by_round[r]
        rows.append([r, round(100 * entry["ticket"]["fraction_remaining"], 2), *[round(100 * entry[k]["accuracy"], 2) if k in entry else None for k in kinds],
                     entry["ticket"].get("early_stop_step")])
    at_or_above = [row["fraction_remaining"] for row in s["curve"] if row["method"] == "ticket" and row["accuracy"] >= dense]
    reinit_below = [row["fraction_remaining"] for row in s["curve"] if row["method"] == "random_reinit" and row["accuracy"] < dense and row["round"] > 0]
    ticket_floor = min(f for f in (row["fraction_remaining"] for row in s["curve"] if row["method"] == "ticket")
                       if all(r2["accuracy"] >= dense for r2 in s["curve"] if r2["method"] == "ticket" and r2["fraction_remaining"] >= f))
    findings = {
        "dense_accuracy": dense,
        "ticket_at_or_above_dense_down_to": ticket_floor,
        "random_reinit_first_below_dense_at": max(reinit_below) if reinit_below else None,
        "targets": {"ticket_at_or_above_dense_down_to_max": 0.07, "random_reinit_below_dense_at_min": 0.21},
    }
    findings["meets_ticket_target"] = ticket_floor <= 0.07
    findings["meets_reinit_target"] = bool(reinit_below) and max(reinit_below) >= 0.21
    fig = plots.accuracy_vs_remaining([r for r in s["curve"]], dense, "LeNet-300-100 lottery tickets (MNIST)")
    plots.save_png(fig, str(RESULTS / "lottery_ticket.png"))
    tables = [
        Table("Early-stopping test accuracy (%) vs weights remaining", ["round", "weights remaining (%)", "winning ticket", "random reinit", "random mask", "ticket early-stop iteration"], rows),
        Table("Findings", ["measure", "value"], [
            ["dense test accuracy (%)", round(100 * dense, 2)],
            ["tickets ≥ dense at every level down to (% remaining)", round(100 * ticket_floor, 2)],
            ["random reinit already below dense at (% remaining)", round(100 * findings["random_reinit_first_below_dense_at"], 2) if reinit_below else None],
            ["target met: tickets ≥ dense down to ≤ 7%", findings["meets_ticket_target"]],
            ["target met: random reinit below dense by 21%", findings["meets_reinit_target"]],
        ]),
    ]
    write_results("lottery_ticket", {"curve": s["curve"], "findings": findings, "run": run.name}, tables,
                  preamble=__doc__.split("\n\n", 1)[1] + "\n![curve](lottery_ticket.png)\n")
    print((RESULTS / "lottery_ticket.md").read_text())


if __name__ == "__main__":
    main()
