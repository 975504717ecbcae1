"""Plan, Objective and structured allocation, checked against independent counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.metrics import count_macs, count_parameters
from prunekit.pruners import COST_METRICS, CostMetric, Objective, Plan
from prunekit.pruners.allocation import Candidate, allocate_to_goal, global_order, prefix_counts, round_removal, uniform_counts
from prunekit.structured import DependencyGraph

X = torch.randn(1, 3, 8, 8)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 10))


def test_plan_is_normalised_and_immutable() -> None:
    plan = Plan.of({2: [5, 1], 0: [], 1: (3,)})
    assert dict(plan.removals) == {1: (3,), 2: (1, 5)}
    assert plan.counts == {1: 1, 2: 2} and plan.units_removed == 3 and plan.groups_pruned == 2
    with pytest.raises(TypeError):
        plan.removals[0] = (1,)  # type: ignore[index]
    assert not Plan() and Plan.from_counts({0: np.array([3.0, 1.0, 2.0])}, {0: 2}) == Plan.of({0: [1, 2]})


def test_objective_costs_match_hand_counts_and_the_pruned_model() -> None:
    model = _net()
    graph = DependencyGraph.build(model, (X,))
    (group,) = [g for g in graph.prunable_groups() if "0" in g.modules("out")]
    plan = Plan.of({group.index: [0, 1, 2, 3]})  # conv 0 keeps 4 of 8 output channels
    params = Objective(graph, (X,), "params")
    macs = Objective(graph, (X,), "macs")
    # conv0: 4·3·9 + 4, conv2: 4·4·9 + 4, linear: 256·10 + 10
    assert params.cost(plan) == params.measure(plan) == 4 * 3 * 9 + 4 + 4 * 4 * 9 + 4 + 256 * 10 + 10
    # per example: conv0 64·4·27, conv2 64·4·36, linear 2560
    assert macs.cost(plan) == macs.measure(plan) == 64 * 4 * 27 + 64 * 4 * 36 + 2560
    assert macs.cost(Plan()) == count_macs(model, X).dense and params.cost(Plan()) == count_parameters(model).params
    plan.apply(graph)
    assert count_macs(model, X).dense == 64 * 4 * 27 + 64 * 4 * 36 + 2560


def test_a_custom_metric_plugs_into_the_objective() -> None:
    calls = []

    def measure(model: nn.Module, inputs: tuple) -> float:
        calls.append(1)
        return float(sum(p.numel() for p in model.parameters() if p.dim() > 1))

    COST_METRICS.add("weights_only", CostMetric(lambda cm, removed: cm.cost(removed)["params"], measure))
    try:
        graph = DependencyGraph.build(_net(), (X,))
        objective = Objective(graph, (X,), "weights_only")
        plan = Plan.of({graph.prunable_groups()[0].index: [0]})
        assert objective.measure(plan) == objective.measure(plan) and len(calls) == 1  # measured once per plan
    finally:
        COST_METRICS._items.pop("weights_only")  # test-only cleanup of the global registry


def _cands() -> list[Candidate]:
    return [Candidate.make(0, np.array([0.1, 0.9, 0.5, 0.3]), 0.75, 2, 1), Candidate.make(1, np.array([0.2, 0.8, 0.05, 0.6, 0.7, 0.4]), 0.5, 1, 1)]


def test_rounding_and_caps() -> None:
    a, b = _cands()
    assert (a.step, a.max_remove, b.max_remove) == (2, 2, 3)
    assert round_removal(a, 1) in (0, 2) and round_removal(a, 3) == 2 and round_removal(b, 9) == 3
    assert uniform_counts([a, b], lambda c: 0.5) == {0: 2, 1: 3}


def test_global_order_takes_lowest_scores_within_caps() -> None:
    cands = _cands()
    order = global_order(cands)
    assert order.tolist() == [1, 0, 1, 0, 1]  # 0.05, 0.1, 0.2, 0.3, 0.4 (group 0 capped at 2, group 1 at 3)
    assert prefix_counts(cands, order, 3) == {0: 2, 1: 2}  # group 0 keeps 3 → rounded to its step of 2: keeps 2


class _CountObjective:
    """Cost = units kept; the 'measurement' is off by a constant, as a real count can be."""

    def __init__(self, total: int, bias: float) -> None:
        self.total, self.bias = total, bias

    def cost(self, plan: Plan) -> float:
        return self.total - plan.units_removed

    def measure(self, plan: Plan) -> float:
        return self.cost(plan) + self.bias


def test_allocate_to_goal_corrects_by_the_measurement() -> None:
    plan, reached = allocate_to_goal(_cands(), _CountObjective(10, 1.0), 7.0, uniform=False, max_layer_ratio=0.9, tolerance=0.02)
    assert reached == 7.0 and plan.units_removed == 4


def test_transposed_conv_costs_count_its_input_positions_like_count_macs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.ConvTranspose2d(8, 4, 3, stride=2), nn.Flatten(), nn.Linear(4 * 13 * 13, 10))
    x = torch.randn(1, 3, 8, 8)
    graph = DependencyGraph.build(model, (x,))
    objective = Objective(graph, (x,), "macs")
    # conv: 6·6 positions × 8·3·9; transposed conv: 6·6 *input* positions × 8·4·9; linear: 676·10
    assert objective.cost(Plan()) == count_macs(model, x).dense == 36 * 216 + 36 * 288 + 6760
    (group,) = [g for g in graph.prunable_groups() if g.modules("out") == ["2"]]
    plan = Plan.of({group.index: [0, 1]})  # the transposed conv keeps 2 of 4 outputs
    assert objective.cost(plan) == objective.measure(plan) == 36 * 216 + 36 * 8 * 2 * 9 + 2 * 169 * 10
    assert count_parameters(model).prunable_params == 8 * 3 * 9 + 8 * 4 * 9 + 676 * 10


def test_wide_units_whose_exact_step_keeps_the_whole_group_take_a_coarser_step() -> None:
    # a channel stripe of a 3-group conv is 3 channels: 8 stripes (24 channels) would be the exact
    # multiple of round_to=8, i.e. the whole group; round_to // width = 2 stripes per step instead
    stripes = Candidate.make(0, np.arange(8.0), max_ratio=1.0, round_to=8, width=3)
    assert stripes.step == 2
    assert Candidate.make(0, np.arange(16.0), max_ratio=1.0, round_to=8, width=3).step == 8  # exact step possible: kept
    assert Candidate.make(0, np.arange(4.0), max_ratio=1.0, round_to=8, width=2).step == 4  # width divides round_to: unchanged
    assert Candidate.make(0, np.arange(8.0), max_ratio=1.0, round_to=8, width=1).step == 8  # plain channels: unchanged
