"""collect_calibration: the statistics criteria declare in ``needs``, without leaving anything in ``.grad``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from prunekit.errors import ConfigError
from prunekit.importance import GROUP_CRITERIA, Calibration, ScoringContext, SquaredGradients, collect_calibration, make_criterion
from prunekit.structured import DependencyGraph


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(5, 3, 6, 6, generator=g), torch.randint(0, 4, (5,), generator=g)) for _ in range(n)]


def test_needs_are_declared() -> None:
    needs = {name: GROUP_CRITERIA.get(name).needs for name in GROUP_CRITERIA.names()}
    assert needs["taylor"] == {"grads"} and needs["hessian"] == {"squared_grads"}
    assert needs["activation"] == needs["apoz"] == {"inputs"}
    assert all(not needs[n] for n in ("l1", "l2", "bn_scale", "fpgm", "random"))


def test_leaves_no_grad_and_matches_backward_accumulation_bitwise() -> None:
    model, batches = _net(), _batches()
    model.train()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    cal = collect_calibration(model, batches, {"grads", "squared_grads", "inputs"})
    assert all(p.grad is None for p in model.parameters()) and model.training
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert cal.inputs is not None and all(a is x for a, (x, _) in zip(cal.inputs, batches))

    model.eval()  # what the recipe runner did before: accumulate (loss / n).backward() in eval mode
    for x, y in batches:
        (F.cross_entropy(model(x), y) / len(batches)).backward()
    assert cal.grads is not None and set(cal.grads) == {n for n, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        assert torch.equal(cal.grads[name], p.grad), name
    with SquaredGradients(model) as squared:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
    expected = squared.mean()
    assert cal.squared_grads is not None and set(cal.squared_grads) == set(expected)
    for name, value in expected.items():
        assert torch.equal(cal.squared_grads[name], value), name


def test_collects_only_what_is_needed_and_keeps_existing_grads() -> None:
    model, batches = _net(), _batches(2)
    model(batches[0][0]).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    cal = collect_calibration(model, batches, {"squared_grads"})
    assert cal.grads is None and cal.inputs is None and cal.squared_grads
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before))
    assert collect_calibration(model, batches, ()) == Calibration()
    with pytest.raises(ConfigError, match="unknown calibration needs"):
        collect_calibration(model, batches, {"hessian"})
    with pytest.raises(ConfigError, match="no batches"):
        collect_calibration(model, [], {"grads"})


def _scores(name: str, model: nn.Module, ctx: ScoringContext, **options) -> list[torch.Tensor]:
    criterion = make_criterion(name, **options)
    return [criterion(g, ctx) for g in ctx.graph.prunable_groups()]


def test_taylor_from_calibration_equals_taylor_from_grad() -> None:
    model, batches = _net(), _batches()
    graph = DependencyGraph.build(model, batches[0][0])
    cal = collect_calibration(model, batches, {"grads"})
    via_calibration = _scores("taylor", model, ScoringContext(model, graph, calibration=cal))
    model.eval()
    for x, y in batches:
        (F.cross_entropy(model(x), y) / len(batches)).backward()
    with pytest.warns(DeprecationWarning, match="collect_calibration"):
        via_grad = _scores("taylor", model, ScoringContext(model, graph))
    assert all(torch.equal(a, b) for a, b in zip(via_calibration, via_grad))


def test_hessian_and_activation_read_the_calibration() -> None:
    model, batches = _net(), _batches()
    graph = DependencyGraph.build(model, batches[0][0])
    cal = collect_calibration(model, batches, {"squared_grads", "inputs"})
    hessian = _scores("hessian", model, ScoringContext(model, graph, calibration=cal))
    legacy = _scores("hessian", model, ScoringContext(model, graph, squared_grads=cal.squared_grads))
    assert all(torch.equal(a, b) for a, b in zip(hessian, legacy))
    for name in ("activation", "apoz"):
        from_calibration = _scores(name, model, ScoringContext(model, graph, calibration=cal))
        from_batches = _scores(name, model, ScoringContext(model, graph), batches=[x for x, _ in batches])
        assert all(torch.equal(a, b) for a, b in zip(from_calibration, from_batches))
    with pytest.raises(ConfigError, match="needs calibration batches"):
        _scores("activation", model, ScoringContext(model, graph, calibration=Calibration()))
