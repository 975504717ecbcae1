"""Sizes computed from module attributes are rewritten where exact (issue 11 item 4); the rest is refused with a warning."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from prunekit.pruners import StructuredPruner
from prunekit.structured import DependencyGraph, PruningWarning, remove_units
from prunekit.structured.values import TracedInt

from .helpers import graph_of, outputs, relative_error, zeroed


class SplitBlock(nn.Module):
    """CSP-style: one conv's channels split in two by a size computed from ``self.c``."""

    def __init__(self, mode: str, c: int = 8) -> None:
        super().__init__()
        self.mode, self.c, self.k, self.parts = mode, c, 1, 2
        self.sizes: list[int] | tuple[int, ...] = (3, 5) if mode == "tuple" else [3, 5]
        first, second = (3, 5) if mode in ("list", "tuple") else (4, 4)
        self.stem = nn.Conv2d(3, 8, 1)
        self.a = nn.Conv2d(first, 4, 3, padding=1)
        self.b = nn.Conv2d(second, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        if self.mode == "half":
            p, q = h.split(self.c // 2, dim=1)
        elif self.mode in ("list", "tuple"):
            p, q = torch.split(h, self.sizes, 1)
        elif self.mode == "chunk":
            p, q = h.chunk(2, dim=1)
        elif self.mode == "slice":
            p, q = h[:, : self.c // 2], h[:, self.c // 2 :]
        elif self.mode == "times":
            p, q = h.split(self.k * 4, dim=1)
        else:  # "two_attrs": no single attribute to rewrite
            p, q = h.split(self.c // self.parts, dim=1)
        return torch.cat([self.a(p), self.b(q)], 1)


class SplitNet(nn.Module):
    def __init__(self, mode: str, c: int = 8) -> None:
        super().__init__()
        self.block = SplitBlock(mode, c)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x)).mean((2, 3))


def _stem_groups(graph: DependencyGraph) -> list:
    return [g for g in graph.groups if "block.stem" in g.modules("out")]


def _prune_exactly(model: nn.Module, x: torch.Tensor, module: str, units_of: dict[int, list[int]] | None = None) -> nn.Module:
    """Remove units of every group ``module`` produces; the result must equal zeroing them. Returns the pruned model."""
    graph = graph_of(model, x)
    groups = [g for g in graph.groups if module in g.modules("out")]
    assert groups and all(g.prunable for g in groups), [(g.name, g.reason) for g in groups]
    plan = {g.index: (units_of or {}).get(i, [0, g.size - 1]) for i, g in enumerate(groups)}
    ref = model
    for g in groups:  # zero every group in one reference copy
        ref = zeroed(ref, g, plan[g.index])
    expected = outputs(ref, x)
    pruned = copy.deepcopy(model)
    remove_units(graph_of(pruned, x), plan)
    assert relative_error(expected, outputs(pruned, x)) <= 1e-5
    return pruned


def test_split_by_half_an_attribute_rewrites_the_attribute() -> None:
    model, x = SplitNet("half").eval(), torch.randn(2, 3, 5, 5)
    (group,) = _stem_groups(graph_of(model, x))
    assert group.size == 4  # the two halves are coupled position by position
    pruned = _prune_exactly(model, x, "block.stem", {0: [1, 2]})
    assert (model.block.c, pruned.block.c) == (8, 4)
    assert type(pruned.block.c) is int
    assert (pruned.block.stem.out_channels, pruned.block.a.in_channels, pruned.block.b.in_channels) == (4, 2, 2)


@pytest.mark.parametrize("mode", ["list", "tuple"])
def test_split_sections_stored_on_the_module_are_rewritten_item_by_item(mode: str) -> None:
    model, x = SplitNet(mode).eval(), torch.randn(2, 3, 5, 5)
    assert [g.size for g in _stem_groups(graph_of(model, x))] == [3, 5]
    pruned = _prune_exactly(model, x, "block.stem", {0: [0], 1: [1, 2, 4]})
    expected: list[int] | tuple[int, ...] = [2, 2] if mode == "list" else (2, 2)
    assert pruned.block.sizes == expected and type(pruned.block.sizes) is type(expected)
    assert all(type(v) is int for v in pruned.block.sizes)
    assert (pruned.block.a.in_channels, pruned.block.b.in_channels) == (2, 2)


def test_the_pruner_keeps_the_sections_of_one_layer_apart() -> None:
    """Two groups of one split layer have their own original sizes: ratio 0 removes nothing, ratio 0.5 halves each."""
    model, x = SplitNet("list").eval(), torch.randn(2, 3, 5, 5)
    assert StructuredPruner(ratio=0.0).prune(copy.deepcopy(model), x).units_removed == 0
    pruned = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PruningWarning)
        StructuredPruner(ratio=0.5, allocation="uniform").prune(pruned, x)
    assert pruned.block.sizes == [pruned.block.a.in_channels, pruned.block.b.in_channels] == [2, 3]
    assert pruned.block.stem.out_channels == 5 and pruned(x).shape == (2, 2)


def test_chunk_keeps_equal_pieces() -> None:
    model, x = SplitNet("chunk").eval(), torch.randn(2, 3, 5, 5)
    pruned = _prune_exactly(model, x, "block.stem", {0: [3]})
    assert (pruned.block.stem.out_channels, pruned.block.a.in_channels, pruned.block.b.in_channels) == (6, 3, 3)


def test_slices_bounded_by_an_attribute_expression_follow_the_kept_channels() -> None:
    model, x = SplitNet("slice").eval(), torch.randn(2, 3, 5, 5)
    assert [g.size for g in _stem_groups(graph_of(model, x))] == [4, 4]  # halves are independent
    pruned = _prune_exactly(model, x, "block.stem", {0: [0, 3], 1: [1]})
    assert pruned.block.c == 4  # the split point moved from 4 to 2
    assert (pruned.block.stem.out_channels, pruned.block.a.in_channels, pruned.block.b.in_channels) == (5, 2, 3)


@pytest.mark.parametrize(("mode", "c", "message"), [
    ("half", 9, "split size: size argument 0 (block.c // 2 = 4) cannot be rewritten exactly to 3"),  # 9 // 2: no exact inverse
    ("times", 8, "split size: size argument 0 (block.k * 4 = 4) cannot be rewritten exactly to 3"),
    ("two_attrs", 8, "split size: size argument 0 would be 4 but the pruned tensor needs 3"),
])
def test_sizes_without_an_exact_rewrite_are_refused_with_a_warning(mode: str, c: int, message: str) -> None:
    model, x = SplitNet(mode, c).eval(), torch.randn(2, 3, 5, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = DependencyGraph.build(model, x)
    (group,) = _stem_groups(graph)
    assert not group.prunable and group.reason == f"block: {message}"
    assert [str(w.message) for w in caught if issubclass(w.category, PruningWarning)] == [
        f"block.stem: channels coupled to it are left untouched: block: {message} (layers left untouched: block.stem)"]


def test_traced_int_arithmetic_keeps_its_attribute_and_inverts_only_exactly() -> None:
    c = TracedInt(8, "block", "c")
    half = c // 2
    assert isinstance(half, TracedInt) and int(half) == 4 and half.key == ("block", "c", None)
    assert half.describe() == "block.c // 2" and half.of(6) == 3 and half.solve(3) == 6
    assert ((c - 1) * 3).describe() == "(block.c - 1) * 3" and ((c - 1) * 3).solve(12) == 5
    assert (3 * c).solve(10) is None and (TracedInt(9, "", "c") // 2).solve(3) is None
    assert (10 - c).solve(4) == 6 and half.rebind(4) == [] and half.rebind(2) == [(("block", "c", None), 4)]
    assert type(c + TracedInt(2, "block", "k")) is int and type(c * 0.5) is float  # two attributes / floats: plain values
    assert type(copy.deepcopy(half)) is int and copy.deepcopy(half) == 4  # a copy is the plain value


class AutocastBlock(nn.Module):
    """A region forced to float32 with ``torch.autocast(device_type=x.device.type, enabled=False)``."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.enabled):
            h = torch.relu(self.norm(self.conv(x)))
        return h.float()


class AutocastNet(nn.Module):
    def __init__(self, enabled: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.block = AutocastBlock(enabled)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x))).mean((2, 3))


def test_autocast_regions_are_traced_through() -> None:
    model, x = AutocastNet().eval(), torch.randn(2, 3, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PruningWarning)
        graph = graph_of(model, x)
    assert graph.prop.trace.opaque == {}
    assert {"block.conv", "block.norm"} <= {m for g in graph.prunable_groups() for m in g.modules()}
    pruned = _prune_exactly(model, x, "block.conv")
    assert pruned.block.conv.out_channels == 6 and pruned.block.norm.num_features == 6


def test_a_pruned_model_still_runs_inside_autocast() -> None:
    model, x = AutocastNet(enabled=True).eval(), torch.randn(2, 3, 5, 5)
    graph = graph_of(model, x)
    assert graph.prop.trace.opaque == {}
    group = next(g for g in graph.prunable_groups() if "block.conv" in g.modules("out"))
    ref = zeroed(model, group, [0, 1])
    remove_units(graph, {group: [0, 1]})
    assert model.block.conv.out_channels == 6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = outputs(model, x), outputs(ref, x)
    assert got.dtype == expected.dtype == torch.bfloat16
    assert relative_error(expected.float(), got.float()) <= 2e-2  # bf16 rounding of a different summation


class WindowAttention(nn.Module):
    """Swin/MaxViT-style: partition (B, H, W, C) into ws x ws windows, mix tokens per window, merge back."""

    def __init__(self, dim: int, ws: int) -> None:
        super().__init__()
        self.dim, self.ws = dim, ws
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        ws = self.ws
        w = x.view(B, H // ws, ws, W // ws, ws, self.dim).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, self.dim)
        w = self.proj(self.norm(w)).softmax(1) * w  # tokens mixed inside each window
        return w.view(B, H // ws, W // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


class WindowNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.attn = WindowAttention(8, 2)
        self.mlp = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.attn(h)
        return self.head(torch.relu(self.mlp(h))).mean((1, 2))


def test_window_partition_passes_channels_on_the_last_axis_through() -> None:
    model, x = WindowNet().eval(), torch.randn(2, 4, 6, 3)
    pruned = _prune_exactly(model, x, "embed")
    assert (model.attn.dim, pruned.attn.dim, pruned.attn.ws) == (8, 6, 2)
    assert pruned.attn.proj.in_features == pruned.attn.proj.out_features == 6
    assert pruned(torch.randn(1, 4, 6, 3)).shape == (1, 2)


class RelPosBias(nn.Module):
    """A bias table read through a method another module's forward calls (timm's ``rel_pos.get_bias()``)."""

    def __init__(self, tokens: int, heads: int) -> None:
        super().__init__()
        self.bias_shape = (tokens, tokens, heads)
        self.table = nn.Parameter(torch.randn(tokens * tokens, heads))

    def get_bias(self) -> torch.Tensor:
        return self.table.view(self.bias_shape).permute(2, 0, 1)


class BiasedAttention(nn.Module):
    def __init__(self, dim: int, heads: int, tokens: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rel_pos = RelPosBias(tokens, heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5 + self.rel_pos.get_bias()
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(B, N, -1))


class BiasedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.attn = BiasedAttention(8, 4, 5)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.head(h + self.attn(h)).mean(1)


def test_attributes_read_by_a_method_another_forward_calls_are_rewritten() -> None:
    model, x = BiasedNet().eval(), torch.randn(2, 5, 3)
    (heads,) = [g for g in graph_of(model, x).groups if "attn.qkv" in g.modules("out")]
    assert heads.size == 4 and "attn.rel_pos" in heads.modules()
    pruned = _prune_exactly(model, x, "attn.qkv", {0: [1, 2]})
    assert (model.attn.rel_pos.bias_shape, pruned.attn.rel_pos.bias_shape) == ((5, 5, 4), (5, 5, 2))
    assert (pruned.attn.num_heads, pruned.attn.head_dim, tuple(pruned.attn.rel_pos.table.shape)) == (2, 2, (25, 2))
