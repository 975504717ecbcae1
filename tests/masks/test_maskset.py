import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunekit.errors import CheckpointError, ConfigError
from prunekit.masks import (
    MaskSet,
    detach_masks,
    from_torch_prune,
    prunable_parameters,
    raw_parameter,
    strip,
    to_torch_prune,
)
from prunekit.zoo import create_model


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def _random_masks(model: nn.Module, keep: float = 0.5, seed: int = 0) -> MaskSet:
    g = torch.Generator().manual_seed(seed)
    return MaskSet({n: torch.rand(raw_parameter(model, n).shape, generator=g) < keep for n in prunable_parameters(model)})


def test_default_targets_are_conv_and_linear_weights_only():
    assert prunable_parameters(_net()) == ["0.weight", "4.weight"]
    assert prunable_parameters(_net(), exclude=["4.*"]) == ["0.weight"]
    assert prunable_parameters(_net(), include=["*.bias"]) == ["0.bias", "1.bias", "4.bias"]


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ConfigError, match="matches no parameter"):
        prunable_parameters(_net(), exclude=["fc9.*"])


def test_attach_masks_forward_and_keeps_state_dict_deepcopy_optimizer():
    model, x = _net(), torch.randn(2, 3, 8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    masks = _random_masks(model)
    masks.attach(model)
    assert torch.all(model[0].weight[~masks["0.weight"]] == 0)
    assert "0.parametrizations.weight.original" in model.state_dict()
    twin = copy.deepcopy(model)
    assert torch.equal(twin(x), model(x))
    model(x).sum().backward()
    opt.step()  # the optimizer built before attaching still updates the same tensors
    assert torch.all(model[0].weight[~masks["0.weight"]] == 0)
    assert MaskSet.from_model(model).equal(masks)


def test_attach_twice_updates_in_place():
    model = _net()
    _random_masks(model, seed=1).attach(model)
    second = _random_masks(model, seed=2)
    second.attach(model)
    assert MaskSet.from_model(model).equal(second)
    assert len(model[0].parametrizations.weight) == 1


def test_strip_gives_plain_model_loadable_into_fresh_model():
    model, x = _net().eval(), torch.randn(2, 3, 8, 8)
    masks = _random_masks(model)
    masks.attach(model)
    expected = model(x)
    strip(model)
    assert set(model.state_dict()) == set(_net().state_dict())
    fresh = _net().eval()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), expected)
    assert int((fresh[0].weight != 0).sum()) <= int(masks["0.weight"].sum())


def test_stripping_a_deep_copy_leaves_the_original_intact():
    model, x = _net().eval(), torch.randn(2, 3, 8, 8)
    _random_masks(model).attach(model)
    expected = model(x)
    strip(copy.deepcopy(model))
    detach_masks(copy.deepcopy(model))
    assert torch.equal(model(x), expected)
    assert len(MaskSet.from_model(model)) == 2


def test_detach_restores_raw_weights():
    model = _net()
    before = model[0].weight.detach().clone()
    _random_masks(model).attach(model)
    masks = detach_masks(model)
    assert len(masks) == 2 and torch.equal(model[0].weight, before)


def test_shape_mismatch_is_reported():
    with pytest.raises(ConfigError, match=r"mask '0.weight' has shape \(2,\)"):
        MaskSet({"0.weight": torch.ones(2, dtype=torch.bool)}).attach(_net())


@settings(max_examples=25, deadline=None)
@given(keep=st.floats(0.0, 1.0), seed=st.integers(0, 100))
def test_save_load_round_trip(tmp_path_factory, keep, seed):
    model = _net()
    masks = _random_masks(model, keep, seed)
    path = tmp_path_factory.mktemp("m") / "masks.safetensors"
    masks.save(path, metadata={"note": "x"})
    loaded = MaskSet.load(path)
    assert loaded.equal(masks)
    assert loaded.sparsity() == pytest.approx(masks.sparsity())


def test_loading_a_foreign_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="not a prunekit mask file"):
        MaskSet.load(tmp_path / "x.safetensors")


def test_sparsity_statistics_are_exact():
    masks = MaskSet({"a": torch.tensor([True, False, False, False]), "b": torch.tensor([True, True])})
    assert masks.sparsity() == pytest.approx(0.5)
    assert masks.layer_sparsity() == {"a": 0.75, "b": 0.0}
    assert (masks & MaskSet({"a": torch.tensor([False, True, True, True])})).kept() == 2


def test_torch_prune_round_trip():
    model, x = create_model("lenet_300_100"), torch.randn(3, 1, 28, 28)
    prune.global_unstructured([(model.fc1, "weight"), (model.fc2, "weight")], prune.L1Unstructured, amount=0.8)
    expected = model(x)
    masks = from_torch_prune(model, remove=True)
    assert set(masks) == {"fc1.weight", "fc2.weight"}
    assert masks.sparsity() == pytest.approx(0.8, abs=1e-4)
    assert "fc1.weight_orig" not in model.state_dict()
    masks.attach(model)
    assert torch.allclose(model(x), expected)
    other = create_model("lenet_300_100")
    to_torch_prune(masks, other)
    assert torch.equal(other.fc1.weight_mask.bool(), masks["fc1.weight"])
