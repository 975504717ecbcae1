import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch import nn

from prunekit.errors import ConfigError
from prunekit.importance import UNSTRUCTURED_CRITERIA
from prunekit.masks import MaskSet, effective_weight, raw_parameter
from prunekit.pruners import UnstructuredConfig, collect_gradients, prune_unstructured
from prunekit.pruners.unstructured import select
from prunekit.zoo import create_model


def _expected(n: int, s: float) -> int:
    return math.floor(s * n + 0.5)


def _mlp(sizes=(10, 7, 5, 3), seed=0) -> nn.Module:
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def _batches(n=2):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 10, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _pruned(masks: MaskSet) -> dict[str, int]:
    return {n: int((~m).sum()) for n, m in masks.items()}


# -- exact counts ------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    sparsity=st.floats(0.0, 0.999),
    criterion=st.sampled_from(["magnitude", "random", "lamp"]),
    seed=st.integers(0, 5),
)
def test_layer_scope_prunes_exactly_round_s_n_per_layer(sizes, sparsity, criterion, seed):
    model = _mlp(tuple(sizes), seed)
    masks = prune_unstructured(model, UnstructuredConfig(criterion=criterion, sparsity=sparsity, scope="layer", seed=seed))
    assert _pruned(masks) == {n: _expected(m.numel(), sparsity) for n, m in masks.items()}


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    sparsity=st.floats(0.0, 0.999),
    criterion=st.sampled_from(["magnitude", "random", "lamp"]),
    ties=st.booleans(),
)
def test_global_scope_prunes_exactly_round_s_n_overall(sizes, sparsity, criterion, ties):
    model = _mlp(tuple(sizes))
    if ties:  # many equal scores: ties must still give exact counts, deterministically
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.sign(p))
    config = UnstructuredConfig(criterion=criterion, sparsity=sparsity, scope="global")
    twin = copy.deepcopy(model)
    masks = prune_unstructured(model, config)
    assert masks.numel() - masks.kept() == _expected(masks.numel(), sparsity)
    assert prune_unstructured(twin, config).equal(masks)


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=4), scope=st.sampled_from(["layer", "global"]), criterion=st.sampled_from(["magnitude", "random", "lamp"]))
def test_masks_are_monotone_and_exact_when_sparsity_grows(steps, scope, criterion):
    model = _mlp()
    previous = MaskSet.ones(model)
    for i, s in enumerate(sorted(steps)):
        with torch.no_grad():  # weights move between pruning events
            for name in previous:
                raw_parameter(model, name).add_(torch.randn_like(raw_parameter(model, name)))
        masks = prune_unstructured(model, UnstructuredConfig(criterion=criterion, sparsity=s, scope=scope, seed=i))
        assert all(torch.equal(masks[n] & previous[n], masks[n]) for n in masks), "new mask ⊆ old mask"
        if scope == "layer":
            assert _pruned(masks) == {n: _expected(m.numel(), s) for n, m in masks.items()}
        else:
            assert masks.numel() - masks.kept() == _expected(masks.numel(), s)
        previous = masks


def test_lower_target_than_current_keeps_the_mask():
    model = _mlp()
    first = prune_unstructured(model, UnstructuredConfig(sparsity=0.8))
    second = prune_unstructured(model, UnstructuredConfig(sparsity=0.3))
    assert second.equal(first)


def test_select_breaks_ties_by_position():
    keep = torch.ones(6, dtype=torch.bool)
    assert select(torch.zeros(6), keep, 2).tolist() == [False, False, True, True, True, True]
    keep[4] = False
    assert select(torch.tensor([5.0, 1, 1, 0, 9, 2]), keep, 3).tolist() == [True, False, True, False, False, True]


# -- magnitude semantics, overrides and targets --------------------------------------------------
def test_magnitude_layer_and_global_keep_the_largest():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
        model[1].weight.copy_(torch.tensor([[10.0, 20.0], [-30.0, 40.0]]))
    layer = prune_unstructured(copy.deepcopy(model), UnstructuredConfig(sparsity=0.5, scope="layer"))
    assert layer["0.weight"].tolist() == [[False, False], [True, True]]
    assert layer["1.weight"].tolist() == [[False, False], [True, True]]
    glob = prune_unstructured(copy.deepcopy(model), UnstructuredConfig(sparsity=0.5, scope="global"))
    assert not glob["0.weight"].any() and glob["1.weight"].all()


def test_biases_and_norms_are_excluded_by_default_and_include_exclude_work():
    model = _conv()
    masks = prune_unstructured(model, UnstructuredConfig(sparsity=0.5))
    assert list(masks) == ["0.weight", "4.weight"]
    only = prune_unstructured(_conv(), UnstructuredConfig(sparsity=0.5, exclude=("4.*",)))
    assert list(only) == ["0.weight"]
    with pytest.raises(ConfigError, match="matches no parameter"):
        prune_unstructured(_conv(), UnstructuredConfig(sparsity=0.5, exclude=("head.*",)))
    with pytest.raises(ConfigError, match="nothing"):
        prune_unstructured(_conv(), UnstructuredConfig(sparsity=0.5, exclude=("*",)))


