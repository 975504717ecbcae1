"""Depth pruning: which blocks are found, removing a block = zeroing its branch, exact MACs, targets and errors."""

from __future__ import annotations

import copy
import logging
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.errors import ConfigError, StructureError
from prunekit.metrics import count_macs, count_parameters
from prunekit.pruners.depth import DEPTH_CRITERIA, DepthConfig, DepthContext, prune_depth
from prunekit.pruners.depth_blocks import ResidualBlock, find_blocks
from prunekit.structured import load_pruned, save_pruned
from prunekit.zoo import create_model

X32 = torch.randn(2, 3, 32, 32)
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a block whose removal is not exact would show."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model.eval()


def _zero_branches(model: nn.Module, block: ResidualBlock) -> None:
    """Make every branch of ``block`` output zero: weight (and bias) of the layer ending it, or the layer scale."""
    with torch.no_grad():
        for end in block.branch_ends:
            assert end, f"{block.name}: branch end unknown"
            try:
                module = model.get_submodule(end)
            except AttributeError:
                model.get_parameter(end).zero_()
                continue
            module.weight.zero_()
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _only(names: set[str]):
    """A criterion scoring the named blocks lowest (so exactly those are removed)."""
    def chosen(block: ResidualBlock, ctx: DepthContext) -> float:
        return 0.0 if block.name in names else 1.0
    return chosen


def _assert_removal_equals_zeroing(model: nn.Module, x: torch.Tensor, names: set[str], found: list[ResidualBlock] | None = None) -> None:
    blocks = {b.name: b for b in (found or find_blocks(model, x))}
    zeroed = copy.deepcopy(model)
    for name in names:
        _zero_branches(zeroed, blocks[name])
    pruned = copy.deepcopy(model)
    result = prune_depth(pruned, x, blocks=len(names), importance=_only(names))
    assert set(result.removed) == names
    torch.testing.assert_close(_outputs(pruned, x), _outputs(zeroed, x), rtol=1e-6, atol=1e-6)


# --- which blocks are found -----------------------------------------------------------------------
@pytest.mark.parametrize(("name", "removable", "projection"), [("resnet20", 7, 2), ("resnet56", 25, 2), ("mobilenetv2", 10, 0)])
def test_zoo_blocks_are_found_with_their_shortcuts(name: str, removable: int, projection: int) -> None:
    blocks = find_blocks(create_model(name), X32)
    assert sum(b.removable for b in blocks) == removable
    stuck = [b for b in blocks if not b.removable]
    assert len(stuck) == projection
    assert all("shortcut is not the identity" in b.reason and f"'{b.name}.shortcut.0'" in b.reason for b in stuck)
    if name.startswith("resnet"):
        first = blocks[0]
        assert (first.name, first.branch_ends, first.post) == ("layer1.0", ("layer1.0.bn2",), "layer1.0.relu")
        assert isinstance(first.replacement(create_model(name)), nn.ReLU)
    else:
        assert all(b.post == "" and b.branch_ends[0].endswith(".block.7") for b in blocks)  # x + out: no activation after the add
        assert isinstance(blocks[0].replacement(create_model(name)), nn.Identity)


