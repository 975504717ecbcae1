"""Channel permutation for N:M: groups from the dependency graph, function preserved, retained score never lower."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet, effective_weight
from prunekit.masks.nm import retained_score
from prunekit.pruners.nm_permutation import find_groups, permute_for_nm, search_permutation
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


class Residual(nn.Module):
    """stem → BN → [a → BN → relu → b → BN] + skip → head: the stem group is shared by a, the add and head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bs = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.a, self.ba = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.b, self.bb = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bs(self.stem(x)))
        h = torch.relu(h + self.bb(self.b(torch.relu(self.ba(self.a(h))))))
        return self.head(h).mean((2, 3))


class Branch(nn.Module):
    """One producer feeding two N:M consumers."""

    def __init__(self) -> None:
        super().__init__()
        self.p, self.bn = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.u, self.v = nn.Conv2d(16, 8, 1), nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.p(x)))
        return (self.u(h) + self.v(h)).mean((2, 3))


class Concat(nn.Module):
    """Two producers concatenated into one consumer: each owns half of its input channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 1), nn.Conv2d(16, 16, 1), nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(torch.relu(self.c(torch.cat([torch.relu(self.a(x)), self.b(x)], 1)))).mean((2, 3))


class PooledLinear(nn.Module):
    """conv → BN → global pool → flatten → linear → linear: a width-1 group across the flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.bn, self.f1, self.f2 = nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.bn(self.c(x))), 1).flatten(1)
        return self.f2(torch.tanh(self.f1(x)))


CASES = {
    "mlp_bn": (
        lambda: nn.Sequential(
            nn.Linear(12, 32), nn.BatchNorm1d(32), nn.GELU(), nn.Dropout(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 8)
        ),
        (6, 12),
    ),
    "convnet": (ConvNet, (2, 3, 8, 8)),
    "residual": (Residual, (2, 3, 8, 8)),
    "branch": (Branch, (2, 3, 8, 8)),
    "concat": (Concat, (2, 3, 8, 8)),
    "pooled_linear": (PooledLinear, (2, 3, 8, 8)),
    "lenet_300_100": (lambda: create_model("lenet_300_100"), (3, 1, 28, 28)),
    "resnet20": (lambda: create_model("resnet20"), (2, 3, 8, 8)),
}


def _pairs(model: nn.Module, x: torch.Tensor, coupled: bool = False) -> set[tuple[str, tuple[str, ...]]]:
    return {(g.producer, g.consumers) for g in find_groups(model, x, coupled=coupled)}


