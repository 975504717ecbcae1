"""Dynamic gates: one mask per group across coupled layers, the skip path equal to masked dense compute, exact MACs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit import dynamic as dyn
from prunekit.errors import ConfigError
from prunekit.zoo.models.resnet_cifar import BasicBlock  # ResNet-20's block


class InvertedResidual(nn.Module):
    """A MobileNetV2 block: expand 1x1 → depthwise 3x3 → project 1x1, with the residual add."""

    def __init__(self, c: int = 8, e: int = 4) -> None:
        super().__init__()
        self.expand, self.bn1 = nn.Conv2d(c, c * e, 1, bias=False), nn.BatchNorm2d(c * e)
        self.dw, self.bn2 = nn.Conv2d(c * e, c * e, 3, padding=1, groups=c * e, bias=False), nn.BatchNorm2d(c * e)
        self.project, self.bn3 = nn.Conv2d(c * e, c, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu6(self.bn1(self.expand(x)))
        h = nn.functional.relu6(self.bn2(self.dw(h)))
        return x + self.bn3(self.project(h))


class MobileNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.blocks = nn.Sequential(InvertedResidual(), InvertedResidual())
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(torch.relu(self.bn(self.stem(x)))).mean((2, 3)))


class ResNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.blocks = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, stride=2))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(torch.relu(self.bn(self.stem(x)))).mean((2, 3)))


class Fanout(nn.Module):
    """A user model: one activation read by two convs (one group, two consumers) and a conv chain a→b→c."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.b, self.c = nn.Conv2d(12, 10, 3, padding=1), nn.Conv2d(12, 10, 1)
        self.d = nn.Conv2d(10, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn_a(self.a(x)))
        h = torch.relu(self.b(h)) * torch.sigmoid(self.c(h))
        return self.head(torch.relu(self.d(h)).mean((2, 3)))


class Chain3(nn.Module):
    """A plain conv chain: the middle conv consumes one gated group and produces the next."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.b, self.bn_b = nn.Conv2d(12, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10)
        self.c = nn.Conv2d(10, 6, 1)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))))
        return self.head(torch.relu(self.c(h)).mean((2, 3)))


def _randomized(model: nn.Module, seed: int) -> nn.Module:
    """Random weights, BN statistics and gate predictors, so masks differ between inputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, nn.Linear) and m.bias is not None and m.bias.shape[0] > 5:  # gate predictors
                m.weight.normal_(0, 1.0, generator=g)
                m.bias.normal_(0, 0.5, generator=g)
    return model.eval()


def _gated(cls: type[nn.Module], density: float, seed: int = 0) -> dyn.GatedModel:
    torch.manual_seed(seed)
    return _randomized(dyn.add_gates(cls().eval(), torch.randn(1, 3, 16, 16), density=density), seed)  # type: ignore[return-value]


def test_sites_skip_residual_groups_and_keep_block_interiors() -> None:
    sites = {s.name: s for s in _gated(ResNetLike, 0.5).sites}
    assert sorted(sites) == ["blocks.0.conv1", "blocks.1.conv1"]
    assert sites["blocks.0.conv1"].layers == ("blocks.0.conv1", "blocks.0.bn1", "blocks.0.conv2")
    mobile = {s.name: s for s in _gated(MobileNetLike, 0.5).sites}
    assert mobile["blocks.0.expand"].layers == ("blocks.0.expand", "blocks.0.bn1", "blocks.0.bn2", "blocks.0.dw", "blocks.0.project")


def test_unknown_or_residual_group_names_raise() -> None:
    with pytest.raises(ConfigError, match="'stem' matches no gateable group.*residual add"):
        dyn.add_gates(ResNetLike().eval(), torch.randn(1, 3, 16, 16), groups=["stem"])
    with pytest.raises(ConfigError, match="density must be in \\(0, 1\\]"):
        dyn.add_gates(ResNetLike().eval(), torch.randn(1, 3, 16, 16), density=0.0)


def test_every_layer_of_a_group_sees_the_same_mask_per_input() -> None:
    gated = _gated(Fanout, 0.5)
    seen: dict[str, torch.Tensor] = {}
    hooks = [gated.model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: seen.__setitem__(n, a[0]))
             for n in ("b", "c", "d")]  # run after the gates' hooks: they see the gated inputs
    x = torch.randn(6, 3, 16, 16) + 3 * torch.randn(6, 3, 1, 1)  # inputs whose channel means differ: different masks
    with torch.no_grad():
        gated(x)
    for h in hooks:
        h.remove()
    active = gated.active()
    site_a = next(s for s in gated.sites if s.producer == "a")
    assert site_a.consumers == ("b", "c")
    zero_b, zero_c = (seen["b"].abs().amax((2, 3)) == 0), (seen["c"].abs().amax((2, 3)) == 0)
    assert torch.equal(zero_b, zero_c)
    assert torch.equal(zero_b, ~active["a"])  # exactly the skipped channels are zero, per input
    assert (active["a"].sum(1) <= 6).all() and not torch.equal(active["a"][0], active["a"][1])


