"""Per-group ratio search: every strategy meets the budget with a plan the pruner reproduces, seeded, resumable."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import prunekit.analysis.search_problem as problem_module
from prunekit.analysis import SEARCH_STRATEGIES, SearchConfig, search_ratios
from prunekit.analysis.group_space import GroupSpace, recalibrate_bn
from prunekit.analysis.search_problem import SearchProblem
from prunekit.errors import ConfigError
from prunekit.metrics import count_macs
from prunekit.metrics.accuracy import evaluate
from prunekit.pruners import StructuredConfig, layer_channels


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()


def _data(model: nn.Module, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(16, 3, 8, 8, generator=g) for _ in range(n)]
    with torch.no_grad():
        return [(x, model(x).argmax(1)) for x in xs]


@pytest.fixture
def setup():
    model = _net()
    return model, _data(model, 2, 1)[0][0][:2], _data(model, 2, 2), _data(model, 2, 3)


def _search(setup, strategy="evolutionary", config=None, cache_dir=None, **search):
    model, x, train, val = setup
    settings = {"strategy": strategy, "trials": 5, "bn_batches": 1, "val_batches": 2, "population": 4, "ratios": (0.25, 0.5, 0.75), **search}
    return search_ratios(model, x, config or StructuredConfig(macs_reduction=2.0), SearchConfig(**settings), train=train, val=val,
                         cache_dir=cache_dir, progress=False)


def _plain(result) -> list[tuple]:
    return [(t.counts, t.cost, t.accuracy, t.loss) for t in result.trials]


def test_the_registry_holds_the_three_strategies():
    assert SEARCH_STRATEGIES.names() == ["evolutionary", "rl", "sensitivity"]
    assert all(SEARCH_STRATEGIES.meta(n)["description"] for n in SEARCH_STRATEGIES.names())
    with pytest.raises(ValidationError, match="unknown search strategy 'amc'; allowed values: evolutionary, rl, sensitivity"):
        SearchConfig(strategy="amc")


@pytest.mark.parametrize("strategy", SEARCH_STRATEGIES.names())
def test_every_strategy_meets_the_budget_with_a_plan_the_pruner_applies(setup, strategy):
    model, x, train, val = setup
    before = copy.deepcopy(model.state_dict())
    result = _search(setup, strategy)
    dense = count_macs(model, x).dense
    assert result.goal == dense / 2 and result.dense_cost == dense
    assert result.cost <= result.goal and result.counts and result.evaluated >= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pruned = copy.deepcopy(model)
    out = result.prune(pruned, x)  # the normal StructuredPruner surgery through layer_ratios
    assert out.macs_after == result.cost == count_macs(pruned, x).dense
    sizes = {c.index: c.size for c in GroupSpace(model, x, StructuredConfig(ratio=0.0)).candidates}
    names = {0: "0", 1: "3", 2: "6"}
    assert {names[g]: sizes[g] - k for g, k in result.counts.items()} == {n: layer_channels(pruned)[n][1] for n in (names[g] for g in result.counts)}
    plan_model = copy.deepcopy(model)  # the Plan itself, through the graph, prunes the same units
    space = GroupSpace(plan_model, x, StructuredConfig(ratio=0.0))
    result.plan.apply(space.graph)
    assert all(torch.equal(a, b) for a, b in zip(pruned.state_dict().values(), plan_model.state_dict().values()))
    chosen = next(t for t in result.trials if t.counts == result.counts)
    assert result.accuracy == chosen.accuracy and result.seconds_per_candidate > 0
    assert result.to_dict()["reduction"] >= 2.0


def test_a_params_budget_and_the_adaptive_bn_score(setup):
    model, x, train, val = setup
    result = _search(setup, "evolutionary", StructuredConfig(max_params=2000))
    assert result.metric == "params" and result.cost <= 2000
    first = result.trials[0]  # the uniform candidate goes first: one ratio everywhere (up to rounding)
    sizes = {0: 8, 1: 16, 2: 16}
    ratios = [first.counts.get(g, 0) / n for g, n in sizes.items()]
    assert max(ratios) - min(ratios) < 1 / 8
    pruned = GroupSpace(model, x, StructuredConfig(max_params=2000)).pruned_copy(first.counts)
    assert first.accuracy == evaluate(recalibrate_bn(pruned, train[:1]), val).accuracy


@pytest.mark.parametrize("strategy", ["evolutionary", "rl"])
def test_the_same_seed_gives_the_same_search_and_another_seed_another(setup, strategy):
    a, b = _search(setup, strategy), _search(setup, strategy)
    assert _plain(a) == _plain(b) and a.counts == b.counts
    assert _plain(_search(setup, strategy, seed=1)) != _plain(a)


@pytest.mark.parametrize("strategy", ["evolutionary", "rl", "sensitivity"])
def test_a_killed_search_resumes_without_scoring_candidates_again(setup, tmp_path, monkeypatch, strategy):
    full = _search(setup, strategy, cache_dir=tmp_path / "s")
    log = tmp_path / "s" / f"{strategy}_trials.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 + full.evaluated
    keep = min(3, len(lines) - 1)
    log.write_bytes(b"".join(lines[:keep]) + lines[-1][:20])  # killed while appending
    calls = []
    monkeypatch.setattr(problem_module, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    resumed = _search(setup, strategy, cache_dir=tmp_path / "s")
    assert len(calls) == full.evaluated - (keep - 1) and resumed.evaluated == len(calls)
    assert _plain(resumed) == _plain(full) and resumed.counts == full.counts
    calls.clear()
    again = _search(setup, strategy, cache_dir=tmp_path / "s")
    assert not calls and again.evaluated == 0 and all(t.cached for t in again.trials) and again.counts == full.counts


def test_more_trials_continue_a_finished_search(setup, tmp_path):
    short = _search(setup, "evolutionary", cache_dir=tmp_path, trials=3)
    longer = _search(setup, "evolutionary", cache_dir=tmp_path, trials=5)
    assert _plain(longer)[:3] == _plain(short) and longer.reused >= 3


def test_projection_meets_the_budget_and_keeps_zero_preferences_whole(setup):
    model, x, train, val = setup
    space = GroupSpace(model, x, StructuredConfig(macs_reduction=3.0))
    problem = SearchProblem(space, SearchConfig(), bn=[], val=val)
    counts = problem.project({0: 0.0, 1: 1.0, 2: 0.5})
    assert counts is not None and 0 not in counts and problem.cost(counts) <= problem.goal
    assert problem.project({0: 0.0, 1: 0.0, 2: 0.0}) is None


def test_errors_say_what_to_fix(setup, monkeypatch):
    model, x, train, val = setup
    with pytest.raises(ConfigError, match="needs a resource target"):
        _search(setup, config=StructuredConfig(ratio=0.5))
    with pytest.raises(ConfigError, match="cannot be met: every group at max_layer_ratio=0.5"):
        _search(setup, config=StructuredConfig(macs_reduction=50.0, max_layer_ratio=0.5))
    with pytest.raises(ConfigError, match="pass train="):
        search_ratios(model, x, StructuredConfig(macs_reduction=2.0), SearchConfig(), val=val, progress=False)
    with pytest.raises(ConfigError, match="needs validation batches"):
        search_ratios(model, x, StructuredConfig(macs_reduction=2.0), SearchConfig(bn_batches=0), val=[], progress=False)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if optuna were not installed
    with pytest.raises(ConfigError, match=r"pip install 'prunekit\[search\]'"):
        _search(setup, "evolutionary")
