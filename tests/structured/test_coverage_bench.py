"""The coverage benchmark's checks: degenerate parameters are re-initialised, constant outputs are caught, untouched layers are matched to warnings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import structured_coverage as cov


class LayerScaled(nn.Module):
    """A conv with a zero extra bias and a 1e-5 layer scale, then a zero-initialised classifier: its output is all zero."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.q_bias = nn.Parameter(torch.zeros(8))  # named like EVA's q_bias: a bias, left as it is
        self.gamma = nn.Parameter(torch.full((8,), 1e-5))
        self.head = nn.Linear(8, 4)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.gamma[:, None, None] * (self.conv(x) + self.q_bias[:, None, None])).mean((2, 3)))


def test_reinit_degenerate_gives_tiny_parameters_seeded_values_and_leaves_the_rest():
    torch.manual_seed(0)
    model = LayerScaled()
    conv_before = model.conv.weight.clone()
    x, x2 = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    assert cov.input_spread(model, x, x2) == 0.0  # the blind spot: every input gives 0

    changed = cov.reinit_degenerate(model)

    assert changed == ["gamma", "head.weight"]
    assert torch.equal(model.conv.weight, conv_before) and not model.head.bias.any() and not model.q_bias.any()  # biases stay
    gamma, head = model.gamma.detach(), model.head.weight.detach()
    assert 0.5 <= float(gamma.min()) and float(gamma.max()) < 1.0
    assert 0.2 < float(head.std()) * math.sqrt(8) < 5.0  # std ~ 1/sqrt(fan-in)
    assert cov.input_spread(model, x, x2) > cov.SPREAD_TOL

    again = LayerScaled()
    cov.reinit_degenerate(again)
    assert torch.equal(again.head.weight, model.head.weight) and torch.equal(again.gamma, model.gamma)  # same for both tools


def test_unnamed_matches_whole_dotted_layer_names_only():
    warnings = ["blocks.0.attn.qkv: channels coupled to it are left untouched: rotary q/k (layers left untouched: blocks.0.attn.proj, head)"]
    layers = ["blocks.0.attn.qkv", "blocks.0.attn.proj", "head", "blocks.0.attn", "blocks.1.attn.qkv"]
    assert cov.unnamed(layers, warnings) == ["blocks.0.attn", "blocks.1.attn.qkv"]


def test_summarise_compares_only_where_both_tools_pass():
    def rec(model: str, tool: str, ok: bool, before: int = 400, after: int = 100, seconds: float = 1.0, **extra) -> dict:
        return {"model": model, "tool": tool, "ok": ok, "export_ok": ok, "macs_before": before, "macs_after": after, "prune_seconds": seconds, **extra}

    records = [
        rec("a", "prunekit", True, after=100, seconds=2.0, warnings=1, untouched_unnamed=[]),
        rec("a", "torch_pruning", True, after=200, seconds=0.5),
        rec("b", "prunekit", True, after=400 / 9, seconds=4.0, warnings=2, untouched_unnamed=["x.conv"]),
        rec("b", "torch_pruning", True, after=100, seconds=1.5),
        rec("c", "prunekit", True, seconds=8.0, warnings=0, untouched_unnamed=[]),
        rec("c", "torch_pruning", False, input_dependent=False),
    ]
    summary = cov.summarise(records)
    assert summary["both_ok"]["models"] == 2
    assert summary["both_ok"]["geomean_macs_reduction"] == {"prunekit": 6.0, "torch_pruning": pytest.approx(math.sqrt(8), abs=1e-3)}
    assert summary["both_ok"]["median_prune_seconds"] == {"prunekit": 3.0, "torch_pruning": 1.0}
    assert summary["prunekit"]["median_prune_seconds"] == 4.0
    assert summary["prunekit"]["warnings_total"] == 3
    assert summary["prunekit"]["models_with_unnamed_untouched_layer"] == ["b"]
    assert summary["torch_pruning"]["not_input_dependent"] == ["c"]
    assert (summary["prunekit"]["ok"], summary["torch_pruning"]["ok"]) == (3, 2)
