"""Contract tests over every registry: what each entry must offer, checked for all of them.

Registries with their own contract files: schedules (tests/schedules), unstructured criteria
(tests/importance), datasets (tests/zoo), density distributions (tests/pruners). This file covers
the rest and the rules common to all.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch
from torch import nn

import prunekit
from prunekit._registry import Registry
from prunekit.errors import ConfigError
from prunekit.experiment.method_sections import METHODS
from prunekit.experiment.recipe import method_names
from prunekit.importance import GROUP_CRITERIA, ScoringContext, make_criterion
from prunekit.importance.calibration import Calibration
from prunekit.pruners import COST_METRICS, NM_CRITERIA, Objective, Plan
from prunekit.structured import DependencyGraph
from prunekit.structured.layers import LAYERS, handler_for
from prunekit.structured.ops import OP_RULES


#: Modules of optional extras that import their dependency at import time (and hold no registry).
OPTIONAL_MODULES = ("prunekit.integrations.lightning",)


def _all_registries() -> dict[str, Registry]:
    found: dict[str, Registry] = {}
    for info in pkgutil.walk_packages(prunekit.__path__, "prunekit."):
        if ".cli" in info.name or info.name.endswith("__main__") or info.name in OPTIONAL_MODULES:
            continue
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if isinstance(value, Registry):
                found.setdefault(value.kind, value)
    found.setdefault(METHODS.kind, METHODS)  # prunekit.experiment is a namespace package: walk_packages skips it
    return found


REGISTRIES = _all_registries()


def test_every_registry_is_found() -> None:
    kinds = set(REGISTRIES)
    assert {"pruning method", "group criterion", "N:M criterion", "cost metric", "layer handler", "op rule", "schedule",
            "unstructured criterion", "model", "dataset", "corruption", "density distribution"} <= kinds


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_contract_lookup(kind: str) -> None:
    """Non-empty; every name resolves; an unknown name is an error that lists the allowed names."""
    registry = REGISTRIES[kind]
    assert len(registry) > 0
    for name in registry:
        assert registry.get(name) is not None
    with pytest.raises((ConfigError, KeyError), match="allowed values"):
        registry.get("no-such-entry")


@pytest.mark.parametrize("name", METHODS.names())
def test_contract_methods(name: str) -> None:
    """Each method is declared once: its section's ``method`` is its name, its runner imports, the recipe accepts it."""
    method = METHODS.get(name)
    assert method.section.model_fields["method"].default == name
    module, _, function = method.runner.partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert name in method_names() and METHODS.meta(name)["description"]


def _conv_graph() -> tuple[nn.Module, DependencyGraph, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    x = torch.randn(2, 3, 8, 8)
    model(x)
    return model, DependencyGraph.build(model, (x,)), x


@pytest.mark.parametrize("name", GROUP_CRITERIA.names())
def test_contract_group_criteria(name: str) -> None:
    """Every group criterion gives one finite score per unit, from the calibration it declares it needs."""
    model, graph, x = _conv_graph()
    grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    calibration = Calibration(grads=grads, squared_grads={n: g**2 for n, g in grads.items()}, inputs=[x])
    criterion = make_criterion(name, batches=[x]) if name in ("activation", "apoz") else make_criterion(name)
    ctx = ScoringContext(model, graph, calibration.squared_grads, calibration=calibration)
    for group in graph.prunable_groups():
        scores = criterion(group, ctx)
        assert scores.shape == (group.size,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", NM_CRITERIA.names())
def test_contract_nm_criteria(name: str) -> None:
    weight = torch.randn(4, 8)
    assert NM_CRITERIA.get(name)(weight).shape == weight.shape


@pytest.mark.parametrize("name", COST_METRICS.names())
def test_contract_cost_metrics(name: str) -> None:
    """An exact metric's estimate equals its measurement; every metric falls when channels go."""
    model, graph, x = _conv_graph()
    objective = Objective(graph, (x,), name)
    group = graph.prunable_groups()[0]
    plan = Plan.of({group.index: range(group.size // 2)})
    assert objective.cost(plan) < objective.cost(Plan())
    if COST_METRICS.get(name).exact:
        assert objective.cost(plan) == objective.measure(plan)


@pytest.mark.parametrize("key", LAYERS.names())
def test_contract_layer_handlers(key: str) -> None:
    """Every handler key names an importable nn.Module class, and it is found for that class."""
    module_name, _, qualname = key.rpartition(".")
    cls = getattr(importlib.import_module(module_name), qualname, None)
    assert isinstance(cls, type) and issubclass(cls, nn.Module), key
    assert LAYERS.get(key) is not None


def test_contract_layer_handlers_describe_instances() -> None:
    for module in (nn.Conv2d(3, 4, 3), nn.Linear(3, 4), nn.BatchNorm2d(4), nn.LayerNorm(4), nn.ConvTranspose2d(3, 4, 3)):
        assert handler_for(module) is not None, type(module)


@pytest.mark.parametrize("name", OP_RULES.names())
def test_contract_op_rules(name: str) -> None:
    assert callable(OP_RULES.get(name))
