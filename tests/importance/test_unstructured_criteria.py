import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.importance import UNSTRUCTURED_CRITERIA, grasp, lamp, magnitude, random_scores, snip, taylor
from prunekit.importance.unstructured import normalize_by_global_sum


def _call(name, weight, grad):
    return UNSTRUCTURED_CRITERIA.get(name)(weight, grad=grad, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", UNSTRUCTURED_CRITERIA.names())
@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 2, 3, 3)])
def test_contract_shape_finite_deterministic(name, shape):
    weight, grad = torch.randn(shape), torch.randn(shape)
    meta = UNSTRUCTURED_CRITERIA.meta(name)
    assert set(meta) >= {"needs_grad", "normalize", "description"}
    scores = _call(name, weight, grad)
    assert scores.shape == weight.shape
    assert torch.isfinite(scores).all() and (meta.get("signed", False) or (scores >= 0).all())
    assert torch.equal(scores, _call(name, weight, grad))


@pytest.mark.parametrize("name", UNSTRUCTURED_CRITERIA.names())
def test_contract_does_not_touch_inputs(name):
    weight = torch.randn(4, 4, requires_grad=True)
    grad = torch.randn(4, 4)
    before = weight.detach().clone(), grad.clone()
    scores = _call(name, weight, grad)
    assert not scores.requires_grad
    assert torch.equal(weight.detach(), before[0]) and torch.equal(grad, before[1])


def test_gradient_criteria_say_they_need_gradients():
    needs = {n for n in UNSTRUCTURED_CRITERIA.names() if UNSTRUCTURED_CRITERIA.meta(n)["needs_grad"]}
    assert needs == {"taylor", "snip", "grasp"}
    for fn in (taylor, snip, grasp):
        with pytest.raises(ConfigError, match="needs gradients"):
            fn(torch.ones(3))
    with pytest.raises(ConfigError, match="shape"):
        taylor(torch.ones(3), grad=torch.ones(4))


def test_magnitude_and_taylor_values():
    w = torch.tensor([-3.0, 1.0, 0.5])
    g = torch.tensor([0.1, -2.0, 4.0])
    assert torch.equal(magnitude(w), torch.tensor([3.0, 1.0, 0.5]))
    assert torch.allclose(taylor(w, grad=g), torch.tensor([0.3, 2.0, 2.0]))
    assert torch.allclose(snip(w, grad=g), taylor(w, grad=g))


def test_random_needs_a_generator_and_is_reproducible():
    with pytest.raises(ConfigError, match="Generator"):
        random_scores(torch.ones(3))
    a = random_scores(torch.ones(50), generator=torch.Generator().manual_seed(3))
    b = random_scores(torch.ones(50), generator=torch.Generator().manual_seed(3))
    c = random_scores(torch.ones(50), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_snip_normalisation_sums_to_one_over_all_layers():
    normalize = UNSTRUCTURED_CRITERIA.meta("snip")["normalize"]
    assert normalize is normalize_by_global_sum
    scores = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([[2.0, 2.0]])}
    out = normalize(scores)
    assert torch.allclose(out["a"], torch.tensor([0.125, 0.375]))
    assert float(sum(s.sum() for s in out.values())) == pytest.approx(1.0)


def test_lamp_matches_the_paper_definition():
    # sorted ascending by magnitude: 1, 2, 3 (squares 1, 4, 9); score(u) = W[u]^2 / sum_{v>=u} W[v]^2
    w = torch.tensor([3.0, -1.0, 2.0])
    assert torch.allclose(lamp(w), torch.tensor([1.0, 1 / 14, 4 / 13]))


def test_lamp_orders_like_magnitude_within_a_layer_and_ignores_zeros():
    w = torch.randn(6, 8)
    w[0] = 0
    scores = lamp(w)
    assert torch.equal(torch.argsort(scores.flatten(), stable=True)[8:], torch.argsort(w.abs().flatten(), stable=True)[8:])
    assert scores.max() == 1 and (scores[0] == 0).all()
