"""Allocation: how much each layer (or channel group) loses. Every allocation rule lives here.

Unstructured and sparse training: per-layer overrides, exact counts, ERK and uniform densities,
and sparsities from a sensitivity scan. Structured: pure functions over :class:`Candidate` records
(a group's size, scores and limits): uniform ratios, global ranking with a per-group cap, rounding
kept counts to hardware-friendly multiples, and :func:`allocate_to_goal`, the search that meets a
resource goal of an :class:`~prunekit.pruners.objective.Objective`.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from prunekit._registry import Registry
from prunekit.errors import ConfigError
from prunekit.pruners.plan import Plan

log = logging.getLogger(__name__)


def prune_count(numel: int, sparsity: float) -> int:
    """Entries to prune for ``sparsity``: ``round(sparsity · numel)``, halves rounded up."""
    return min(numel, math.floor(sparsity * numel + 0.5))


def layer_sparsities(names: Sequence[str], sparsity: float, overrides: Mapping[str, float]) -> dict[str, float]:
    """Sparsity per parameter: ``sparsity``, or the value of the first override pattern that matches.

    Patterns are shell wildcards over parameter names (``"fc3.*"``); one that matches no name in
    ``names`` is an error, so typos do not pass silently.
    """
    for pattern in overrides:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(f"overrides pattern {pattern!r} matches no pruned parameter; pruned parameters: {list(names)}")
    out = {}
    for name in names:
        match = next((p for p in overrides if fnmatch.fnmatchcase(name, p)), None)
        out[name] = sparsity if match is None else overrides[match]
    return out


def overridden(names: Sequence[str], overrides: Mapping[str, float]) -> list[str]:
    """The names that some override pattern matches."""
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in overrides)]


def kept_counts(numels: Mapping[str, int], densities: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer kept counts near ``density · numel`` per layer that sum exactly to ``total``.

    Largest-remainder rounding: each layer gets the floor of its share, then the layers with the
    largest fractional parts (ties: first in order) get one more until ``total`` is reached.
    """
    names = list(numels)
    if not 0 <= total <= sum(numels.values()):
        raise ConfigError(f"cannot keep {total} entries out of {sum(numels.values())}")
    share = {n: densities[n] * numels[n] for n in names}
    counts = {n: min(numels[n], max(0, math.floor(share[n]))) for n in names}
    by_remainder = sorted(names, key=lambda n: (-(share[n] - counts[n]), names.index(n)))
    left = total - sum(counts.values())
    while left > 0:  # one unit per layer per pass, largest remainders first; total <= Σ numel ends it
        for name in by_remainder:
            if left > 0 and counts[name] < numels[name]:
                counts[name] += 1
                left -= 1
    while left < 0:  # floating-point shares may overshoot by a unit
        name = max((n for n in names if counts[n] > 0), key=lambda n: counts[n] - share[n])
        counts[name] -= 1
        left += 1
    return counts


Densities = Callable[[Mapping[str, Sequence[int]], float], dict[str, float]]

#: name → ``(shapes, density) -> {name: density}`` layer-density distributions for sparse training.
DENSITY_DISTRIBUTIONS: Registry[Densities] = Registry("density distribution")


@DENSITY_DISTRIBUTIONS.register("uniform")
def uniform_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """The same density for every layer."""
    return {name: density for name in shapes}


