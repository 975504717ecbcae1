"""Frankle & Carbin 2019, Figure 5: lottery tickets on Conv-2 (CIFAR-10), over seeds, on a documented subset.

    python benchmarks/lottery_conv2.py [--seeds 0 1 2] [--run-only | --cached-only]

Runs the shipped recipe ``lottery_conv2`` (Conv-2: conv64-conv64-pool, fc256-fc256-fc10, 4.3M weights;
Adam 2e-4, batch 60) once per seed with reset to initialisation against random re-initialisation,
and tabulates the early-stopping test accuracy (full 10,000-image test set, at the epoch of lowest
validation loss) against the weights remaining, mean ± std over seeds.
Subset (a CPU budget; the recipe itself is the paper's setting): 10,000 training images picked by the
seed (1,000 of them the validation split), 10 epochs per training (1,500 iterations; the paper 20K
on 45,000 images), and 6 rounds that each prune what three of the paper's rounds do (conv layers
27.1%, fc 48.8%, output 27.1% of the remaining weights), so the levels are the paper's rounds
3, 6, …, 18: 51.4, 26.5, 13.7, 7.1, 3.7 and 1.9% of the weights remaining.
Cached per (seed, round, arm) like ``lottery_ticket.py``: rerunning the command resumes.
Paper (REFERENCES.md): Conv-2/4/6 tickets stay above dense accuracy while > 2% of weights remain;
randomly re-initialised tickets do not.
"""

from __future__ import annotations

import argparse
from typing import Any

from common import setup_logging
from lottery_ticket import first_below, report, run_seeds, ticket_floor

#: The subset and budget of the module docstring.
OVERRIDES = ["data.subset=10000", "train.epochs=10", "prune.rounds=6", "prune.rate=0.488",
             "prune.rate_overrides={features.0.weight: 0.271, features.2.weight: 0.271, classifier.4.weight: 0.271}"]


def conv_findings(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The paper's Conv-2 checks on one curve (the means, or one seed's)."""
    dense = next(r["accuracy"] for r in rows if r["method"] == "ticket" and r["round"] == 0)
    floor = ticket_floor(rows, dense)
    above_2 = [r["fraction_remaining"] for r in rows if r["method"] == "ticket" and r["fraction_remaining"] > 0.02]
    ticket = {r["round"]: r["accuracy"] for r in rows if r["method"] == "ticket"}
    reinit = {r["round"]: r["accuracy"] for r in rows if r["method"] == "random_reinit" and r["round"] > 0}
    gaps = [ticket[k] - reinit[k] for k in reinit if k in ticket]
    return {
        "dense_accuracy": dense,
        "ticket_at_or_above_dense_down_to": floor,
        "random_reinit_first_below_dense_at": first_below(rows, dense, "random_reinit"),
        "smallest_ticket_minus_reinit": min(gaps) if gaps else None,
        "meets_ticket_floor": floor is not None and bool(above_2) and floor <= min(above_2),
        "meets_ticket_above_reinit": bool(gaps) and min(gaps) > 0,
    }


CONV_MEASURES = [
    ("ticket_at_or_above_dense_down_to", "tickets ≥ dense at every level down to (% remaining)", "≈ 2"),
    ("random_reinit_first_below_dense_at", "random reinit first below dense at (% remaining)", "early (Fig. 5)"),
    ("smallest_ticket_minus_reinit", "smallest ticket − random reinit over the pruned levels (points)", "> 0"),
    ("meets_ticket_floor", "target met: tickets ≥ dense at every level with > 2% remaining", "yes"),
    ("meets_ticket_above_reinit", "target met: tickets above random reinit at every pruned level", "yes"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--run-only", action="store_true", help="train the missing cells; write no results")
    mode.add_argument("--cached-only", action="store_true", help="write results from the finished cells; train nothing")
    args = parser.parse_args()
    setup_logging()
    curves = run_seeds("lottery_conv2", OVERRIDES, args.seeds, (), train=not args.cached_only)
    if not args.run_only:
        report("lottery_conv2", "Conv-2 lottery tickets (CIFAR-10 subset)", curves,
               f"python benchmarks/lottery_conv2.py --seeds {' '.join(map(str, args.seeds))}", __doc__.split("\n\n", 1)[1],
               conv_findings, CONV_MEASURES)


if __name__ == "__main__":
    main()
