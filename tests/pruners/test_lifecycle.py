"""The pruner lifecycle: every pruner follows one protocol; state survives a restart."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.errors import ConfigError
from prunekit.masks import MaskSet
from prunekit.pruners import NMPruner, Pruner, StructuredConfig, StructuredPruner, UnstructuredConfig, UnstructuredPruner, prune_nm, prune_structured
from prunekit.zoo import create_model

X = torch.randn(2, 3, 32, 32)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.parametrize("pruner", [UnstructuredPruner(sparsity=0.5), NMPruner(2, 4), StructuredPruner(ratio=0.5)], ids=type)
def test_every_pruner_is_a_pruner(pruner: object) -> None:
    assert isinstance(pruner, Pruner)
    assert pruner.schedule()[-1] == 1.0


def test_unstructured_steps_reach_fractions_of_the_target_exactly() -> None:
    model = _mlp()
    pruner = UnstructuredPruner(UnstructuredConfig(sparsity=0.8, scope="global"), steps=4)
    pruner.prepare(model)
    assert pruner.schedule() == [0.25, 0.5, 0.75, 1.0]
    seen = []
    for fraction in pruner.schedule():
        masks = pruner.step(model, fraction=fraction)
        seen.append(masks.sparsity())
    total = 48 * 32 + 32 * 10
    assert seen == pytest.approx([round(f * 0.8 * total) / total for f in (0.25, 0.5, 0.75, 1.0)], abs=1e-12)
    finished = pruner.finish(model)
    assert not MaskSet.from_model(finished)
    assert float((finished[1].weight == 0).sum() + (finished[3].weight == 0).sum()) == round(0.8 * total)


def test_nm_pruner_is_one_step_and_finish_folds_the_masks() -> None:
    model = _mlp()
    pruner = NMPruner(2, 4)
    with pytest.raises(ConfigError, match="N:M pruning is one step"):
        pruner.step(model, fraction=0.5)
    masks = pruner.step(model)
    assert masks.sparsity() == 0.5
    pruner.finish(model)
    groups = model[1].weight.reshape(32, -1, 4)
    assert ((groups != 0).sum(-1) <= 2).all()


def test_fraction_outside_zero_one_is_refused() -> None:
    for pruner in (UnstructuredPruner(sparsity=0.5), StructuredPruner(ratio=0.5)):
        with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\]"):
            pruner.step(_mlp(), torch.randn(1, 3, 4, 4), fraction=1.5)


def test_structured_state_dict_resumes_toward_the_same_target() -> None:
    """A restart that restores state_dict (JSON) continues exactly like the uninterrupted run."""
    config = StructuredConfig(macs_reduction=2.0, steps=2)
    torch.manual_seed(0)
    straight = create_model("resnet20")
    resumed = create_model("resnet20")
    resumed.load_state_dict(straight.state_dict())
    first = StructuredPruner(config)
    first.prepare(straight, X)
    state = json.loads(json.dumps(first.state_dict()))
    fractions = first.schedule()
    results = [first.step(straight, X, f) for f in fractions]

    a = StructuredPruner(config)
    a.prepare(resumed, X)
    a.step(resumed, X, fractions[0])
    b = StructuredPruner(config)  # a new process: only the model and the state survive
    b.load_state_dict(state)
    last = b.step(resumed, X, fractions[1])
    assert last.macs_after == results[-1].macs_after
    assert [layer.after for layer in last.layers] == [layer.after for layer in results[-1].layers]
    assert b.finish(resumed) is resumed


def test_prune_structured_and_prune_nm_are_the_one_call_forms() -> None:
    model = create_model("resnet20")
    result = prune_structured(model, X, macs_reduction=2.0)
    assert abs(result.macs_reduction - 2.0) <= 0.041
    assert pk.prune_structured is prune_structured and pk.prune_nm is prune_nm
    assert prune_nm(_mlp(), 2, 4).sparsity() == 0.5


def test_old_names_warn() -> None:
    with pytest.warns(DeprecationWarning, match="prune_nm"):
        pk.nm_prune(_mlp(), 2, 4)
    with pytest.warns(DeprecationWarning, match="prepare"):
        StructuredPruner(ratio=0.5).anchor(create_model("resnet20"), X)


def test_squared_grads_keyword_is_the_deprecated_form_of_calibration() -> None:
    from prunekit.importance import Calibration

    torch.manual_seed(0)
    a, b = create_model("resnet20"), create_model("resnet20")
    b.load_state_dict(a.state_dict())
    squared = {n: torch.rand_like(p) for n, p in a.named_parameters()}
    new = StructuredPruner(ratio=0.3, importance="hessian").prune(a, X, Calibration(squared_grads=squared))
    with pytest.warns(DeprecationWarning, match="calibration="):
        old = StructuredPruner(ratio=0.3, importance="hessian").prune(b, X, squared_grads=squared)
    assert [layer.after for layer in new.layers] == [layer.after for layer in old.layers]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
