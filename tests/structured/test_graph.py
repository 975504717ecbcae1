"""Dependency graph and surgery on specific constructs."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import StructureError
from prunekit.structured import ChannelLayer, DependencyGraph, GraphConfig, PruningWarning, register_layer, remove_units
from prunekit.structured.layers import LAYERS

from .archgen import TimmAttention
from .helpers import graph_of, outputs, relative_error, zeroed


def _prune_half(model: nn.Module, x: torch.Tensor, options: GraphConfig | None = None) -> DependencyGraph:
    graph = DependencyGraph.build(model, x, options)
    remove_units(graph, {g: range(g.size // 2) for g in graph.prunable_groups() if g.size >= 2})
    return graph


def _exact(model: nn.Module, x: torch.Tensor, module: str) -> None:
    """Removing half of the first group touching ``module`` equals zeroing it."""
    graph = graph_of(model, x)
    group = next(g for g in graph.prunable_groups() if module in g.modules())
    units = list(range(0, group.size, 2))
    expected = outputs(zeroed(model, group, units), x)
    pruned = copy.deepcopy(model)
    remove_units(graph_of(pruned, x), {group.index: units})
    assert relative_error(expected, outputs(pruned, x)) <= 1e-5


class AttnNet(nn.Module):
    def __init__(self, fused: bool = True) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.attn = TimmAttention(16, 4, fused)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.head(h + self.attn(h)).mean(1)


@pytest.mark.parametrize("fused", [True, False])
def test_attention_heads_are_removed_and_num_heads_follows(fused: bool) -> None:
    model, x = AttnNet(fused).eval(), torch.randn(2, 5, 6)
    _exact(model, x, "attn.qkv")
    graph = graph_of(model, x)
    heads = next(g for g in graph.groups if "attn.qkv" in g.modules("out"))
    assert heads.size == 4 and heads.prunable
    remove_units(graph, {heads: [1, 3]})
    assert (model.attn.num_heads, model.attn.head_dim, model.attn.attn_dim) == (2, 4, 8)
    assert model.attn.qkv.out_features == 24 and model.attn.proj.in_features == 8
    assert model(x).shape == (2, 3)


def test_head_dims_mode_shrinks_every_head() -> None:
    model, x = AttnNet(fused=False).eval(), torch.randn(2, 5, 6)
    graph = DependencyGraph.build(model, x, GraphConfig(attention="head_dims"))
    dims = next(g for g in graph.groups if "attn.qkv" in g.modules("out"))
    assert dims.size == 4  # head_dim positions, shared by all heads
    remove_units(graph, {dims: [0]})
    assert (model.attn.num_heads, model.attn.head_dim, model.attn.attn_dim) == (4, 3, 12)
    assert model(x).shape == (2, 3)


class MHANet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        y, _ = self.mha(h, h, h)
        return self.head(h + y).mean(1)


def test_multihead_attention_prunes_whole_heads() -> None:
    model, x = MHANet().eval(), torch.randn(2, 5, 6)
    _exact(model, x, "mha")
    graph = graph_of(model, x)
    group = next(g for g in graph.prunable_groups() if "mha" in g.modules())
    remove_units(graph, {group: [0, 2]})
    assert (model.mha.num_heads, model.mha.head_dim, model.mha.embed_dim) == (2, 4, 8)
    assert model(x).shape == (2, 3)


class GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 12, 1)
        self.g = nn.Conv2d(12, 12, 3, padding=1, groups=4)
        self.gn = nn.GroupNorm(4, 12)
        self.dw = nn.Conv2d(12, 24, 3, padding=1, groups=12)
        self.head = nn.Linear(24 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.dw(self.gn(self.g(self.a(x)))), 1))


def test_grouped_and_depthwise_convs_lose_whole_groups() -> None:
    model, x = GroupedNet().eval(), torch.randn(2, 3, 4, 4)
    _exact(model, x, "g")
    graph = graph_of(model, x)
    group = next(g for g in graph.prunable_groups() if "g" in g.modules("out"))
    assert group.size == 4  # one unit per conv group
    remove_units(graph, {group: [1]})
    assert (model.g.groups, model.g.in_channels, model.g.out_channels) == (3, 9, 9)
    assert (model.gn.num_groups, model.gn.num_channels) == (3, 9)
    assert (model.dw.groups, model.dw.in_channels, model.dw.out_channels) == (9, 9, 18)
    assert model.head.in_features == 18 * 16
    assert model(x).shape == (2, 2)


class ConcatFlatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 1)
        self.fc = nn.Linear(10 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).flatten(1))


def test_concat_into_flatten_maps_each_channel_to_its_linear_columns() -> None:
    model, x = ConcatFlatten().eval(), torch.randn(2, 3, 2, 2)
    _exact(model, x, "b")
    graph = graph_of(model, x)
    b = next(g for g in graph.groups if g.modules("out") == ["b"])
    member = next(m for m in b.members if m.module == "fc")
    assert (member.units[:16] == -1).all() and sorted(set(member.units[16:].tolist())) == list(range(6))
    assert graph.output_layers() == ["fc"]


class Ghost(nn.Module):
    """GhostNet-style: concat, then keep the first ``out_chs`` channels (an attribute)."""

    def __init__(self) -> None:
        super().__init__()
        self.out_chs = 6
        self.primary = nn.Conv2d(3, 4, 1)
        self.cheap = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.primary(x)
        out = torch.cat([a, self.cheap(a)], dim=1)
        return self.head(out[:, : self.out_chs])


def test_slice_bound_attribute_follows_pruning() -> None:
    model, x = Ghost().eval(), torch.randn(1, 3, 4, 4)
    _exact(model, x, "primary")
    graph = graph_of(model, x)
    group = next(g for g in graph.prunable_groups() if "primary" in g.modules("out"))
    remove_units(graph, {group: [0]})
    assert model.out_chs == 4 and model.head.in_channels == 4
    assert model(x).shape == (1, 2, 4, 4)


class HardCoded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.a(x).view(x.shape[0], 8 * 4))


def test_constant_size_is_refused_with_one_warning_and_no_change() -> None:
    model, x = HardCoded().eval(), torch.randn(1, 3, 2, 2)
    with pytest.warns(PruningWarning) as record:
        graph = DependencyGraph.build(model, x)
    assert len(record) == 1 and "'a'" not in str(record[0].message) and str(record[0].message).startswith("a:")
    group = next(g for g in graph.groups if "a" in g.modules("out"))
    assert not group.prunable
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(StructureError):
        remove_units(graph, {group: [0]})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class Unknown(nn.Module):
    """A parameterised layer whose op has no channel rule."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x * self.scale[:, None, None], dim=1).real


