"""grouped_conv="auto": channel stripes or whole groups per grouped conv, chosen by the objective."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import prunekit.pruners.latency as latency_mod
from prunekit.deployment.latency_tables import LayerTable
from prunekit.deployment.layer_probe import probe_macs
from prunekit.metrics import count_macs
from prunekit.pruners import StructuredPruner
from prunekit.pruners.grouped_conv import conv_units, groups_win, output_channels
from prunekit.structured import PruningWarning, remove_units

from ..structured.archgen import Generated
from ..structured.helpers import graph_of, outputs, relative_error, zeroed
from . import test_latency_target
from .test_latency_target import fake_runtime  # noqa: F401 (fixture)


class NeXt(nn.Module):
    """ResNeXt-style bottleneck: 1x1, grouped 3x3 (56 channels in 7 groups of 8), 1x1."""

    def __init__(self, c_in: int = 3, c_out: int = 5, gn: bool = False) -> None:
        super().__init__()
        self.a = nn.Conv2d(c_in, 56, 1)
        self.g = nn.Conv2d(56, 56, 3, padding=1, groups=7, bias=False)
        self.norm = nn.GroupNorm(7, 56) if gn else nn.BatchNorm2d(56)
        self.c = nn.Conv2d(56, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(F.relu(self.norm(self.g(F.relu(self.a(x))))))


def _quiet_groups(block: NeXt, groups: tuple[int, ...] = (1, 3, 5, 6)) -> None:
    """Scale every weight of whole groups (what feeds them, the group, what they feed) to 1e-3: their importance sits in whole groups."""
    with torch.no_grad():
        for i in groups:
            part = slice(8 * i, 8 * i + 8)
            block.a.weight[part] *= 1e-3
            block.a.bias[part] *= 1e-3
            block.g.weight[part] *= 1e-3
            block.c.weight[:, part] *= 1e-3


def _next(seed: int = 0, quiet: bool = False, gn: bool = False) -> tuple[NeXt, torch.Tensor]:
    torch.manual_seed(seed)
    model = NeXt(gn=gn).eval()
    if quiet:
        _quiet_groups(model)
    return model, torch.randn(2, 3, 5, 5)


def _prune(model: nn.Module, x: torch.Tensor, **settings: object):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        return StructuredPruner(**{"ratio": 0.5, "round_to": 1, **settings}).prune(model, x)


def test_stripes_win_where_importance_is_spread_over_the_groups() -> None:
    model, x = _next()
    result = _prune(model, x)
    assert result.grouped_conv == {"g": "channels"}
    assert (model.g.groups, model.g.in_channels, model.g.out_channels) == (7, 28, 28)
    assert result.macs_after == 30800  # a 28, g 28 (4 per group), c 28: as grouped_conv="channels"
    assert result.to_dict()["grouped_conv"] == {"g": "channels"}


def test_whole_groups_win_where_importance_sits_in_whole_groups() -> None:
    model, x = _next(quiet=True)
    result = _prune(model, x)
    assert result.grouped_conv == {"g": "groups"}
    assert (model.g.groups, model.g.in_channels, model.g.out_channels) == (4, 32, 32)  # 3 of 7 groups go
    norms = model.g.weight.reshape(4, -1).norm(dim=1)
    assert int((norms > 0.1).sum()) == 3  # quiet groups went: the 3 strong ones stay (and one quiet one: 4 of 7 stay)
    assert result.macs_after == 64000


def test_a_forced_mode_is_kept_and_recorded() -> None:
    model, x = _next(quiet=True)
    assert _prune(model, x, grouped_conv="channels").grouped_conv == {"g": "channels"} and model.g.groups == 7
    model, x = _next()
    assert _prune(model, x, grouped_conv="groups").grouped_conv == {"g": "groups"} and model.g.groups == 4


class TwoBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b0, self.b1 = NeXt(3, 6), NeXt(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b1(F.relu(self.b0(x)))


def test_each_conv_gets_its_own_mode_and_the_plan_equals_masking() -> None:
    torch.manual_seed(0)
    model, x = TwoBlocks().eval(), torch.randn(2, 3, 5, 5)
    _quiet_groups(model.b1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        pruner = StructuredPruner(ratio=0.5, round_to=1)
        graph, plan = pruner.plan(model, x)
    assert {n: m for n, m in graph.grouped_conv_modes().values()} == {"b0.g": "channels", "b1.g": "groups"}
    masked = copy.deepcopy(model)
    plan.masks(graph).attach(masked)
    expected = outputs(masked, x)
    plan.apply(graph)
    assert (model.b0.g.groups, model.b0.g.out_channels, model.b1.g.groups, model.b1.g.out_channels) == (7, 28, 4, 32)
    assert relative_error(expected, outputs(model, x)) <= 1e-5
    assert pruner.state_dict()["grouped_conv"] == ["b1_g"]


def test_groupnorm_fallback_still_prunes_whole_groups() -> None:
    model, x = _next(gn=True)
    result = _prune(model, x)
    assert result.grouped_conv == {"g": "groups"} and model.g.groups == 4 and model.norm.num_groups == 4
    assert model(x).shape == (2, 5, 5, 5)


def test_the_choice_is_kept_across_steps_and_resumes() -> None:
    model, x = _next(quiet=True)
    pruner = StructuredPruner(ratio=0.5, round_to=1, steps=2)
    pruner.prepare(model, x)
    first = pruner.step(model, x, pruner.schedule()[0])
    assert first.grouped_conv == {"g": "groups"} and pruner.state_dict()["grouped_conv"] == ["g"]
    resumed = StructuredPruner(ratio=0.5, round_to=1, steps=2)
    resumed.load_state_dict(pruner.state_dict())
    assert resumed.step(model, x, 1.0).grouped_conv == {"g": "groups"} and model.g.groups == 4


def test_the_rule_compares_importance_per_cost_removed_and_ties_go_to_more_cost() -> None:
    assert not groups_win((100.0, 10.0), (50.0, 6.0))  # 0.1 vs 0.12 per unit of cost
    assert groups_win((100.0, 10.0), (50.0, 4.0))
    assert groups_win((50.0, 5.0), (100.0, 10.0)) and not groups_win((100.0, 10.0), (50.0, 5.0))  # equal ratios
    assert not groups_win((0.0, 0.0), (0.0, 0.0)) and groups_win((0.0, 0.0), (10.0, 1.0)) and not groups_win((10.0, 1.0), (0.0, 0.0))


def test_whole_groups_span_the_outputs_of_the_layer_before_and_of_the_conv() -> None:
    model, x = _next()
    stripes, groups = graph_of(model, x), graph_of(model, x, grouped_conv="groups")
    assert sorted(output_channels(g) for g in stripes.prunable_groups()) == [56, 56]
    assert [output_channels(g) for g in groups.prunable_groups()] == [112]
    assert conv_units([stripes, groups], {"g": "g"}) == [["g"]]


class RuntimeWithGroupCost(test_latency_target.FakeCall):
    """Latency ∝ MACs plus 0.05 ms per group of each grouped conv (a runtime slow at many small groups)."""

    def __init__(self, model: nn.Module, inputs: tuple) -> None:
        super().__init__(model, inputs)
        self.ms += 0.05 * sum(m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels)


def _group_cost_tables(requests, runtime=None, batch_size=1, threads=1, **_):
    def ms(config, ci, co):
        groups = co // config.out_per_group if config.grouped else config.groups
        return probe_macs(config, ci, co) / 1e6 + (0.05 * groups if groups > 1 else 0.0)

    return {c: LayerTable(c, gi, go, [[ms(c, ci, co) for co in go] for ci in gi]) for c, (gi, go) in requests.items()}


def test_latency_targets_choose_by_the_latency_tables(fake_runtime, monkeypatch) -> None:  # noqa: F811 (the fixture)
    model, x = _next()
    assert _prune(model, x, ratio=None, latency_reduction=1.4).grouped_conv == {"g": "channels"}  # latency ∝ MACs: stripes
    monkeypatch.setattr(test_latency_target, "FakeCall", RuntimeWithGroupCost)
    monkeypatch.setattr(latency_mod, "measure_tables", _group_cost_tables)
    model, x = _next()
    dense_ms = RuntimeWithGroupCost(model, (x,)).ms
    result = _prune(model, x, ratio=None, latency_reduction=1.4)
    assert result.grouped_conv == {"g": "groups"} and model.g.groups < 7
    assert dense_ms / RuntimeWithGroupCost(model, (x,)).ms == pytest.approx(1.4, rel=0.05)


@st.composite
def grouped_models(draw) -> tuple[nn.Module, torch.Tensor]:
    """Generated models (the property test's blocks) with one to three ResNeXt-style grouped blocks that stripes fit, residual blocks between."""
    blocks = []
    for i in range(draw(st.integers(1, 3))):
        if i and draw(st.booleans()):
            blocks.append(("residual", dict(hidden=draw(st.integers(2, 5)), op="add")))
        blocks.append(("grouped", dict(groups=draw(st.sampled_from([2, 3])), per_in=draw(st.sampled_from([2, 3])), per_out=draw(st.sampled_from([2, 3])),
                                       bn=draw(st.booleans()), bias=draw(st.booleans()), gn=draw(st.sampled_from([False, False, True])),
                                       functional=draw(st.booleans()))))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = Generated(draw(st.sampled_from([4, 6])), blocks, draw(st.sampled_from(["pool", "flatten"])), 3).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.double(), torch.randn(2, 3, 3, 3, dtype=torch.float64)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(arch=grouped_models(), data=st.data())
def test_any_mix_of_modes_removes_exactly_what_zeroing_does(arch, data) -> None:
    model, x = arch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        fitting = sorted(graph_of(model, x).prop.grouped_convs)
        whole = frozenset(data.draw(st.lists(st.sampled_from(fitting), unique=True), label="whole groups"))
        graph = graph_of(model, x, whole_group_convs=whole)
        group = data.draw(st.sampled_from(graph.prunable_groups()), label="group")
        units = data.draw(st.lists(st.integers(0, group.size - 1), min_size=1, max_size=group.size - 1, unique=True), label="units")
        expected = outputs(zeroed(model, group, units), x)
        pruned = copy.deepcopy(model)
        remove_units(graph_of(pruned, x, whole_group_convs=whole), {group.index: units})
    assert relative_error(expected, outputs(pruned, x)) <= 1e-5, (whole, group, units)
    assert count_macs(pruned, x).dense < count_macs(model, x).dense
