"""Budget allocation: how many units each group loses, from scores and a target.

Pure functions over :class:`Candidate` records (a group's size, scores and limits): uniform ratios,
global ranking with a per-group cap, rounding kept counts to hardware-friendly multiples, and a
bisection over the global ranking for resource targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One prunable group as the allocator sees it."""

    index: int
    size: int
    scores: np.ndarray  # normalised, higher = keep
    step: int = 1  # kept units are rounded to multiples of this
    max_remove: int = 0  # cap from the per-layer maximum ratio

    @staticmethod
    def make(index: int, scores: np.ndarray, max_ratio: float, round_to: int, width: int, removed_before: int = 0, original: int | None = None) -> Candidate:
        """Build a candidate; ``width`` channels per unit decides the rounding step of ``round_to`` channels."""
        size = int(scores.size)
        step = round_to // math.gcd(round_to, max(1, width)) if round_to > 1 else 1
        base = original if original is not None else size
        cap = int(math.floor(max_ratio * base + 1e-9)) - removed_before
        cap = max(0, min(cap, size - step if size > step else 0))
        return Candidate(index, size, np.asarray(scores, dtype=float), step, cap)


def round_removal(c: Candidate, remove: int) -> int:
    """Adjust a removal count so the kept count is a multiple of ``c.step`` (nearest), within limits."""
    remove = max(0, min(remove, c.max_remove))
    if remove == 0 or c.step == 1:
        return remove
    kept = c.size - remove
    options = [k for k in ((kept // c.step) * c.step, -(-kept // c.step) * c.step) if c.step <= k < c.size and c.size - k <= c.max_remove]
    if not options:
        return 0
    return c.size - min(options, key=lambda k: (abs(k - kept), k))


def uniform_counts(cands: Sequence[Candidate], ratio_of: Callable[[Candidate], float]) -> dict[int, int]:
    """Each group removes ``ratio_of(group)`` of its units."""
    return {c.index: round_removal(c, int(math.floor(ratio_of(c) * c.size + 1e-9))) for c in cands}


def global_order(cands: Sequence[Candidate]) -> np.ndarray:
    """Group index of each removal, lowest scores first, respecting each group's cap."""
    if not cands:
        return np.zeros(0, np.int64)
    gi = np.concatenate([np.full(c.size, c.index) for c in cands])
    sc = np.concatenate([np.sort(c.scores) for c in cands])
    order = np.lexsort((gi, sc))
    gi = gi[order]
    caps = {c.index: c.max_remove for c in cands}
    taken: dict[int, int] = {}
    keep = np.zeros(gi.size, bool)
    for i, g in enumerate(gi.tolist()):
        if taken.get(g, 0) < caps[g]:
            taken[g] = taken.get(g, 0) + 1
            keep[i] = True
    return gi[keep]


def prefix_counts(cands: Sequence[Candidate], order: np.ndarray, k: int) -> dict[int, int]:
    """Removal counts when the first ``k`` entries of the global order are removed (rounded per group)."""
    counts = np.bincount(order[:k], minlength=max((c.index for c in cands), default=-1) + 1)
    return {c.index: round_removal(c, int(counts[c.index])) for c in cands}


def lowest_units(c: Candidate, remove: int) -> list[int]:
    """The ``remove`` units with the lowest scores."""
    return np.argsort(c.scores, kind="stable")[:remove].tolist()


def bisect_prefix(cost: Callable[[int], float], target: float, upper: int) -> int:
    """Smallest prefix length ``k`` in ``[0, upper]`` with ``cost(k) <= target`` (cost non-increasing)."""
    lo, hi = 0, upper
    if cost(hi) > target:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def closest_prefix(cost: Callable[[int], float], target: float, upper: int) -> int:
    """The prefix whose cost is closest to ``target`` among the bisection point and its neighbours."""
    k = bisect_prefix(cost, target, upper)
    near = [j for j in (k - 2, k - 1, k, k + 1) if 0 <= j <= upper]
    return min(near, key=lambda j: abs(cost(j) - target))


def refine_counts(cands: Sequence[Candidate], counts: dict[int, int], cost: Callable[[dict[int, int]], float], goal: float, tolerance: float, max_moves: int = 64) -> dict[int, int]:
    """Move single rounding steps between groups until the cost is within ``tolerance`` of ``goal``.

    Each move removes one more step of a group's lowest-scored units, or restores one step; the move
    landing closest to the goal wins. Stops when within tolerance or when no move helps.
    """
    best = dict(counts)
    best_cost = cost(best)
    for _ in range(max_moves):
        if abs(best_cost - goal) <= tolerance * goal:
            break
        trial_best = None
        for c in cands:
            k = best.get(c.index, 0)
            for new in {round_removal(c, k + c.step), round_removal(c, k - c.step) if k >= c.step else 0}:
                if new == k:
                    continue
                trial = {**best, c.index: new}
                value = cost(trial)
                if trial_best is None or abs(value - goal) < abs(trial_best[0] - goal):
                    trial_best = (value, trial)
        if trial_best is None or abs(trial_best[0] - goal) >= abs(best_cost - goal):
            break
        best_cost, best = trial_best
    return best
