"""The latency staircase of a model's own layers: which layers, which channel counts, one table lookup per count."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.pruners.latency import RuntimeTarget
from prunekit.pruners.layer_staircases import layer_staircases, staircase_counts
from prunekit.structured.graph import DependencyGraph


def test_counts_span_half_to_full_width_with_every_multiple_of_the_step() -> None:
    counts = staircase_counts(64, 8, 5)
    assert counts[0] == 32 and counts[-1] == 64 and counts == sorted(set(counts))
    assert {32, 40, 48, 56, 64} <= set(counts)
    assert staircase_counts(3, 1, 24) == [1, 2, 3]
    assert staircase_counts(10, 1, 2) == [5, 10]


def test_costliest_distinct_layers_are_measured_against_their_output_channels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()
    x = torch.randn(1, 3, 8, 8)
    own = layer_staircases(DependencyGraph.build(model, x), (x,), RuntimeTarget("torch"), layers=3, step=2, points=3)
    # "2" has the most MACs; "4" has the same shape and input width, so it is not measured again; "6" feeds the output (fixed width)
    assert list(own) == ["2", "0"]
    assert own["2"]["inputs"] == 8 and own["0"]["inputs"] == 3
    for data in own.values():
        assert data["counts"] == [4, 6, 8]
        assert len(data["ms"]) == 3 and all(ms > 0 for ms in data["ms"])
