"""Group importance criteria: every registered criterion scores every group, one score per unit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.importance import GROUP_CRITERIA, Calibration, ScoringContext, SquaredGradients, make_criterion
from prunekit.importance.group import normalize
from prunekit.structured import DependencyGraph
from prunekit.zoo import create_model



@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("resnet20")
    x = torch.randn(4, 3, 32, 32)
    graph = DependencyGraph.build(model, x)
    loss = model(x).logsumexp(1).mean()
    with SquaredGradients(model) as sq:
        loss.backward()
    return model, x, graph, Calibration(grads={n: p.grad for n, p in model.named_parameters()}, squared_grads=sq.mean())


def _options(name: str, x: torch.Tensor) -> dict:
    return {"batches": [x]} if name in ("activation", "apoz") else {}


@pytest.mark.parametrize("name", GROUP_CRITERIA.names())
def test_every_criterion_scores_every_group(setup, name: str) -> None:
    model, x, graph, calibration = setup
    ctx = ScoringContext(model, graph, calibration=calibration)
    criterion = make_criterion(name, **_options(name, x))
    for group in graph.prunable_groups():
        scores = criterion(group, ctx)
        assert scores.shape == (group.size,) and torch.isfinite(scores).all()


def test_magnitude_matches_hand_computation() -> None:
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    graph = DependencyGraph.build(model, torch.randn(1, 3))
    (group,) = graph.prunable_groups()
    ctx = ScoringContext(model, graph)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    l1 = make_criterion("l1", reduction="sum", normalization="none")(group, ctx)
    torch.testing.assert_close(l1, (w1.abs().sum(1) + w2.abs().sum(0)).double())
    first = make_criterion("l2", reduction="first", normalization="none")(group, ctx)
    torch.testing.assert_close(first, w1.pow(2).sum(1).double())


def test_bn_scale_reads_gamma(setup) -> None:
    model, _x, graph, _ = setup
    group = next(g for g in graph.prunable_groups() if g.name == "layer1.0.conv1")
    scores = make_criterion("bn_scale", normalization="none")(group, ScoringContext(model, graph))
    torch.testing.assert_close(scores, model.layer1[0].bn1.weight.detach().abs().double())


def test_gradient_criteria_need_gradients(setup) -> None:
    model, _x, graph, _ = setup
    fresh = create_model("resnet20")
    g = DependencyGraph.build(fresh, torch.randn(1, 3, 32, 32)).prunable_groups()[0]
    with pytest.raises(ConfigError, match="gradients"):
        make_criterion("taylor")(g, ScoringContext(fresh, graph))
    with pytest.raises(ConfigError, match="squared gradients"):
        make_criterion("hessian")(g, ScoringContext(fresh, graph))


def test_random_is_seeded_and_apoz_sees_relu_zeros(setup) -> None:
    model, x, graph, _ = setup
    group = graph.prunable_groups()[1]
    a = make_criterion("random")(group, ScoringContext(model, graph, seed=3))
    b = make_criterion("random")(group, ScoringContext(model, graph, seed=3))
    torch.testing.assert_close(a, b)
    raw = make_criterion("apoz", batches=[x]).raw(group, ScoringContext(model, graph))
    assert ((raw >= 0) & (raw <= 1)).all() and (raw < 1).any()


@pytest.mark.parametrize("how", ["none", "mean", "max", "sum", "standardize"])
def test_normalisation(how: str) -> None:
    s = torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)
    out = normalize(s, how)
    expected = {"none": s, "mean": s / s.mean(), "max": s / 5, "sum": s / 8, "standardize": (s - s.mean()) / s.std()}[how]
    torch.testing.assert_close(out, expected)


def test_unknown_options_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="reduction"):
        make_criterion("l1", reduction="median")
    with pytest.raises(KeyError, match="allowed values"):
        make_criterion("nope")
