"""Round trip with torch.nn.utils.prune: prune there, import, attach, strip — and compare with ours."""

import torch
from torch import nn
from torch.nn.utils import prune

from prunekit.masks import from_torch_prune, strip, to_torch_prune
from prunekit.pruners import UnstructuredConfig, prune_unstructured


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10), nn.ReLU(), nn.Linear(10, 3))


def _weights(model):
    return [(model[i], "weight") for i in (0, 3, 5)]


def test_global_unstructured_round_trip_matches_our_global_magnitude():
    theirs = _model()
    prune.global_unstructured(_weights(theirs), pruning_method=prune.L1Unstructured, amount=0.6)
    reference = [theirs[i].weight.detach().clone() for i in (0, 3, 5)]  # weight_orig * weight_mask
    imported = from_torch_prune(theirs, remove=True)
    assert sorted(imported) == ["0.weight", "3.weight", "5.weight"]

    ours = _model()
    masks = prune_unstructured(ours, UnstructuredConfig(criterion="magnitude", sparsity=0.6, scope="global"))
    assert masks.equal(imported)

    fresh = _model()
    imported.attach(fresh)
    strip(fresh)
    for i, expected in zip((0, 3, 5), reference):
        assert torch.equal(fresh[i].weight, expected)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(fresh(x), strip(ours)(x))


def test_our_masks_export_to_torch_prune():
    model = _model()
    masks = prune_unstructured(model, UnstructuredConfig(criterion="magnitude", sparsity=0.5, scope="layer"))
    expected = [model[i].weight.detach().clone() for i in (0, 3, 5)]
    target = _model()
    to_torch_prune(masks, target)
    assert all(hasattr(target[i], "weight_orig") for i in (0, 3, 5))
    for i, w in zip((0, 3, 5), expected):
        assert torch.equal(target[i].weight, w)
    assert from_torch_prune(target).equal(masks)