def test_resnet56_block_macs_and_params() -> None:
    """Every ResNet-56 block costs 4,718,592 MACs (16×32², 32×16², 64×8² channels × positions are equal); params grow 4× per stage."""
    blocks = [b for b in find_blocks(create_model("resnet56"), X32) if b.removable]
    assert {b.macs for b in blocks} == {4_718_592}
    assert {b.name.split(".")[0]: b.params for b in blocks} == {"layer1": 4_672, "layer2": 18_560, "layer3": 73_984}


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 2:  # control flow on a shape: torch.fx.symbolic_trace cannot follow it
            return x + self.conv(x)
        return x


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class _Outer(nn.Module):
    """A residual block whose branch holds another residual block."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _Twice()
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn(self.inner(x)))


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.untraceable = _Untraceable()
        self.shared = _Twice()
        self.outer = _Outer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.untraceable(self.stem(x))
        return self.outer(self.shared(self.shared(x)))


def test_untraceable_shared_and_nested_blocks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="prunekit.pruners.depth_blocks"):
        blocks = {b.name: b for b in find_blocks(_Mixed(), torch.randn(2, 3, 8, 8))}
    assert "skipping untraceable (_Untraceable): torch.fx cannot trace it" in caplog.text and "untraceable" not in blocks
    assert not blocks["shared"].removable and blocks["shared"].reason == "it is called 2 times (a shared module)"
    assert blocks["outer"].removable and blocks["outer"].post == "relu" and blocks["outer"].branch_ends == ("outer.bn",)
    assert not blocks["outer.inner"].removable and "inside the removable block 'outer'" in blocks["outer.inner"].reason
    assert isinstance(blocks["outer"].replacement(_Mixed()), nn.ReLU)


# --- removing a block = zeroing its branch --------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2"])
def test_each_zoo_block_removed_equals_its_branch_zeroed(name: str) -> None:
    model = _randomize_norms(create_model(name))
    x = torch.randn(2, 3, 16, 16)  # any size shows it; smaller is faster
    found = find_blocks(model, x)
    for block in [b for b in found if b.removable]:
        _assert_removal_equals_zeroing(model, x, {block.name}, found)


class _GenBlock(nn.Module):
    """A residual block written in one of the ways real code writes them."""

    def __init__(self, channels: int, style: str, post: str, end: str) -> None:
        super().__init__()
        self.style, self.post_style, self.end = style, post, end
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 1, bias=end == "conv")]
        if end == "bn":
            layers.append(nn.BatchNorm2d(channels))
        self.branch = nn.Sequential(*layers)
        if end == "scale":
            self.gamma = nn.Parameter(torch.rand(channels) + 0.5)
        self.shortcut = nn.Identity()
        self.act = nn.GELU() if post == "gelu" else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.end == "scale":
            out = out * self.gamma.reshape(1, -1, 1, 1)
        if self.style == "add":
            y = out + x
        elif self.style == "radd":
            y = self.shortcut(x) + out
        elif self.style == "iadd":
            out += x
            y = out
        elif self.style == "torch_add":
            y = torch.add(x, out)
        else:
            y = x.add(out)
        if self.post_style in ("relu", "gelu"):
            return self.act(y)
        if self.post_style == "functional":
            return F.relu(y)
        if self.post_style == "method":
            return y.relu()
        return y


class _Projection(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv, self.bn, self.proj = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)) + self.proj(x))


_BLOCK = st.tuples(st.sampled_from(["add", "radd", "iadd", "torch_add", "method"]), st.sampled_from(["none", "relu", "gelu", "functional", "method"]),
                   st.sampled_from(["bn", "conv", "scale"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_BLOCK, min_size=1, max_size=4), st.sampled_from([4, 8]), st.booleans(), st.data())
def test_generated_blocks_removed_equal_their_branches_zeroed(specs, channels, projection, data) -> None:
    torch.manual_seed(len(specs) * 10 + channels)
    layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1)]
    for i, spec in enumerate(specs):
        if projection and i == 1:
            layers.append(_Projection(channels, channels * 2))
            channels *= 2
        layers.append(_GenBlock(channels, *spec))
    model = _randomize_norms(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 3)))
    x = torch.randn(2, 3, 8, 8)
    blocks = find_blocks(model, x)
    removable = [b.name for b in blocks if b.removable]
    assert len(removable) == len(specs) and [b.removable for b in blocks].count(False) == int(projection and len(specs) > 1)
    names = set(data.draw(st.lists(st.sampled_from(removable), min_size=1, unique=True)))
    _assert_removal_equals_zeroing(model, x, names)


@pytest.fixture(scope="module")
def timm():
    """timm imported through the torchvision stand-in (skips when timm is not installed)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    from support.torchvision_standin import install

    install()
    return pytest.importorskip("timm")


