"""A plan may not leave any tensor with no channels: a part of a split that holds only some of a group's units."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from prunekit.errors import StructureError
from prunekit.structured import DependencyGraph, GraphConfig, PruningWarning
from prunekit.structured.surgery import remove_units

from .archgen import Generated
from .helpers import outputs, relative_error, zeroed


def _split_after(c_out: int) -> nn.Module:
    """A ``c_out``-channel conv whose output is split in halves by ``x.shape[1] // 2`` (found by the property test)."""
    conv = {"c_out": c_out, "groups": 1, "k": 1, "bias": True, "norm": "none", "act": "none", "gn": 1}
    return Generated(4, [("conv", conv), ("split", {"dw": False, "chunk": False, "cat": True})], "pool", 3).double()


def _build(model: nn.Module, x: torch.Tensor) -> tuple[DependencyGraph, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", PruningWarning)
        graph = DependencyGraph.build(model, x, GraphConfig(strict=True))
    return graph, [str(r.message) for r in record if issubclass(r.category, PruningWarning)]


def _conv_group(graph: DependencyGraph):
    return next(g for g in graph.groups if any(m.module == "blocks.0.conv" and m.role == "out" for m in g.members))


def test_a_channel_that_is_a_whole_split_part_is_refused_and_named() -> None:
    torch.manual_seed(0)
    model, x = _split_after(2), torch.randn(2, 3, 3, 3, dtype=torch.float64)
    graph, messages = _build(model, x)
    group = _conv_group(graph)
    assert not group.prunable
    assert "would have no channels left" in group.reason
    assert [m for m in messages if m.startswith("blocks.0.conv: ")] == [
        f"blocks.0.conv: channels coupled to it are left untouched: {group.reason}"]
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(StructureError, match="would have no channels left"):
        remove_units(graph, {group.index: [0]})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # refused before anything changed


def test_removing_every_unit_of_a_group_is_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)).double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    graph, _ = _build(model, x)
    group = next(g for g in graph.prunable_groups() if any(m.module == "0" for m in g.members))
    with pytest.raises(StructureError, match="cannot remove all 4 units"):
        remove_units(graph, {group.index: list(range(group.size))})


def test_chunk_parts_that_share_every_unit_stay_prunable_and_exact() -> None:
    """``chunk(2)`` couples channel i of each half into one unit, so no unit empties a half: still prunable, and exact."""
    torch.manual_seed(0)
    conv = {"c_out": 4, "groups": 1, "k": 1, "bias": True, "norm": "none", "act": "none", "gn": 1}
    model = Generated(4, [("conv", conv), ("split", {"dw": False, "chunk": True, "cat": True})], "pool", 3).double()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    graph, _ = _build(model, x)
    group = _conv_group(graph)
    assert group.prunable and group.size == 2
    expected = outputs(zeroed(model, group, [0]), x)
    pruned = copy.deepcopy(model)
    remove_units(DependencyGraph.build(pruned, x, GraphConfig(strict=True)), {group.index: [0]})
    assert relative_error(expected, outputs(pruned, x)) <= 1e-5
