"""Untouched layers are named by construction: split attention, rotary attention, constants, the pruner's check."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch import nn

from prunekit.pruners import StructuredPruner
from prunekit.pruners.structured import unnamed_untouched
from prunekit.structured import DependencyGraph, GraphConfig, PruningWarning
from prunekit.structured.einsum import CONSTANT
from prunekit.structured.surgery import remove_units
from prunekit.zoo import MODELS, create_model, default_input_shape

from .archgen import architectures
from .constructs import RotaryNet, SplitNet
from .helpers import outputs, relative_error, zeroed
from .test_timm import CASES as TIMM_CASES


def _build(model: nn.Module, x: torch.Tensor, **options) -> tuple[DependencyGraph, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", PruningWarning)
        graph = DependencyGraph.build(model, x, GraphConfig(strict=True, **options))
    return graph, [str(r.message) for r in record if issubclass(r.category, PruningWarning)]


def _named_once(messages: list[str], layers: list[str]) -> None:
    """Each layer is said to be left untouched (its own warning, or a site's 'layers left untouched' list) exactly once."""

    def says(message: str, layer: str) -> bool:
        listed = message.rpartition("(layers left untouched: ")[2].rstrip(")").split(", ") if "(layers left untouched: " in message else []
        return message.startswith(f"{layer}: left untouched: ") or layer in listed

    for layer in layers:
        assert sum(says(m, layer) for m in messages) == 1, (layer, messages)


def _check_exact(model: nn.Module, x: torch.Tensor, **options) -> list[str]:
    graph, _ = _build(model, x, **options)
    names = []
    for group in graph.prunable_groups():
        units = [0, group.size - 1] if group.size > 2 else [0]
        expected = outputs(zeroed(model, group, units), x)
        pruned = copy.deepcopy(model)
        twin, _ = _build(pruned, x, **options)
        remove_units(twin, {group.index: units})
        assert relative_error(expected, outputs(pruned, x)) <= 1e-10, group
        names.append(group.name)
    return names


def _split_net() -> SplitNet:
    torch.manual_seed(0)
    model = SplitNet().double().eval()
    with torch.no_grad():
        model.sa.bn.running_mean.normal_(0, 0.3)
        model.sa.bn.weight.normal_(1, 0.3)
    return model


def test_split_attention_loses_channels_of_every_radix_part_exactly() -> None:
    model, x = _split_net(), torch.randn(2, 3, 5, 5, dtype=torch.float64)
    graph, messages = _build(model, x)
    assert messages == [] and graph.untouched_layers() == []
    conv = next(g for g in graph.prunable_groups() if g.name == "sa.conv")
    assert conv.size == 8 and conv.width() == 2  # unit c = channel c of both radix parts
    assert sorted(_check_exact(model, x)) == ["sa.conv", "sa.fc1", "stem"]


def test_split_attention_in_whole_group_mode_names_every_frozen_layer() -> None:
    model, x = _split_net(), torch.randn(2, 3, 5, 5, dtype=torch.float64)
    graph, messages = _build(model, x, grouped_conv="groups")
    frozen = ["stem", "sa.conv", "head"]
    assert sorted(u.name for u in graph.untouched_layers()) == sorted(frozen)
    assert all("single unit by sa.conv" in u.reason for u in graph.untouched_layers())
    assert len(messages) == 3
    _named_once(messages, frozen)


def _rotary(scale: float | None = None, interleaved: bool = False, computed: bool = False) -> tuple[RotaryNet, torch.Tensor]:
    torch.manual_seed(0)
    return RotaryNet(scale=scale, interleaved=interleaved, computed=computed).double().eval(), torch.randn(2, 6, 5, dtype=torch.float64)


@pytest.mark.parametrize(("interleaved", "computed"), [(False, False), (True, False), (False, True)])
def test_rotary_attention_loses_whole_heads_exactly(interleaved: bool, computed: bool) -> None:
    model, x = _rotary(interleaved=interleaved, computed=computed)
    graph, messages = _build(model, x, attention="heads")
    assert messages == [] and graph.untouched_layers() == []
    heads = next(g for g in graph.prunable_groups() if "attn.qkv" in g.modules("out"))
    assert heads.size == 4 and heads.width() == 4  # a head: 4 dims (the residual stream follows it through reshape(B, N, C))
    assert sorted(_check_exact(model, x, attention="heads")) == ["attn.proj", "embed"]


def test_rotary_attention_loses_rotate_half_pairs_of_head_dims_with_an_explicit_scale() -> None:
    model, x = _rotary(scale=0.5)
    graph, messages = _build(model, x, attention="head_dims")
    pairs = next(g for g in graph.prunable_groups() if "attn.qkv" in g.modules("out"))
    assert messages == [] and pairs.size == 2  # dims d and d + head_dim/2 of every head go together
    assert sorted(_check_exact(model, x, attention="head_dims")) == ["attn.proj", "embed"]


def test_head_dims_under_the_default_attention_scale_are_refused_and_named() -> None:
    model, x = _rotary()
    graph, messages = _build(model, x, attention="head_dims")
    assert {u.name for u in graph.untouched_layers()} == {"embed", "attn.qkv"}
    assert len(messages) == 1 and "without scale=" in messages[0]
    _named_once(messages, ["embed", "attn.qkv"])
    assert unnamed_untouched(graph, graph.layers()) == []


class ConstantScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(6, 4, 1)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.linspace(0.5, 1.5, 6).view(1, 6, 1, 1)  # built in forward: cannot shrink with a's channels
        return self.c(self.b(self.a(x) * scale) + x.mean(1, keepdim=True))


def test_a_constant_per_channel_is_named_with_its_site() -> None:
    model, x = ConstantScale().eval(), torch.randn(1, 3, 4, 4)
    graph, messages = _build(model, x)
    assert messages == [f"<model>: channels coupled to it are left untouched: {CONSTANT} (layers left untouched: a)"]
    assert [(u.name, u.where) for u in graph.untouched_layers()] == [("a", "<model>")]
    assert [g.name for g in graph.prunable_groups()] == ["b"]


class InputResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.a(x) + x).mean((2, 3)))  # a's channels are the input's: fixed, ordinarily


class ChannelSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x).softmax(dim=1))  # a removed channel would leave every other output changed


def test_softmax_over_channels_is_refused_and_named() -> None:
    graph, messages = _build(ChannelSoftmax().eval(), torch.randn(1, 3, 4, 4))
    assert not graph.prunable_groups()
    assert messages == ["<model>: channels coupled to it are left untouched: 'softmax' over channels: each output depends on all of them "
                        "(layers left untouched: a, b)"]


def test_layers_fixed_by_inputs_and_outputs_are_not_warned() -> None:
    graph, messages = _build(InputResidual().eval(), torch.randn(1, 3, 4, 4))
    assert messages == [] and graph.untouched_layers() == []
    assert sorted(graph.fixed_by_model()) == ["a", "fc"]


def test_the_pruner_reports_an_untouched_layer_no_warning_names(caplog) -> None:
    model, x = RotaryNet().eval(), torch.randn(2, 6, 5)
    graph, _ = _build(model, x, attention="head_dims")
    graph.warnings.clear()
    assert sorted(unnamed_untouched(graph, graph.layers())) == ["attn.qkv", "embed"]
    assert unnamed_untouched(graph, graph.layers(), ignored=["attn.*", "embed"]) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)
        with caplog.at_level(logging.ERROR, logger="prunekit.pruners.structured"):
            result = StructuredPruner(ratio=0.5, attention="head_dims").prune(model, x)
    assert not [r for r in caplog.records if "please report" in r.getMessage()]
    assert any("attn.qkv" in w for w in result.warnings) and any("embed" in w for w in result.warnings)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(arch=architectures())
def test_generated_architectures_name_every_untouched_layer(arch) -> None:
    model, x = arch
    graph, messages = _build(model, x)
    assert unnamed_untouched(graph, graph.layers()) == []
    _named_once(messages, [u.name for u in graph.untouched_layers()])


SMALL = {"resnet50": (3, 32, 32)}


@pytest.mark.parametrize("name", MODELS.names())
def test_zoo_models_name_every_untouched_layer(name: str) -> None:
    model = create_model(name, input_shape=SMALL[name]) if name in SMALL else create_model(name)
    x = torch.randn(2, *SMALL.get(name, default_input_shape(name)))
    graph, messages = _build(model.eval(), x)
    assert unnamed_untouched(graph, graph.layers()) == []
    assert messages == []


@pytest.mark.parametrize("name", sorted(TIMM_CASES))
def test_timm_test_models_name_every_untouched_layer(timm, name: str) -> None:
    model = timm.create_model(name, pretrained=False, num_classes=10, **TIMM_CASES[name]).eval()
    graph, messages = _build(model, torch.randn(1, 3, 64, 64))
    assert unnamed_untouched(graph, graph.layers()) == []
    _named_once(messages, [u.name for u in graph.untouched_layers()])