def test_overrides_lth_style_output_layer_at_half_rate():
    model = create_model("lenet_300_100")
    config = UnstructuredConfig(sparsity=0.2, overrides={"fc3.*": 0.1})
    masks = prune_unstructured(model, config)
    assert _pruned(masks) == {"fc1.weight": _expected(784 * 300, 0.2), "fc2.weight": _expected(300 * 100, 0.2), "fc3.weight": 100}
    glob = prune_unstructured(create_model("lenet_300_100"), config.model_copy(update={"scope": "global"}))
    assert _pruned(glob)["fc3.weight"] == 100
    assert _pruned(glob)["fc1.weight"] + _pruned(glob)["fc2.weight"] == _expected(784 * 300 + 300 * 100, 0.2)
    for scope in ("layer", "global"):
        with pytest.raises(ConfigError, match=r"'fc9.\*' matches no pruned parameter; pruned parameters: \['fc1.weight'"):
            prune_unstructured(create_model("lenet_300_100"), UnstructuredConfig(sparsity=0.2, scope=scope, overrides={"fc9.*": 0.1}))


def test_at_sparsity_scales_overrides_with_the_schedule():
    config = UnstructuredConfig(sparsity=0.8, overrides={"fc3.*": 0.4})
    assert config.at_sparsity(0.4).overrides == {"fc3.*": pytest.approx(0.2)}
    assert config.at_sparsity(0.0).overrides == {"fc3.*": 0.0}
    with pytest.raises(ConfigError, match="may not exceed"):
        config.at_sparsity(0.9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": -0.1}, "sparsity"),
        ({"criterion": "l3"}, "allowed values: grasp, lamp, magnitude, random, snip, synflow, taylor"),
        ({"scope": "model"}, "scope"),
        ({"overrides": {"fc1.*": 1.5}}, "overrides"),
        ({"sparsityy": 0.5}, "sparsityy"),
    ],
)
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        UnstructuredConfig(**kwargs)


# -- gradient criteria ---------------------------------------------------------------------------
def test_collect_gradients_is_the_dense_gradient_of_the_effective_weight_and_has_no_side_effects():
    model = _mlp()
    reference = copy.deepcopy(model)  # plain model that will compute with the same (masked) weights
    prune_unstructured(model, UnstructuredConfig(sparsity=0.5))
    batches = _batches(2)
    with torch.no_grad():
        for name in MaskSet.from_model(model):
            raw_parameter(reference, name).copy_(effective_weight(model, name))
    expected = {}
    for x, y in batches:
        reference.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        for name in MaskSet.from_model(model):
            expected[name] = expected.get(name, 0) + raw_parameter(reference, name).grad / 2
    rng = torch.get_rng_state()
    grads = collect_gradients(model, batches, list(expected), n_batches=5)
    for name, g in grads.items():
        assert torch.allclose(g, expected[name], atol=1e-6)
        assert (g[~MaskSet.from_model(model)[name]] != 0).any(), "pruned positions get their gradient too"
        assert raw_parameter(model, name).grad is None
    assert torch.equal(torch.get_rng_state(), rng)


def test_collect_gradients_restores_batchnorm_statistics():
    model = nn.Sequential(nn.Linear(10, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).train()
    before = copy.deepcopy(model.state_dict())
    collect_gradients(model, _batches(1), ["0.weight", "3.weight"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("criterion", ["taylor", "snip"])
def test_gradient_criteria_need_batches_and_prune_exactly(criterion):
    with pytest.raises(ConfigError, match="needs gradients"):
        prune_unstructured(_mlp(), UnstructuredConfig(criterion=criterion, sparsity=0.5))
    masks = prune_unstructured(_mlp(), UnstructuredConfig(criterion=criterion, sparsity=0.7, scope="global", n_batches=2), _batches(2))
    assert masks.numel() - masks.kept() == _expected(masks.numel(), 0.7)


def test_snip_keeps_connections_with_the_largest_weight_times_gradient():
    model = _mlp()
    grads = collect_gradients(model, _batches(1), ["0.weight", "2.weight", "4.weight"])
    saliency = torch.cat([(effective_weight(model, n) * g).abs().flatten() for n, g in grads.items()])
    masks = prune_unstructured(model, UnstructuredConfig(criterion="snip", sparsity=0.9, scope="global"), _batches(1))
    kept = torch.cat([m.flatten() for m in masks.values()])
    assert saliency[kept].min() >= saliency[~kept].max()


@pytest.mark.parametrize("criterion", UNSTRUCTURED_CRITERIA.names())
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_contract_every_criterion_prunes_a_zoo_model_exactly(criterion, scope):
    model = create_model("lenet5")
    batch = [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))]
    masks = prune_unstructured(model, UnstructuredConfig(criterion=criterion, sparsity=0.6, scope=scope), batch)
    if scope == "layer":
        assert _pruned(masks) == {n: _expected(m.numel(), 0.6) for n, m in masks.items()}
    else:
        assert masks.numel() - masks.kept() == _expected(masks.numel(), 0.6)
    assert MaskSet.from_model(model).equal(masks)
    model(batch[0][0]).sum().backward()