@DENSITY_DISTRIBUTIONS.register("erk")
def erk_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities (Evci et al. 2020): layer density ∝ Σ dims / Π dims.

    A scale ε is solved so that the kept weights add up to ``density`` of the total; a layer whose
    density would exceed 1 is made dense and ε is solved again over the others.
    """
    if not 0 < density <= 1:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    dense: set[str] = set()
    target = density * sum(numel.values())
    while True:
        sparse = [n for n in shapes if n not in dense]
        if not sparse:
            return {n: 1.0 for n in shapes}
        eps = (target - sum(numel[n] for n in dense)) / sum(raw[n] * numel[n] for n in sparse)
        too_dense = [n for n in sparse if eps * raw[n] > 1]
        if not too_dense:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.add(max(too_dense, key=lambda n: raw[n]))


def sensitivity_sparsities(sparsities: Sequence[float], drops: Mapping[str, Sequence[float]], max_drop: float) -> dict[str, float]:
    """Per layer, the highest scanned sparsity whose accuracy drop stays within ``max_drop`` (0 if none)."""
    return {layer: max((s for s, d in zip(sparsities, drop) if d <= max_drop + 1e-12), default=0.0) for layer, drop in drops.items()}


# --- structured: channel groups -------------------------------------------------------------


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
        """Build a candidate; ``width`` channels per unit decides the rounding step of ``round_to`` channels.

        Units wider than one channel whose exact step would keep the whole group (a channel stripe
        of a 3-group conv: 8 stripes for a multiple of 8 channels) take ``round_to // width`` units instead.
        """
        size = int(scores.size)
        step = round_to // math.gcd(round_to, max(1, width)) if round_to > 1 else 1
        if width > 1 and step >= size:
            step = max(1, round_to // width)
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


class PlanCost(Protocol):
    """What :func:`allocate_to_goal` needs of an objective (:class:`~prunekit.pruners.objective.Objective`)."""

    def cost(self, plan: Plan) -> float: ...

    def measure(self, plan: Plan) -> float: ...


def allocate_to_goal(cands: Sequence[Candidate], objective: PlanCost, goal: float, *, uniform: bool, max_layer_ratio: float,
                     tolerance: float, rounds: int = 6) -> tuple[Plan, float]:
    """The plan whose measured cost is closest to ``goal``, and that cost.

    Each round bisects the global ranking (or, with ``uniform``, one ratio for every group, capped
    at ``max_layer_ratio``) on the objective's estimate, moves single rounding steps between groups
    until the estimate is within ``tolerance / 4`` of the round's target, and measures the plan; the
    next round's target is corrected by how far the measurement missed. Stops within
    ``0.9 · tolerance`` of ``goal`` or after ``rounds`` rounds.
    """
    scores = {c.index: c.scores for c in cands}
    order = global_order(cands)
    steps = 1000 if uniform else int(order.size)

    def counts_at(k: int) -> dict[int, int]:
        if uniform:
            return uniform_counts(cands, lambda c: max_layer_ratio * k / steps)
        return prefix_counts(cands, order, k)

    def estimate(counts: dict[int, int]) -> float:
        return objective.cost(Plan.from_counts(scores, counts))

    def search(target: float) -> dict[int, int]:
        counts = counts_at(closest_prefix(lambda k: estimate(counts_at(k)), target, steps))
        return refine_counts(cands, counts, estimate, target, tolerance / 4)

    return measured_rounds(search, scores, objective, goal, tolerance, rounds)


def measured_rounds(search: Callable[[float], dict[int, int]], scores: Mapping[int, np.ndarray], objective: PlanCost, goal: float,
                    tolerance: float, rounds: int) -> tuple[Plan, float]:
    """Search counts for a target on the estimate, measure them, correct the target by the miss (at most 2× per
    round); the best measured plan."""
    target, best = goal, None
    for _ in range(rounds):
        plan = Plan.from_counts(scores, search(target))
        real = objective.measure(plan)
        log.debug("allocation round: target %.4g (goal %.4g), estimate %.4g, measured %.4g", target, goal, objective.cost(plan), real)
        if best is None or abs(real - goal) < abs(best[1] - goal):
            best = (plan, real)
        if abs(real - goal) <= tolerance * goal * 0.9 or real <= 0:
            break
        target *= min(2.0, max(0.5, goal / real))  # one noisy measurement must not throw the search far off
    assert best is not None
    return best


# --- importance under a budget: a multiple-choice knapsack (HALP-style) ---------------------


def best_options(values: Sequence[np.ndarray], weights: Sequence[np.ndarray], budget: float, bins: int = 2048) -> list[int] | None:
    """One option per item maximising the summed value with summed weight ≤ ``budget`` (multiple-choice knapsack).

    Dynamic programming over the budget: exact when every weight is a non-negative integer and
    ``budget ≤ bins``; otherwise weights are scaled to ``bins`` steps and rounded *up*, so the answer
    never exceeds the budget (and may leave under one step per item unused). None when even the
    lightest option of every item does not fit.
    """
    if any(np.asarray(w).min() < 0 for w in weights):
        raise ValueError("knapsack weights must be non-negative")
    if sum(float(np.min(w)) for w in weights) > budget + 1e-9:
        return None
    integral = all(np.all(np.asarray(w) == np.round(w)) for w in weights) and budget <= bins
    unit = 1.0 if integral else max(budget, 1e-12) / bins
    cap = int(np.floor(budget / unit + 1e-9))
    dp = np.zeros(cap + 1)
    choices = []
    for value, weight in zip(values, weights):
        steps = np.ceil(np.asarray(weight, float) / unit - 1e-9).astype(np.int64)
        new = np.full(cap + 1, -np.inf)
        pick = np.zeros(cap + 1, np.int64)
        for k, (v, w) in enumerate(zip(np.asarray(value, float), steps)):
            if w > cap:
                continue
            trial = np.full(cap + 1, -np.inf)
            trial[w:] = dp[: cap + 1 - w] + v
            better = trial > new
            new[better], pick[better] = trial[better], k
        dp = new
        choices.append(pick)
    b = cap
    chosen = []
    for pick, weight in zip(reversed(choices), reversed(weights)):
        k = int(pick[b])
        chosen.append(k)
        b -= int(np.ceil(float(np.asarray(weight, float)[k]) / unit - 1e-9))
    return chosen[::-1]


def removal_options(c: Candidate) -> list[int]:
    """Removal counts of a group whose kept count is a multiple of its step, within its cap (0 first)."""
    return [0] + [r for r in range(1, c.max_remove + 1) if (c.size - r) % c.step == 0 and c.size - r >= c.step]


def kept_importance(c: Candidate, removals: Sequence[int]) -> np.ndarray:
    """Summed score of the units a group keeps after each removal count (the lowest-scored go)."""
    low_first = np.concatenate([[0.0], np.cumsum(np.sort(c.scores))])
    return low_first[-1] - low_first[np.asarray(removals, np.int64)]


def knapsack_counts(cands: Sequence[Candidate], cost: Callable[[dict[int, int]], float], goal: float, start: Mapping[int, int],
                    sweeps: int = 4) -> dict[int, int]:
    """Removal counts maximising kept importance with ``cost`` ≤ ``goal``.

    Each sweep prices every option of every group with the other groups where the last sweep put
    them, solves the knapsack of those (separable) price changes, and moves there; a group's
    cost depends on its neighbours' widths (a conv's latency on both its channel counts), which the
    next sweep re-prices. The best plan within ``goal`` seen wins (else the cheapest seen).
    """
    options = {c.index: removal_options(c) for c in cands}
    values = [kept_importance(c, options[c.index]) for c in cands]
    counts = {c.index: int(start.get(c.index, 0)) for c in cands}
    seen: list[tuple[float, float, dict[int, int]]] = []
    for _ in range(sweeps):
        base = cost(counts)
        deltas = [np.array([cost({**counts, c.index: r}) - base for r in options[c.index]]) for c in cands]
        floor = [float(d.min()) for d in deltas]
        chosen = best_options(values, [d - f for d, f in zip(deltas, floor)], goal - base - sum(floor))
        if chosen is None:
            chosen = [int(np.argmin(d)) for d in deltas]
        new = {c.index: options[c.index][k] for c, k in zip(cands, chosen)}
        value = float(sum(v[k] for v, k in zip(values, chosen)))
        seen.append((cost(new), value, new))
        if new == counts:
            break
        counts = new
    within = [s for s in seen if s[0] <= goal]
    return max(within, key=lambda s: s[1])[2] if within else min(seen, key=lambda s: s[0])[2]


def allocate_knapsack(cands: Sequence[Candidate], objective: PlanCost, goal: float, *, tolerance: float, rounds: int = 4) -> tuple[Plan, float]:
    """The plan keeping the most importance within ``goal`` on the estimate, corrected by measurement (:func:`measured_rounds`).

    The first sweep starts from one ratio for every group that meets the estimate. An objective with
    ``counts_cost`` (:meth:`~prunekit.pruners.objective.Objective.counts_cost`) prices removal counts
    without building plans.
    """
    scores = {c.index: c.scores for c in cands}
    fast = objective.counts_cost(scores) if hasattr(objective, "counts_cost") else None

    def estimate(counts: dict[int, int]) -> float:
        return fast(counts) if fast is not None else objective.cost(Plan.from_counts(scores, counts))

    def search(target: float) -> dict[int, int]:
        uniform = lambda k: uniform_counts(cands, lambda c: k / 1000)  # noqa: E731
        start = uniform(closest_prefix(lambda k: estimate(uniform(k)), target, 1000))
        return knapsack_counts(cands, estimate, target, start)

    return measured_rounds(search, scores, objective, goal, tolerance, rounds)
