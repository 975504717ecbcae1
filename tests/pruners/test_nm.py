"""N:M pruner: valid masks attached, fixed through training, criteria and selection."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet, effective_weight
from prunekit.masks.nm import is_valid_nm, retained_score
from prunekit.pruners.nm import NMPruner, prune_nm
from prunekit.zoo import create_model


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8)])
def test_masks_are_exact_and_attached(n, m):
    model = create_model("conv2", input_shape=(3, 16, 16))
    masks = prune_nm(model, n, m)
    assert isinstance(masks, MaskSet) and "features.0.weight" not in masks  # 3 input channels: skipped
    assert len(masks) == 4
    for name, mask in masks.items():
        assert is_valid_nm(mask, n, m, exact=True), name
        assert is_valid_nm(effective_weight(model, name), n, m), name
    assert MaskSet.from_model(model).equal(masks)


def test_masks_stay_fixed_through_optimizer_steps():
    torch.manual_seed(0)
    model = _mlp()
    masks = prune_nm(model, 2, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    before = {name: effective_weight(model, name).detach().clone() for name in masks}
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(torch.randn(8, 16)), torch.randint(0, 4, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, mask in masks.items():
        weight = effective_weight(model, name).detach()
        assert not torch.equal(weight, before[name])  # training moved the kept weights
        assert (weight[~mask] == 0).all()
        assert is_valid_nm(weight, 2, 4)


def test_criterion_and_selection():
    model = _mlp()
    masks = prune_nm(model, 2, 4, criterion=lambda w: -w.abs(), include=["0.weight"])
    assert list(masks) == ["0.weight"]
    weight = model[0].parametrizations.weight.original.detach().abs()
    assert retained_score(weight, 2, 4) > float((weight * masks["0.weight"]).sum())  # kept the smallest
    assert list(prune_nm(_mlp(), 2, 4, exclude=["4.*"])) == ["0.weight", "2.weight"]
    with pytest.raises(ConfigError, match="unknown N:M criterion 'taylor'"):
        prune_nm(_mlp(), criterion="taylor")


def test_permutation_keeps_more_magnitude_and_valid_masks():
    torch.manual_seed(1)
    plain, permuted = _mlp(), None
    permuted = copy.deepcopy(plain)
    masks_plain = prune_nm(plain, 2, 4)
    masks_perm = prune_nm(permuted, 2, 4, permute=True, example_inputs=torch.randn(3, 16))
    kept = lambda model, masks: sum(float(effective_weight(model, n).detach().abs().sum()) for n in masks)  # noqa: E731
    assert kept(permuted, masks_perm) > kept(plain, masks_plain)
    for name, mask in masks_perm.items():
        assert is_valid_nm(mask, 2, 4, exact=True)
        assert is_valid_nm(effective_weight(permuted, name), 2, 4)


def test_permutation_needs_example_inputs():
    with pytest.raises(ConfigError, match=r"pass example_inputs=.*prune_nm\(model, 2, 4, permute=True, example_inputs=torch.randn\(1, 3, 32, 32\)\)"):
        prune_nm(_mlp(), 2, 4, permute=True)
    assert len(prune_nm(_mlp(), 2, 4)) == 3  # no permutation: no inputs needed


def test_pruner_step_passes_its_example_inputs():
    torch.manual_seed(2)
    model, x = _mlp(), torch.randn(3, 16)
    reference = copy.deepcopy(model)
    masks = NMPruner(2, 4, permute=True).step(model, x)
    expected = prune_nm(reference, 2, 4, permute=True, example_inputs=x)
    assert masks.equal(expected)
    torch.testing.assert_close(model(x), reference(x))
