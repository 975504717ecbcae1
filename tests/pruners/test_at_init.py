"""Pruning at initialisation: SNIP and SynFlow scores against hand-computed values, exact counts,
masks fixed during training, the random control with the same layer counts, reinitialisation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet, effective_weight
from prunekit.pruners import UnstructuredConfig, compute_scores
from prunekit.pruners.at_init import AtInitConfig, prune_at_init, random_masks_like, reinitialize
from prunekit.training import OptimizerConfig, TrainConfig, fit


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def _batches(n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def test_snip_scores_are_weight_times_loss_gradient_normalised_over_all_connections():
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]))
    x, y = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]]), torch.tensor([0, 1])
    # d(mean CE)/dW = (softmax(Wx) - onehot(y))ᵀ x / batch, by hand
    grad = (torch.softmax(x @ layer.weight.detach().T, dim=1) - F.one_hot(y, 2)).T @ x / 2
    saliency = (layer.weight.detach() * grad).abs()
    scores = compute_scores(layer, UnstructuredConfig(criterion="snip"), ["weight"], [(x, y)])
    assert torch.allclose(scores["weight"], saliency / saliency.sum(), rtol=1e-6, atol=0)


def test_synflow_scores_a_two_layer_net_as_computed_by_hand():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[2].weight.copy_(torch.tensor([[-0.5, 2.0]]))
    # R = 1ᵀ|W2||W1|1: dR/dW1[i, j] = |W2[0, i]|, dR/dW2[0, i] = Σ_j |W1[i, j]|; score = |w| · dR/dw
    scores = compute_scores(net, UnstructuredConfig(criterion="synflow"), ["0.weight", "2.weight"], [(torch.zeros(4, 2), torch.zeros(4))])
    assert torch.equal(scores["0.weight"], torch.tensor([[0.5, 1.0], [6.0, 1.0]], dtype=torch.float64))
    assert torch.equal(scores["2.weight"], torch.tensor([[1.5, 7.0]], dtype=torch.float64))
    assert torch.equal(net[0].weight, torch.tensor([[1.0, -2.0], [3.0, 0.5]]))  # the model's own weights are untouched


def test_grasp_scores_are_weight_times_hessian_gradient_and_prune_the_largest_paper_score():
    layer = nn.Linear(1, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5], [-1.0], [2.0]]))
    x, y = torch.ones(1, 1), torch.tensor([1])
    # logits = w (x = 1); CE gradient g = p - e_y, Hessian H = diag(p) - p pᵀ, by hand
    p = torch.softmax(layer.weight.detach().flatten(), 0)
    g = p - F.one_hot(y, 3)[0]
    hg = (torch.diag(p) - torch.outer(p, p)) @ g
    ours = layer.weight.detach().flatten() * hg
    scores = compute_scores(layer, UnstructuredConfig(criterion="grasp"), ["weight"], [(x, y)])
    assert torch.allclose(scores["weight"].flatten(), ours, rtol=1e-5, atol=1e-7)
    paper = -layer.weight.detach().flatten() * hg  # Wang et al.: S(−θ) = −θ ⊙ Hg, remove the largest
    masks = prune_at_init(layer, AtInitConfig(criterion="grasp", sparsity=1 / 3), [(x, y)])
    assert not masks["weight"].flatten()[int(paper.argmax())] and int(masks["weight"].sum()) == 2


def test_synflow_needs_an_input_shape():
    with pytest.raises(ConfigError, match="needs the input shape: pass batches"):
        compute_scores(_mlp(), UnstructuredConfig(criterion="synflow"), ["0.weight"])


def test_synflow_defaults_to_100_exponential_rounds_ending_at_the_exact_sparsity():
    config = AtInitConfig(criterion="synflow", sparsity=0.99)
    steps = config.round_sparsities()
    assert config.rounds() == 100 and len(steps) == 100 and steps[-1] == 0.99
    assert steps[0] == pytest.approx(1 - 0.01 ** 0.01) and steps[49] == pytest.approx(0.9)
    assert AtInitConfig(criterion="snip").rounds() == 1 and AtInitConfig(criterion="synflow", iterations=3).rounds() == 3


@pytest.mark.parametrize("criterion, scope", [("snip", "global"), ("synflow", "global"), ("grasp", "global"), ("random", "layer"), ("magnitude", "global")])
def test_prune_at_init_prunes_exactly(criterion, scope):
    model = _mlp()
    masks = prune_at_init(model, AtInitConfig(criterion=criterion, sparsity=0.7, scope=scope, iterations=5 if criterion == "synflow" else None), _batches())
    assert masks.numel() == 30 + 20 + 12 and masks.numel() - masks.kept() == round(0.7 * masks.numel())
    assert MaskSet.from_model(model).equal(masks)
    if scope == "layer":
        assert {n: int((~m).sum()) for n, m in masks.items()} == {"0.weight": 21, "2.weight": 14, "4.weight": 8}


def test_snip_uses_only_the_configured_number_of_batches():
    one = prune_at_init(_mlp(), AtInitConfig(criterion="snip", sparsity=0.8), _batches(1))
    first_of_two = prune_at_init(_mlp(), AtInitConfig(criterion="snip", sparsity=0.8), _batches(2))
    both = prune_at_init(_mlp(), AtInitConfig(criterion="snip", sparsity=0.8, batches=2), _batches(2))
    assert one.equal(first_of_two) and not one.equal(both)


def test_prune_at_init_refuses_a_model_that_already_has_masks():
    model = _mlp()
    prune_at_init(model, AtInitConfig(criterion="magnitude", sparsity=0.5))
    with pytest.raises(ConfigError, match="expects a model without masks"):
        prune_at_init(model, AtInitConfig(criterion="magnitude", sparsity=0.5))


def test_masks_stay_fixed_while_the_sparse_net_trains():
    model = _mlp()
    masks = prune_at_init(model, AtInitConfig(criterion="snip", sparsity=0.8), _batches(1))
    before = {n: effective_weight(model, n).detach().clone() for n in masks}
    config = TrainConfig(epochs=3, optimizer=OptimizerConfig(lr=0.1, momentum=0.9, weight_decay=1e-3), eval_every_epochs=0)
    fit(model, _batches(4), config, progress=False)
    for name, keep in masks.items():
        after = effective_weight(model, name).detach()
        assert torch.equal(after[~keep], torch.zeros(int((~keep).sum())))
        assert not torch.equal(after[keep], before[name][keep])  # the kept weights did train
    assert MaskSet.from_model(model).equal(masks)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4), st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_random_masks_like_keep_exactly_the_same_count_in_every_layer(shapes, density, seed):
    g = torch.Generator().manual_seed(seed)
    masks = MaskSet({f"l{i}.weight": torch.rand(shape, generator=g) < density for i, shape in enumerate(shapes)})
    control = random_masks_like(masks, seed)
    assert list(control) == list(masks)
    assert {n: (m.shape, int(m.sum())) for n, m in control.items()} == {n: (m.shape, int(m.sum())) for n, m in masks.items()}
    assert random_masks_like(masks, seed).equal(control)


def test_random_masks_like_moves_the_kept_positions():
    masks = MaskSet({"w": torch.arange(1000).view(10, 100) < 100})
    control = random_masks_like(masks, 3)
    assert int(control["w"].sum()) == 100 and int((control["w"] & masks["w"]).sum()) < 50


def test_reinitialize_draws_glorot_weights_and_zero_biases():
    torch.manual_seed(0)
    model = reinitialize(nn.Sequential(nn.Linear(400, 600), nn.ReLU(), nn.Linear(600, 10)), "glorot_normal")
    assert model[0].weight.std().item() == pytest.approx((2 / (400 + 600)) ** 0.5, rel=0.02)
    assert torch.equal(model[0].bias, torch.zeros(600)) and torch.equal(model[2].bias, torch.zeros(10))
    untouched = _mlp()
    expected = {k: v.clone() for k, v in untouched.state_dict().items()}
    reinitialize(untouched, "default")
    assert all(torch.equal(v, expected[k]) for k, v in untouched.state_dict().items())
    with pytest.raises(ConfigError, match="unknown initialisation 'he'; allowed values: default, glorot_normal, kaiming_normal"):
        reinitialize(untouched, "he")  # type: ignore[arg-type]


def test_config_names_unknown_criteria_and_bad_values():
    with pytest.raises(ValueError, match="unknown unstructured criterion 'snipp'"):
        AtInitConfig(criterion="snipp")
    with pytest.raises(ValueError, match="less than 1"):
        AtInitConfig(sparsity=1.0)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        AtInitConfig(batches=0)