@pytest.mark.parametrize("cls", [ResNetLike, MobileNetLike, Fanout, Chain3])
@pytest.mark.parametrize(("batch", "size"), [("union", 1), ("union", 5), ("loop", 5)])
def test_skip_path_equals_masked_dense(cls: type[nn.Module], batch: str, size: int) -> None:
    gated = _gated(cls, 0.4)
    x = torch.randn(size, 3, 16, 16) + 2 * torch.randn(size, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(dyn.skip_path(gated, batch)(x), gated(x), atol=1e-5, rtol=0)


def test_chain_middle_conv_consumes_one_group_and_produces_the_next() -> None:
    sites = {s.name: s for s in _gated(Chain3, 0.5).sites}
    assert sites["a"].consumers == ("b",) and sites["b"].consumers == ("c",)
    assert sites["a"].folds == (("a", "bn_a"),) and sites["b"].folds == (("b", "bn_b"),)


@settings(max_examples=12, deadline=None)
@given(density=st.floats(0.05, 1.0), seed=st.integers(0, 10_000), batch=st.integers(1, 3))
def test_skip_path_equals_masked_dense_on_random_inputs(density: float, seed: int, batch: int) -> None:
    gated = _gated(Chain3 if seed % 2 else Fanout, density, seed)
    x = torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        torch.testing.assert_close(dyn.skip_path(gated)(x), gated(x), atol=1e-5, rtol=0)


class Chain(nn.Module):
    """conv(2→4, 3x3) → BN → ReLU → conv(4→3, 1x1) → GAP; 4x4 input, no padding on the 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn, self.b = nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.bn(self.a(x)))).mean((2, 3))


def test_effective_macs_are_exact_on_a_tiny_model() -> None:
    gated = dyn.add_gates(Chain().eval(), torch.randn(1, 2, 4, 4), density=0.5)
    gate = gated.gate("a")
    with torch.no_grad():  # saliencies [3, 2, 0, 1] for every input: top-2 keeps channels 0 and 1
        gate.fc.weight.zero_()
        gate.fc.bias.copy_(torch.tensor([3.0, 2.0, 0.0, 1.0]))
    stats = dyn.gate_stats(gated, [torch.randn(3, 2, 4, 4)])
    conv_a, conv_b, fc = 16 * 4 * 2 * 9, 16 * 3 * 4, 2 * 4  # per input: H·W·Cout·Cin·k² and the gate's linear
    assert stats.dense_macs == conv_a + conv_b + fc
    assert stats.macs.tolist() == [conv_a // 2 + conv_b // 2 + fc] * 3
    assert [(r.name, r.mean, r.min, r.max) for r in stats.rates] == [("a", 0.5, 0.5, 0.5)]
    with torch.no_grad():  # saliency 0 is skipped inside the top-k too: one channel left
        gate.fc.bias.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    assert dyn.gate_stats(gated, [torch.randn(2, 2, 4, 4)]).macs.tolist() == [conv_a // 4 + conv_b // 4 + fc] * 2


@pytest.mark.parametrize(("name", "sites"), [("resnet20", 9), pytest.param("mobilenetv2", 19, marks=pytest.mark.slow)])
def test_zoo_models_gate_their_block_interiors_and_the_skip_path_matches(name: str, sites: int) -> None:
    from prunekit.zoo import create_model

    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32) + torch.randn(2, 3, 1, 1)
    gated = dyn.add_gates(create_model(name).eval(), x[:1], density=0.5).eval()
    with torch.no_grad():  # gates that differ per input, and BN statistics that keep 20 layers' activations finite
        for gate in gated.gates.values():
            gate.fc.weight.normal_(0, gate.fc.in_features ** -0.5)
            gate.fc.bias.normal_(0.5, 0.2)
        for m in gated.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
                m.weight.uniform_(0.5, 1.5)
    assert len(gated.sites) == sites
    with torch.no_grad():
        assert torch.isfinite(gated(x)).all()
        torch.testing.assert_close(dyn.skip_path(gated)(x), gated(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(dyn.skip_path(gated)(x[:1]), gated(x[:1]), atol=1e-5, rtol=0)
