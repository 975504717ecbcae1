"""The multiple-choice knapsack allocator against brute force, and its plan-level search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.pruners.allocation import Candidate, best_options, kept_importance, knapsack_counts, removal_options


def brute_force(values, weights, budget):
    best = None
    for combo in itertools.product(*[range(len(v)) for v in values]):
        w = sum(weights[i][k] for i, k in enumerate(combo))
        if w <= budget + 1e-9:
            v = sum(values[i][k] for i, k in enumerate(combo))
            best = v if best is None or v > best else best
    return best


items = st.lists(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 12)), min_size=1, max_size=4), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(items, st.integers(0, 40))
def test_integer_weights_are_solved_exactly(raw, budget) -> None:
    values = [np.array([v for v, _ in item], float) for item in raw]
    weights = [np.array([w for _, w in item], float) for item in raw]
    chosen = best_options(values, weights, budget)
    optimum = brute_force(values, weights, budget)
    if optimum is None:
        assert chosen is None
        return
    assert chosen is not None
    assert sum(weights[i][k] for i, k in enumerate(chosen)) <= budget
    assert sum(values[i][k] for i, k in enumerate(chosen)) == optimum


@settings(max_examples=100, deadline=None)
@given(items, st.floats(0.5, 40.0), st.integers(0, 2**32 - 1))
def test_real_weights_never_exceed_the_budget_and_lose_at_most_one_bin_per_item(raw, budget, seed) -> None:
    rng = np.random.default_rng(seed)
    values = [np.array([v for v, _ in item], float) for item in raw]
    weights = [np.array([w for _, w in item], float) * rng.uniform(0.9, 1.1) for item in raw]
    bins = 512
    chosen = best_options(values, weights, budget, bins=bins)
    optimum = brute_force(values, weights, budget)
    if chosen is None:
        assert optimum is None or sum(w.min() for w in weights) > budget - 1e-9
        return
    assert sum(weights[i][k] for i, k in enumerate(chosen)) <= budget + 1e-9
    relaxed = brute_force(values, weights, budget - len(raw) * budget / bins)
    assert sum(values[i][k] for i, k in enumerate(chosen)) >= (relaxed if relaxed is not None else -np.inf)


def test_negative_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        best_options([np.array([1.0])], [np.array([-1.0])], 3)


def test_removal_options_land_on_the_step_and_cap() -> None:
    c = Candidate.make(0, np.arange(20, dtype=float), 0.9, 8, 1)
    assert removal_options(c) == [0, 4, 12]  # keeps 20, 16, 8
    assert kept_importance(c, [0, 4]).tolist() == [190.0, 190.0 - 6.0]


def test_knapsack_counts_maximise_kept_importance_under_an_additive_cost() -> None:
    rng = np.random.default_rng(0)
    cands = [Candidate.make(i, rng.random(n), 0.9, 2, 1) for i, n in enumerate((6, 8, 10))]
    price = {0: 3.0, 1: 1.0, 2: 2.0}  # cost per kept unit

    def cost(counts):
        return sum(price[c.index] * (c.size - counts.get(c.index, 0)) for c in cands)

    goal = 0.6 * cost({})
    got = knapsack_counts(cands, cost, goal, {})
    assert cost(got) <= goal
    options = [removal_options(c) for c in cands]
    best = max((combo for combo in itertools.product(*options) if cost(dict(enumerate(combo))) <= goal),
               key=lambda combo: sum(kept_importance(c, [r])[0] for c, r in zip(cands, combo)))
    value = lambda counts: sum(kept_importance(c, [counts[c.index]])[0] for c in cands)  # noqa: E731
    assert value(got) == pytest.approx(value(dict(enumerate(best))))


@pytest.mark.parametrize("metric", ["macs", "params"])
def test_counts_cost_equals_the_cost_of_the_plan_it_stands_for(metric) -> None:
    import torch

    from prunekit.pruners import Objective, Plan
    from prunekit.structured import DependencyGraph
    from prunekit.zoo import create_model

    graph = DependencyGraph.build(create_model("resnet20"), (torch.randn(1, 3, 32, 32),))
    rng = np.random.default_rng(0)
    groups = graph.prunable_groups()
    scores = {g.index: rng.random(g.size) for g in groups}
    objective = Objective(graph, (torch.randn(1, 3, 32, 32),), metric)
    fast = objective.counts_cost(scores)
    assert fast is not None
    for _ in range(5):
        counts = {g.index: int(rng.integers(0, g.size)) for g in groups}
        assert fast(counts) == pytest.approx(objective.cost(Plan.from_counts(scores, counts)), rel=1e-9)
    assert fast({}) == pytest.approx(objective.cost(Plan()), rel=1e-12)