class WithUnknown(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.weird = Unknown(8)
        self.b = nn.Conv2d(8, 8, 1)
        self.c = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.weird(self.a(x))))


@pytest.mark.parametrize("opaque", [False, True])
def test_unsupported_layer_warns_once_and_stays_untouched(opaque: bool) -> None:
    model, x = WithUnknown().eval(), torch.randn(1, 3, 4, 4)
    with pytest.warns(PruningWarning) as record:
        graph = DependencyGraph.build(model, x, GraphConfig(opaque=("weird",) if opaque else ()))
    messages = [str(r.message) for r in record]
    assert len(messages) == 1 and messages[0].startswith("weird:"), messages
    remove_units(graph, {g: range(g.size // 2) for g in graph.prunable_groups()})
    assert model.a.out_channels == 8 and model.weird.scale.shape == (8,) and model.b.in_channels == 8
    assert model.b.out_channels == 4  # the rest is pruned
    assert model(x).shape == (1, 4, 4, 4)


class ShapeBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        if y.shape[1] == 8:  # a decision on a size: pruning must not flip it
            y = y * 2
        return self.b(y)


def test_control_flow_on_sizes_is_guarded() -> None:
    model, x = ShapeBranch().eval(), torch.randn(1, 3, 2, 2)
    with pytest.warns(PruningWarning, match="^a:.*decision"):
        graph = DependencyGraph.build(model, x)
    assert not graph.prunable_groups()


class MyConv(nn.Module):
    """A custom layer with its own attribute names, registered with ChannelLayer."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.cin, self.cout = cin, cout
        self.kernel = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.2)
        self.shift = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(x, 3, padding=1)  # an op the graph has no rule for
        out = self.kernel.reshape(self.cout, -1) @ cols
        return out.reshape(x.shape[0], self.cout, *x.shape[2:]) + self.shift[:, None, None]


class CustomNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 1)
        self.custom = MyConv(6, 8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.custom(torch.relu(self.stem(x)))))


def test_custom_layer_registration_end_to_end() -> None:
    model, x = CustomNet().eval(), torch.randn(2, 3, 4, 4)
    with pytest.warns(PruningWarning, match="^custom:"):  # unfold has no rule: the layer's inputs are blocked
        unhandled = DependencyGraph.build(model, x)
    assert not any("stem" in g.modules() for g in unhandled.prunable_groups())
    register_layer(MyConv, ChannelLayer(in_dims={"kernel": 1}, out_dims={"kernel": 0, "shift": 0}, in_attr="cin", out_attr="cout"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PruningWarning)
            _exact(model, x, "custom")
            _prune_half(model, x)
        assert (model.custom.cin, model.custom.cout) == (3, 4)
        assert model.custom.kernel.shape == (4, 3, 3, 3) and model.head.in_channels == 4
        assert model(x).shape == (2, 2, 4, 4)
    finally:
        LAYERS._items.pop(f"{MyConv.__module__}.{MyConv.__qualname__}")


def test_pruned_model_is_plain() -> None:
    model, x = GroupedNet().eval(), torch.randn(2, 3, 4, 4)
    _prune_half(model, x)
    clone = copy.deepcopy(model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in clone.modules())
    assert type(model.g) is nn.Conv2d and isinstance(model.g.weight, nn.Parameter)
    torch.testing.assert_close(clone(x), model(x))


def test_parametrized_models_are_refused() -> None:
    model = GroupedNet()
    torch.nn.utils.parametrize.register_parametrization(model.a, "weight", nn.Identity())
    with pytest.raises(StructureError, match="parametrizations"):
        DependencyGraph.build(model, torch.randn(1, 3, 4, 4))


def test_building_a_graph_leaves_the_process_thread_count_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(n: int) -> None:
        raise AssertionError("DependencyGraph.build must not change the process-wide thread count")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    graph = DependencyGraph.build(GroupedNet().eval(), torch.randn(1, 3, 4, 4))
    assert graph.prunable_groups()


def test_graph_options_is_a_deprecated_alias_of_graph_config() -> None:
    import prunekit.structured as structured
    from prunekit.structured import graph

    for module in (structured, graph):
        with pytest.deprecated_call(match="use GraphConfig"):
            assert module.GraphOptions is GraphConfig