@pytest.mark.parametrize("coupled", [False, True], ids=["chains", "coupled"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_permutation_preserves_function_and_raises_retained_score(case, coupled):
    build, shape = CASES[case]
    model = _randomize_norms(build())
    x = torch.randn(*shape)
    with torch.no_grad():
        before = model(x)
    results = permute_for_nm(model, 2, 4, x, coupled=coupled, max_passes=1, max_partners=8)
    with torch.no_grad():
        after = model(x)
    if coupled or case not in ("branch",):
        assert results and any(r.swaps for r in results)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    totals: dict[int, list[float]] = {}
    for r in results:
        if not coupled:  # a chain has one consumer: its own score never drops
            assert r.retained_after >= r.retained_before
        totals.setdefault(r.group, [0.0, 0.0])
        totals[r.group][0] += r.retained_before
        totals[r.group][1] += r.retained_after
    assert all(after >= before * (1 - 1e-12) for before, after in totals.values())
    last = {r.consumer: r.retained_after for r in results}  # a concat consumer is searched once per input group
    for consumer, score in last.items():
        assert score == pytest.approx(retained_score(effective_weight(model, consumer).abs(), 2, 4))


def test_chains_through_the_dependency_graph():
    x = torch.randn(2, 3, 8, 8)
    # c3 → flatten → fc1 maps 16 positions onto each channel (width > 1); the model input feeds c1
    assert _pairs(ConvNet(), x) == _pairs(ConvNet(), x, coupled=True) == {("c1", ("c2",)), ("c2", ("c3",)), ("fc1", ("fc2",))}
    groups = find_groups(ConvNet(), x)
    assert [g.consumers for g in groups] == [("c2",), ("c3",), ("fc2",)] and not any(g.coupled for g in groups)
    c1 = next(g for g in groups if g.producer == "c1")
    assert {(mem.module, mem.name) for mem in c1.members} == {
        ("c1", "weight"), ("c1", "bias"), ("c2", "weight"),
        ("b1", "weight"), ("b1", "bias"), ("b1", "running_mean"), ("b1", "running_var"),
    }


def test_shared_groups_only_when_coupled():
    x = torch.randn(2, 3, 8, 8)
    assert _pairs(Residual(), x) == {("a", ("b",))}  # the residual group (stem, b, the add, a, head) is shared
    assert _pairs(Residual(), x, coupled=True) == {("a", ("b",)), ("stem", ("a", "head"))}
    assert _pairs(Branch(), x) == set()
    assert _pairs(Branch(), x, coupled=True) == {("p", ("u", "v"))}
    assert _pairs(PooledLinear(), x) == {("f1", ("f2",))}  # conv → flatten → linear: not a chain
    assert _pairs(PooledLinear(), x, coupled=True) == {("c", ("f1",)), ("f1", ("f2",))}
    assert _pairs(Concat(), x) == {("c", ("d",))}
    assert _pairs(Concat(), x, coupled=True) == {("a", ("c",)), ("b", ("c",)), ("c", ("d",))}


def test_resnet_chains_are_the_inner_block_convs():
    x = torch.randn(2, 3, 8, 8)
    chains = _pairs(create_model("resnet20"), x)
    assert chains == {(f"layer{s}.{b}.conv1", (f"layer{s}.{b}.conv2",)) for s in (1, 2, 3) for b in range(3)}
    shared = _pairs(create_model("resnet20"), x, coupled=True) - chains
    assert ("layer3.0.conv2", ("layer3.1.conv1", "layer3.2.conv1", "fc")) in shared and len(shared) == 3


def _column_perm(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    """``p`` with ``after[:, j] == before[:, p[j]]`` (columns of random weights are distinct)."""
    b, a = before.movedim(1, 0).flatten(1), after.movedim(1, 0).flatten(1)
    return (a[:, None] == b[None]).all(-1).float().argmax(1).tolist()


# Computed with the symbolic_trace implementation this one replaced (same seed, same settings).
RESNET20_BEFORE = [
    ("layer1.0.conv2.weight", 4, "497b549f5e8bb0af"), ("layer1.1.conv2.weight", 3, "fa26be18f53e8a35"),
    ("layer1.2.conv2.weight", 4, "75c560f70d2193a4"), ("layer2.0.conv2.weight", 8, "f6184297e6da42fe"),
    ("layer2.1.conv2.weight", 8, "0d8ed1b7ad89ebaa"), ("layer2.2.conv2.weight", 8, "c54d169096729ba9"),
    ("layer3.0.conv2.weight", 16, "a4f7f8a813006b36"), ("layer3.1.conv2.weight", 16, "14941c89859765ec"),
    ("layer3.2.conv2.weight", 15, "2f6cd32b258999f3"),
]
RESNET20_STATE_BEFORE = "7a3869db5b6fcb68"


def test_resnet20_permutes_exactly_as_before():
    torch.manual_seed(0)
    model = create_model("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = permute_for_nm(model, 2, 4, torch.randn(2, 3, 32, 32), max_passes=1, max_partners=8)
    state = model.state_dict()
    got = [(r.consumer, r.swaps, hashlib.sha256(str(_column_perm(before[r.consumer], state[r.consumer])).encode()).hexdigest()[:16]) for r in results]
    assert got == RESNET20_BEFORE
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    assert digest.hexdigest()[:16] == RESNET20_STATE_BEFORE


def test_shared_producer_output_breaks_the_chain():
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) + self.a(x)

    assert find_groups(Skip(), torch.randn(2, 8), coupled=True) == []  # a's outputs reach the model output


def test_untrusted_traces_are_left_alone(caplog):
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.b(self.a(x)) if x.sum() > 0 else x

    with caplog.at_level(logging.WARNING):
        assert permute_for_nm(Dynamic(), 2, 4, torch.ones(2, 8)) == []
        assert permute_for_nm(Dynamic(), 2, 4, (torch.ones(2, 8), torch.ones(2, 8))) == []
    assert "Dynamic branches on tensor values" in caplog.text
    assert "cannot trace Dynamic into a dependency graph" in caplog.text


def test_missing_example_inputs_say_what_to_pass():
    with pytest.raises(ConfigError, match=r"needs example inputs: pass example_inputs=<a batch the model accepts>.*permute_for_nm\(model, 2, 4, torch.randn"):
        permute_for_nm(ConvNet(), 2, 4)


@pytest.mark.parametrize("coupled", [False, True], ids=["chains", "coupled"])
def test_permutation_moves_attached_masks_along(coupled):
    model = _randomize_norms(Residual())
    MaskSet({name: torch.rand(p.shape) > 0.3 for name, p in model.named_parameters() if p.dim() == 4}).attach(model)
    masks = MaskSet.from_model(model)
    x = torch.randn(2, 3, 8, 8)
    before = model(x).detach()
    results = permute_for_nm(model, 2, 4, x, coupled=coupled)
    assert any(r.swaps for r in results)
    torch.testing.assert_close(model(x).detach(), before, rtol=1e-5, atol=1e-5)
    moved = MaskSet.from_model(model)
    assert set(moved) == set(masks) and not moved.equal(masks)  # still attached, reordered with the weights
    assert all(int(moved[k].sum()) == int(masks[k].sum()) for k in masks)


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