@pytest.mark.parametrize(("name", "kwargs", "removable"), [
    ("resnet18", {}, 5), ("convnext_atto", {}, 12), ("vit_tiny_patch16_224", {"img_size": 32}, 12), ("efficientnet_b0", {}, 9),
])
def test_timm_blocks_removed_equal_their_branches_zeroed(timm, name: str, kwargs: dict, removable: int) -> None:
    model = _randomize_norms(timm.create_model(name, pretrained=False, num_classes=10, **kwargs))
    x = torch.randn(2, 3, 32, 32)
    found = find_blocks(model, x)
    blocks = [b for b in found if b.removable]
    assert len(blocks) == removable
    if name.startswith("vit"):
        assert blocks[0].branch_ends == ("blocks.0.attn.proj", "blocks.0.mlp.fc2")  # attention and MLP: one block, two branches
    _assert_removal_equals_zeroing(model, x, {blocks[0].name}, found)
    _assert_removal_equals_zeroing(model, x, {blocks[1].name, blocks[-1].name}, found)


# --- what prune_depth does ------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 8])
def test_macs_and_params_fall_by_exactly_the_removed_blocks(k: int) -> None:
    model = create_model("resnet56")
    blocks = {b.name: b for b in find_blocks(model, X32)}
    keys = set(model.state_dict())
    result = prune_depth(model, X32, blocks=k, importance="l2")
    assert len(result.removed) == k
    assert result.macs_before == count_macs(create_model("resnet56"), X32).dense
    assert result.macs_before - result.macs_after == sum(blocks[n].macs for n in result.removed) == k * 4_718_592
    assert result.params_before - result.params_after == sum(blocks[n].params for n in result.removed)
    assert result.params_after == count_parameters(model).params
    assert set(model.state_dict()) == {key for key in keys if not any(key.startswith(n + ".") for n in result.removed)}
    assert all(type(model.get_submodule(n)) is nn.ReLU for n in result.removed)
    assert type(model.layer1).__name__ == "Sequential" and type(model).__name__ == "CifarResNet"


def test_removing_no_block_changes_nothing() -> None:
    model = _randomize_norms(create_model("resnet20"))
    before = copy.deepcopy(model)
    result = prune_depth(model, X32, blocks=0)
    assert result.removed == [] and result.macs_before == result.macs_after and result.params_before == result.params_after
    assert len(result.importance) == 7
    torch.testing.assert_close(model.state_dict(), before.state_dict(), rtol=0, atol=0)
    assert [type(m) for m in model.modules()] == [type(m) for m in before.modules()]
    assert prune_depth(model, X32, ratio=0.0).removed == []


def test_the_lowest_importance_blocks_go() -> None:
    model = _randomize_norms(create_model("resnet20"))
    with torch.no_grad():
        model.layer3[2].bn2.weight.zero_()  # this branch outputs only its bias: small
        model.layer3[2].bn2.bias.zero_()  # and now nothing at all: removing it changes no output
    result = prune_depth(copy.deepcopy(model), X32, blocks=2, importance="output_change")
    assert result.removed[0] == "layer3.2" and result.importance["layer3.2"] == 0.0
    assert result.removed[1] == min((n for n in result.importance if n != "layer3.2"), key=result.importance.get)
    by_scale = prune_depth(copy.deepcopy(model), X32, blocks=1, importance="bn_scale")
    assert by_scale.removed == ["layer3.2"] and by_scale.importance["layer3.2"] == 0.0


def test_ratio_and_macs_targets() -> None:
    assert len(prune_depth(create_model("resnet56"), X32, ratio=0.5, importance="random").removed) == 13  # round(12.5) → 13 (half up)
    result = prune_depth(create_model("resnet56"), X32, macs_reduction=1.5, importance="l2")
    assert result.macs_reduction >= 1.5
    assert result.macs_before / (result.macs_after + 4_718_592) < 1.5  # one block fewer would miss the target
    kept = prune_depth(create_model("resnet56"), X32, ratio=1.0, ignored=["layer1.*"], importance="random")
    assert len(kept.removed) == 16 and not any(n.startswith("layer1.") for n in kept.removed)


