"""Grouped convolutions: channel stripes (the same channel of every group) or whole groups."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from prunekit.metrics import count_macs, count_parameters
from prunekit.pruners import StructuredConfig, StructuredPruner
from prunekit.structured import PruningWarning, remove_units
from prunekit.structured.cost import CostModel
from prunekit.structured.spec import load_pruned, save_pruned

from .helpers import graph_of, outputs, relative_error, zeroed


class NeXt(nn.Module):
    """ResNeXt-style bottleneck: 1x1, grouped 3x3 (56 channels in 7 groups), 1x1."""

    def __init__(self, groups: int = 7, width: int = 56) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.g = nn.Conv2d(width, width, 3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.c = nn.Conv2d(width, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(F.relu(self.bn2(self.g(F.relu(self.bn1(self.a(x)))))))


def _model(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = NeXt().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.normal_(0, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(2, 3, 5, 5)


def _group(graph, module: str, role: str = "out"):
    return next(g for g in graph.prunable_groups() if module in g.modules(role))


def _check_exact(model: nn.Module, x: torch.Tensor, module: str, units: list[int], **options) -> nn.Module:
    """Remove ``units`` of the group ``module`` produces; the result must equal zeroing them."""
    group = _group(graph_of(model, x, **options), module)
    expected = outputs(zeroed(model, group, units), x)
    pruned = copy.deepcopy(model)
    remove_units(graph_of(pruned, x, **options), {group.index: units})
    assert relative_error(expected, outputs(pruned, x)) <= 1e-5
    return pruned


def test_stripes_decouple_input_and_output_and_keep_groups() -> None:
    model, x = _model()
    graph = graph_of(model, x)
    a, g = _group(graph, "a"), _group(graph, "g")
    assert a is not g and (a.size, g.size) == (8, 8)  # one unit per channel position of a group
    assert sorted(a.modules()) == ["a", "bn1", "g"] and sorted(g.modules()) == ["bn2", "c", "g"]
    member = next(m for m in g.members if m.module == "g" and m.dim == 0)
    assert member.units.tolist() == list(range(8)) * 7  # output unit j = channel j of every group
    member = next(m for m in a.members if m.module == "g" and m.dim == 1)
    assert member.units.tolist() == list(range(8))
    remove_units(graph, {a: [0, 2, 4, 6], g: [1, 3, 5, 7]})
    assert (model.g.groups, model.g.in_channels, model.g.out_channels) == (7, 28, 28)
    assert tuple(model.g.weight.shape) == (28, 4, 3, 3)
    assert (model.a.out_channels, model.c.in_channels) == (28, 28)
    assert model(x).shape == (2, 5, 5, 5)


@pytest.mark.parametrize("module", ["a", "g"])
def test_removing_stripes_equals_zeroing_them(module: str) -> None:
    model, x = _model(1)
    pruned = _check_exact(model, x, module, [0, 3, 5])
    assert pruned.g.groups == 7 and pruned.g.weight.shape[:2] == ((56, 5) if module == "a" else (35, 8))


def test_groups_mode_keeps_removing_whole_groups() -> None:
    model, x = _model()
    graph = graph_of(model, x, grouped_conv="groups")
    (group,) = graph.prunable_groups()
    assert group.size == 7 and sorted(group.modules()) == ["a", "bn1", "bn2", "c", "g"]
    _check_exact(model, x, "a", [1, 4], grouped_conv="groups")
    remove_units(graph, {group: [1]})
    assert (model.g.groups, model.g.in_channels, model.g.out_channels) == (6, 48, 48)
    assert tuple(model.g.weight.shape) == (48, 8, 3, 3)


class Depthwise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)  # depthwise, multiplier 2
        self.c = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.dw(self.a(x))))


@pytest.mark.parametrize("mode", ["auto", "channels"])
def test_depthwise_convs_keep_losing_whole_groups(mode: str) -> None:
    model, x = Depthwise().eval(), torch.randn(2, 3, 4, 4)
    graph = graph_of(model, x, grouped_conv=mode)
    (group,) = graph.prunable_groups()
    assert group.size == 8 and sorted(group.modules()) == ["a", "c", "dw"]
    _check_exact(model, x, "a", [0, 5], grouped_conv=mode)
    remove_units(graph, {group: [0, 5]})
    assert (model.dw.groups, model.dw.in_channels, model.dw.out_channels) == (6, 6, 12)


class NeXtGN(NeXt):
    """A GroupNorm over contiguous channels after the grouped conv merges every output stripe."""

    def __init__(self) -> None:
        super().__init__()
        self.bn2 = nn.GroupNorm(7, 56)


def test_auto_falls_back_to_whole_groups_where_stripes_merge_into_one_unit() -> None:
    model, x = NeXtGN().eval(), torch.randn(2, 3, 5, 5)
    auto = graph_of(model, x)
    assert auto.prop.whole_group_convs == {"g"}
    assert [g.size for g in auto.prunable_groups()] == [7]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        channels = graph_of(model, x, grouped_conv="channels")
    assert channels.prop.whole_group_convs == frozenset()
    assert [sorted(g.modules()) for g in channels.prunable_groups()] == [["a", "bn1", "g"]]  # output stripes: one unit


class Functional(nn.Module):
    """``F.conv2d(..., groups=self.groups)`` over a parameter, then one with a literal ``groups`` (or the attribute again)."""

    def __init__(self, literal: bool = True) -> None:
        super().__init__()
        self.literal = literal
        self.a = nn.Conv2d(3, 12, 1)
        self.groups = 3
        self.weight = nn.Parameter(torch.randn(12, 4, 3, 3) * 0.2)
        self.bias = nn.Parameter(torch.randn(12) * 0.1)
        self.w2 = nn.Parameter(torch.randn(12, 4, 1, 1) * 0.2)
        self.c = nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(F.conv2d(self.a(x), self.weight, self.bias, 1, 1, 1, self.groups))
        return self.c(torch.relu(F.conv2d(y, self.w2, groups=3 if self.literal else self.groups)))


@pytest.mark.parametrize("module", ["a", "weight"])
def test_functional_grouped_conv_loses_stripes(module: str) -> None:
    torch.manual_seed(0)
    model, x = Functional().eval(), torch.randn(2, 3, 4, 4)
    graph = graph_of(model, x)
    owner, name = ("a", "weight") if module == "a" else ("", "weight")
    group = next(g for g in graph.prunable_groups() if any((m.module, m.name, m.dim) == (owner, name, 0) for m in g.members))
    assert group.size == 4  # stripes of 3 groups of 4 (a: the input of weight; weight: its output, the input of w2)
    expected = outputs(zeroed(model, group, [1]), x)
    pruned = copy.deepcopy(model)
    remove_units(graph_of(pruned, x), {group.index: [1]})
    assert relative_error(expected, outputs(pruned, x)) <= 1e-5
    assert pruned.groups == 3
    assert tuple(pruned.weight.shape) == ((12, 3, 3, 3) if module == "a" else (9, 4, 3, 3))
    assert tuple(pruned.w2.shape) == ((12, 4, 1, 1) if module == "a" else (12, 3, 1, 1))


def test_functional_groups_attribute_follows_whole_group_removal() -> None:
    torch.manual_seed(0)
    model, x = Functional(literal=False).eval(), torch.randn(2, 3, 4, 4)
    graph = graph_of(model, x, grouped_conv="groups")
    group = next(g for g in graph.prunable_groups() if "a" in g.modules("out"))
    assert group.size == 3
    remove_units(graph, {group: [2]})
    assert model.groups == 2 and tuple(model.weight.shape) == (8, 4, 3, 3) and tuple(model.w2.shape) == (8, 4, 1, 1)
    assert model(x).shape == (2, 4, 4, 4)


class StdConv(nn.Conv2d):
    """Weight standardisation (timm's StdConv2d): each filter normalised over its input channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0, eps=1e-6)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


def test_a_standardised_grouped_conv_keeps_its_input_stripes_with_a_warning() -> None:
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Conv2d(3, 12, 1), nn.ReLU(), StdConv(12, 12, 3, padding=1, groups=3), nn.ReLU(), nn.Conv2d(12, 4, 1)).eval(), torch.randn(2, 3, 5, 5)
    with pytest.warns(PruningWarning, match="2: .*weight standardisation"):
        graph = graph_of(model, x)
    (group,) = graph.prunable_groups()
    assert group.size == 4 and sorted(group.modules()) == ["2", "4"]
    expected = outputs(zeroed(model, group, [1]), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        remove_units(graph, {group: [1]})
    assert relative_error(expected, outputs(model, x)) <= 1e-5
    assert (model[2].groups, model[2].in_channels, model[2].out_channels) == (3, 12, 9)


class OwnForward(nn.Conv2d):
    """A conv subclass with its own forward (traced through, like timm's Conv2dSame)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


@pytest.mark.parametrize(("mode", "units", "want"), [("auto", [1], (4, 8, 4)), ("groups", [1, 2], (2, 4, 4))])
def test_a_traced_through_grouped_conv_keeps_the_right_groups(mode: str, units: list[int], want: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), OwnForward(8, 8, 3, padding=1, groups=4), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval(), torch.randn(2, 3, 4, 4)
    group = _group(graph_of(model, x, grouped_conv=mode), "2" if mode == "auto" else "0")
    expected = outputs(zeroed(model, group, units), x)
    remove_units(graph_of(model, x, grouped_conv=mode), {group.index: units})
    assert relative_error(expected, outputs(model, x)) <= 1e-5
    assert model[2].groups == want[0] and tuple(model[2].weight.shape[:2]) == (want[2], 2)
    if mode == "auto":
        assert (model[2].in_channels, model[2].out_channels) == want[1:]


def test_counted_macs_of_a_striped_conv_follow_the_formula() -> None:
    model, x = _model()
    graph = graph_of(model, x)
    a, g = _group(graph, "a"), _group(graph, "g")
    removed = graph.removed_mask({a.index: [0, 1, 2], g.index: [0, 1, 2, 3]})
    predicted = CostModel(graph).cost(removed)
    remove_units(graph, {a: [0, 1, 2], g: [0, 1, 2, 3]})
    layers = {layer.name: layer.dense for layer in count_macs(model, x).layers}
    assert layers["g"] == 25 * (7 * 4) * 5 * 3 * 3  # positions x out channels x per-group in x kernel
    assert layers["a"] == 25 * 35 * 3 and layers["c"] == 25 * 5 * 28
    assert predicted["macs"] == count_macs(model, x).dense
    assert predicted["params"] == count_parameters(model).params == (3 * 35 + 35) + 2 * 35 + 28 * 5 * 9 + 2 * 28 + (28 * 5 + 5)  # a, bn1, g, bn2, c


def test_spec_rebuilds_a_stripe_pruned_grouped_conv(tmp_path) -> None:
    model, x = _model()
    graph = graph_of(model, x)
    remove_units(graph, {_group(graph, "a"): [0, 2], _group(graph, "g"): [5]})
    save_pruned(model, tmp_path)
    rebuilt = load_pruned(NeXt, tmp_path).eval()
    assert (rebuilt.g.groups, rebuilt.g.in_channels, rebuilt.g.out_channels) == (7, 42, 49)
    assert torch.equal(outputs(model, x), outputs(rebuilt, x))


def _macs_reduction(mode: str) -> float:
    model, x = _model()
    dense = count_macs(model, x).dense
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        StructuredPruner(StructuredConfig(ratio=0.5, round_to=1, grouped_conv=mode)).prune(model, x)
    return dense / count_macs(model, x).dense


def test_stripes_remove_more_macs_than_whole_groups_at_the_same_ratio() -> None:
    stripes, groups = _macs_reduction("auto"), _macs_reduction("groups")
    # 112000 dense MACs; stripes: a 28, g 28 (4 per group), c 28 -> 30800; groups: 4 of 7 kept -> 64000
    assert np.isclose(stripes, 112000 / 30800) and np.isclose(groups, 112000 / 64000), (stripes, groups)


def test_grouped_conv_setting_is_checked_and_reaches_recipes() -> None:
    from prunekit.experiment.recipe import load_recipe, shipped_recipes

    with pytest.raises(ValidationError, match="grouped_conv"):
        StructuredConfig(ratio=0.5, grouped_conv="stripes")
    recipe = load_recipe(shipped_recipes()["structured_resnet20"], ["prune.grouped_conv=groups"])
    assert recipe.prune.grouped_conv == "groups"
    with pytest.raises(ValidationError, match=r"prune\.structured\.grouped_conv"):
        load_recipe(shipped_recipes()["structured_resnet20"], ["prune.grouped_conv=stripes"])


def test_latency_tables_time_a_striped_conv_with_its_groups_kept() -> None:
    from prunekit.deployment.layer_probe import LayerConfig, probe_macs, probe_module
    from prunekit.pruners.latency import layer_sites

    model, x = _model()
    graph = graph_of(model, x)
    site = next(s for s in layer_sites(graph, CostModel(graph)) if s.module == "g")
    assert (site.config.groups, site.config.grouped, site.in_groups) == (7, False, 7)
    assert site.inputs(CostModel(graph).factor_values(graph.removed_mask({_group(graph, "a").index: [0, 1]}))) == 42
    layer = probe_module(site.config, 40, 26)[0]  # rounded up to whole stripes
    assert (layer.in_channels, layer.out_channels, layer.groups) == (42, 28, 7)
    assert probe_macs(site.config, 42, 28) == 25 * 28 * 6 * 9
    whole = LayerConfig.of(model.g, (2, 56, 5, 5))
    assert (whole.groups, whole.in_per_group, whole.out_per_group) == (1, 8, 8) and "groups=" not in whole.name()
