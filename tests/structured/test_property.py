"""Property test: over generated architectures, removing a group's units equals zeroing them."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from prunekit.pruners import StructuredPruner
from prunekit.errors import StructureError
from prunekit.metrics import count_parameters
from prunekit.structured import PruningWarning
from prunekit.structured.surgery import remove_units

from .archgen import architectures
from .helpers import graph_of, outputs, relative_error, zeroed

SETTINGS = settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(arch=architectures(), data=st.data())
def test_removing_units_equals_zeroing_them(arch, data) -> None:
    # float64: normalisation over few elements amplifies float32 summation-order noise past 1e-5,
    # and that noise is not what this property is about
    model, x = arch[0].double(), arch[1].double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        graph = graph_of(model, x)
    groups = graph.prunable_groups()
    if not groups:
        event("no prunable group")
        return
    group = data.draw(st.sampled_from(groups), label="group")
    for kind in sorted({type(model.get_submodule(m.module)).__name__ for m in group.members if m.module}):
        event(f"group touches {kind}")
    units = data.draw(st.lists(st.integers(0, group.size - 1), min_size=1, max_size=group.size - 1, unique=True), label="units")
    expected = outputs(zeroed(model, group, units), x)

    pruned = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        twin = graph_of(pruned, x)
    assert [g.name for g in twin.groups] == [g.name for g in graph.groups]
    if any(set(part.tolist()) <= set(units) for part in graph.parts.of_group(group)):  # a split part would have no channels
        event("plan empties a tensor: refused")
        before = copy.deepcopy(pruned.state_dict())
        with pytest.raises(StructureError, match="would have no channels left"):
            remove_units(twin, {group.index: units})
        assert all(torch.equal(before[k], v) for k, v in pruned.state_dict().items())
        return
    remove_units(twin, {group.index: units})
    got = outputs(pruned, x)
    assert got.shape == expected.shape
    assert relative_error(expected, got) <= 1e-5, (group, units)
    assert count_parameters(pruned).params < count_parameters(model).params


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures())
def test_ratio_zero_is_identity(arch) -> None:
    model, x = arch
    pruned = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        result = StructuredPruner(ratio=0.0).prune(pruned, x)
    assert result.units_removed == 0
    assert count_parameters(pruned).params == count_parameters(model).params
    assert relative_error(outputs(model, x), outputs(pruned, x)) == 0.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures(), ratio=st.sampled_from([0.3, 0.6, 0.9]))
def test_pruning_at_any_ratio_gives_a_working_model(arch, ratio) -> None:
    """The pruner's own plans never break the model (no tensor emptied, every size kept consistent)."""
    model, x = arch
    pruned = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        StructuredPruner(ratio=ratio).prune(pruned, x)
    assert outputs(pruned, x).shape == outputs(model, x).shape
