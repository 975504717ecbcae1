"""Op-rule and layer-handler registries: refusing silent replacement, per-graph handlers."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from prunekit.structured import (
    LAYERS, OP_RULES, ChannelLayer, DependencyGraph, GraphConfig, PruningWarning, handler_for, register_op, remove_units,
)
from prunekit.structured.layers import ConvHandler

from .test_graph import CustomNet, MyConv


@pytest.fixture
def op_rules() -> Iterator[None]:
    """Restore the op-rule registry after the test."""
    items, meta = dict(OP_RULES._items), dict(OP_RULES._meta)
    yield
    OP_RULES._items.clear(), OP_RULES._items.update(items)
    OP_RULES._meta.clear(), OP_RULES._meta.update(meta)


def _rule(ctx, args, kwargs):  # noqa: ANN001, ANN202 - a stand-in rule
    return None


def test_register_op_refuses_an_existing_name_and_registers_nothing(op_rules: None) -> None:
    builtin = OP_RULES.get("add")
    with pytest.raises(ValueError, match=r"'add' \(prunekit\.structured\.ops\.pointwise\.elementwise\).*replace=True"):
        register_op("my_op", "add")(_rule)
    assert OP_RULES.get("add") is builtin and "my_op" not in OP_RULES


def test_register_op_adds_new_names_and_replaces_on_purpose(op_rules: None) -> None:
    register_op("my_op")(_rule)
    assert OP_RULES.get("my_op") is _rule
    with pytest.raises(ValueError, match="'my_op'"):
        register_op("my_op")(_rule)
    register_op("add", replace=True)(_rule)
    assert OP_RULES.get("add") is _rule


def test_layer_handlers_apply_to_one_graph_build_only() -> None:
    model, x = CustomNet().eval(), torch.randn(2, 3, 4, 4)
    registry = dict(LAYERS._items)
    handler = ChannelLayer(in_dims={"kernel": 1}, out_dims={"kernel": 0, "shift": 0}, in_attr="cin", out_attr="cout")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PruningWarning)
        graph = DependencyGraph.build(model, x, GraphConfig(layer_handlers={MyConv: handler}))
    with pytest.warns(PruningWarning, match="^custom:"):  # without the override the layer is not understood
        plain = DependencyGraph.build(copy.deepcopy(model), x)
    assert LAYERS._items == registry
    assert not any("stem" in g.modules() for g in plain.prunable_groups())
    remove_units(graph, {g: range(g.size // 2) for g in graph.prunable_groups() if g.size >= 2})
    assert (model.custom.cin, model.custom.cout) == (3, 4) and model.head.in_channels == 4
    assert model(x).shape == (2, 2, 4, 4)


def test_layer_handler_overrides_come_before_the_global_registry() -> None:
    conv, mine = nn.Conv2d(2, 2, 1), ConvHandler()
    assert handler_for(conv, {nn.Conv2d: mine}) is mine
    assert isinstance(handler_for(conv), ConvHandler) and handler_for(conv) is not mine
