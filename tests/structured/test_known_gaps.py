"""Known engine gaps, each pinned by a strict xfail: the test starts passing (and fails as XPASS) once fixed."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from prunekit.structured import PruningWarning
from prunekit.structured.surgery import remove_units

from .archgen import Generated
from .helpers import graph_of, outputs, relative_error, zeroed


@pytest.mark.xfail(strict=True, raises=RuntimeError, reason=(
    "a 1-channel part of x.split(x.shape[1] // 2) is not coupled to the conv reading it (size-1 axes count as broadcast in "
    "structured/einsum.py), so removing the producer's channel leaves that conv a 0-channel input (found by the property test)"))
def test_removing_a_channel_that_feeds_a_one_channel_split_part_equals_zeroing_it() -> None:
    torch.manual_seed(0)
    conv = {"c_out": 2, "groups": 1, "k": 1, "bias": True, "norm": "none", "act": "none", "gn": 1}
    model = Generated(4, [("conv", conv), ("split", {"dw": False, "chunk": False, "cat": True})], "pool", 3).double()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        graph = graph_of(model, x)
        group = next(g for g in graph.prunable_groups() if any(m.module == "blocks.0.conv" and m.role == "out" for m in g.members))
        expected = outputs(zeroed(model, group, [0]), x)
        pruned = copy.deepcopy(model)
        remove_units(graph_of(pruned, x), {group.index: [0]})
    assert relative_error(expected, outputs(pruned, x)) <= 1e-5