@pytest.mark.parametrize("name", DEPTH_CRITERIA.names())
def test_contract_depth_criteria(name: str) -> None:
    """Every criterion scores every removable block finitely, leaves the model as it was and is deterministic."""
    model = _randomize_norms(create_model("resnet20"))
    reference = _outputs(model, X32)
    ctx = DepthContext(model, (X32,), seed=3)
    blocks = [b for b in find_blocks(model, X32) if b.removable]
    scores = [DEPTH_CRITERIA.get(name)(b, ctx) for b in blocks]
    assert all(isinstance(s, float) and math.isfinite(s) and s >= 0 for s in scores)
    assert scores == [DEPTH_CRITERIA.get(name)(b, DepthContext(model, (X32,), seed=3)) for b in blocks]
    torch.testing.assert_close(_outputs(model, X32), reference, rtol=0, atol=0)
    assert all(type(model.get_submodule(b.name)).__name__ == "BasicBlock" for b in blocks)


def test_depth_pruned_model_saves_and_rebuilds_without_pickle(tmp_path: Path) -> None:
    model = _randomize_norms(create_model("mobilenetv2"))
    result = prune_depth(model, X32, blocks=3, importance="bn_scale")
    save_pruned(model, tmp_path / "pruned")
    rebuilt = load_pruned(lambda: create_model("mobilenetv2"), tmp_path / "pruned")
    assert all(type(rebuilt.get_submodule(n)) is nn.Identity for n in result.removed)
    torch.testing.assert_close(_outputs(rebuilt, X32), _outputs(model, X32), rtol=0, atol=0)


# --- errors ----------------------------------------------------------------------------------------
def test_too_many_blocks_names_the_count_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"blocks=30, but CifarResNet has only 25 removable residual block\(s\) \(2 more not removable, "
                                          r"e\.g\. 'layer2\.0': its shortcut is not the identity .*; ask for at most 25"):
        prune_depth(create_model("resnet56"), X32, blocks=30)
    with pytest.raises(ConfigError, match=r"only 16 removable .*9 left out by ignored=\['layer1\.\*'\]\); ask for at most 16"):
        prune_depth(create_model("resnet56"), X32, blocks=17, ignored=["layer1.*"], importance="random")


def test_unreachable_macs_target_says_what_is_reachable() -> None:
    dense = count_macs(create_model("resnet20"), X32).dense
    best = f"{dense / (dense - 7 * 4_718_592):.3g}"  # every ResNet-20 block costs the same MACs as a ResNet-56 one
    with pytest.raises(ConfigError, match=rf"macs_reduction=10 is out of reach .* removing all 7 removable residual blocks .* gives {best}x; "
                                          r"ask for at most that, or combine with width pruning"):
        prune_depth(create_model("resnet20"), X32, macs_reduction=10.0, importance="random")


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="give exactly one target of blocks, ratio, macs_reduction"):
        prune_depth(create_model("resnet20"), X32)
    with pytest.raises(ConfigError, match="give exactly one target"):
        prune_depth(create_model("resnet20"), X32, blocks=1, ratio=0.5)
    with pytest.raises(ConfigError, match="unknown depth criterion 'l3'; allowed values: bn_scale, l2, output_change, random"):
        prune_depth(create_model("resnet20"), X32, blocks=1, importance="l3")
    with pytest.raises(ConfigError, match=r"ignored: pattern\(s\) \['layr1\.\*'\] match no module"):
        prune_depth(create_model("resnet20"), X32, blocks=1, ignored=["layr1.*"])
    with pytest.raises(ConfigError, match="pass either a DepthConfig or keyword settings"):
        prune_depth(create_model("resnet20"), X32, DepthConfig(blocks=1), blocks=2)


def test_bn_scale_needs_a_norm_at_the_branch_end() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), _GenBlock(4, "add", "relu", "conv"))
    with pytest.raises(StructureError, match=r"bn_scale: the branch of block '1' ends in '1\.branch\.3' \(Conv2d\), not a normalization "
                                             r"layer or layer scale; use importance='l2' or 'output_change'"):
        prune_depth(model, torch.randn(1, 3, 8, 8), blocks=1, importance="bn_scale")
    assert prune_depth(model, torch.randn(1, 3, 8, 8), blocks=1, importance="l2").removed == ["1"]
