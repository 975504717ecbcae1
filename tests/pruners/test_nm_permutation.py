"""Channel permutation for N:M: function preserved, retained score never lower, provable chains only."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.masks import MaskSet, effective_weight
from prunekit.masks.nm import retained_score
from prunekit.pruners.nm_permutation import find_chains, permute_for_nm, search_permutation
from prunekit.zoo import create_model


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics so a forgotten permutation of them would show."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            nn.init.uniform_(module.weight, 0.5, 2)
            nn.init.uniform_(module.bias, -1, 1)
    return model.eval()


class ConvNet(nn.Module):
    """conv → BN → ReLU → pool → conv → BN → relu (functional) → conv → flatten → linear → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 8, 1)
        self.fc1, self.fc2 = nn.Linear(8 * 4 * 4, 32), nn.Linear(32, 4)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.b1(self.c1(x))))
        x = nn.functional.relu(self.b2(self.c2(x)))
        x = self.c3(x).flatten(1)
        return self.fc2(nn.functional.dropout(self.fc1(x), 0.5, self.training))


CASES = {
    "mlp_bn": (
        lambda: nn.Sequential(
            nn.Linear(12, 32), nn.BatchNorm1d(32), nn.GELU(), nn.Dropout(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 8)
        ),
        (6, 12),
    ),
    "convnet": (ConvNet, (2, 3, 8, 8)),
    "lenet_300_100": (lambda: create_model("lenet_300_100"), (3, 1, 28, 28)),
    "resnet20": (lambda: create_model("resnet20"), (2, 3, 8, 8)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_permutation_preserves_function_and_raises_retained_score(case):
    build, shape = CASES[case]
    model = _randomize_norms(build())
    x = torch.randn(*shape)
    with torch.no_grad():
        before = model(x)
    results = permute_for_nm(model, 2, 4, max_passes=1, max_partners=8)
    with torch.no_grad():
        after = model(x)
    assert results and any(r.swaps for r in results)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    for r in results:
        assert r.retained_after >= r.retained_before
        assert r.retained_after == pytest.approx(retained_score(effective_weight(model, r.consumer).abs(), 2, 4))


def test_chains_are_only_the_provable_ones():
    chains = {(c.producer, c.consumer): c.norms for c in find_chains(ConvNet())}
    # c3 → flatten → fc1 is not channel-wise; the model input feeds c1
    assert chains == {("c1", "c2"): ("b1",), ("c2", "c3"): ("b2",), ("fc1", "fc2"): ()}
    resnet = {(c.producer, c.consumer) for c in find_chains(create_model("resnet20"))}
    assert ("layer1.0.conv1", "layer1.0.conv2") in resnet
    assert not any(p.endswith("conv2") for p, _ in resnet)  # conv2 → bn2 → residual add: not provable


def test_shared_producer_output_breaks_the_chain():
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            h = self.a(x)
            return self.b(torch.relu(h)) + h

    assert find_chains(Skip()) == []


def test_untraceable_model_is_left_alone(caplog):
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.b(self.a(x)) if x.sum() > 0 else x

    with caplog.at_level(logging.WARNING):
        assert permute_for_nm(Dynamic(), 2, 4) == []
    assert "cannot trace Dynamic" in caplog.text


def test_permutation_moves_attached_masks_along():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    MaskSet({"0.weight": torch.rand(8, 8) > 0.3}).attach(model)
    x = torch.randn(5, 8)
    before = model(x).detach()
    permute_for_nm(model, 2, 4, names=["2.weight"])
    torch.testing.assert_close(model(x).detach(), before)


def test_search_finds_the_obvious_regrouping():
    scores = torch.tensor([[9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 1.0, 9.0]])
    perm, swaps = search_permutation(scores, 2, 4)
    assert swaps >= 1
    assert retained_score(scores[:, perm], 2, 4) == 9.0 * 4
    assert sorted(perm.tolist()) == list(range(8))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([(2, 4), (1, 4), (4, 8)]), st.integers(1, 6), st.integers(2, 5), st.integers(0, 2**16))
def test_search_never_loses(pattern, rows, groups, seed):
    n, m = pattern
    scores = torch.rand(rows, groups * m, generator=torch.Generator().manual_seed(seed))
    perm, _ = search_permutation(scores, n, m, max_partners=2, seed=seed)
    assert sorted(perm.tolist()) == list(range(groups * m))
    assert retained_score(scores[:, perm], n, m) >= retained_score(scores, n, m) - 1e-6


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([(2, 4), (1, 4), (3, 4), (4, 8)]), st.integers(1, 5), st.integers(2, 4), st.integers(0, 2**16))
def test_swap_gains_match_brute_force(pattern, rows, groups, seed):
    from prunekit.pruners.nm_permutation import _GroupStats

    n, m = pattern
    scores = torch.rand(rows, groups * m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    stats = _GroupStats(scores.t().reshape(groups, m, rows).clone(), n)
    partners = torch.arange(1, groups)
    gains = stats.swap_gains(0, partners)
    base = retained_score(scores, n, m)
    for p, g2 in enumerate(partners.tolist()):
        for a in range(m):
            for b in range(m):
                swapped = scores.clone()
                swapped[:, [a, g2 * m + b]] = scores[:, [g2 * m + b, a]]
                assert float(gains[p, a, b]) == pytest.approx(retained_score(swapped, n, m) - base, abs=1e-9)
