"""Exactness of the fast paths of graph building and of the pruner's measurements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components
from torch import nn

from prunekit.metrics import count_macs
from prunekit.metrics.macs import counted_forward
from prunekit.pruners import StructuredPruner
from prunekit.structured.fields import connected_components
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.groups import Member
from prunekit.structured.trace import _instruction_at


def _scipy_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n))
    return scipy_components(graph, directed=False)[1]


@pytest.mark.parametrize("seed", range(40))
def test_connected_components_number_like_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    if seed % 3 == 0:  # one chain visiting the nodes in random order: many hook rounds
        perm = rng.permutation(n)
        a, b = perm[:-1], perm[1:]
    else:
        m = int(rng.integers(0, 2 * n))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    assert np.array_equal(connected_components(n, a, b), _scipy_labels(n, a, b))


def test_connected_components_small_case() -> None:
    # components {0, 3}, {1}, {2, 4, 5}: numbered by their smallest node
    labels = connected_components(6, np.array([3, 5, 4]), np.array([0, 2, 5]))
    assert labels.tolist() == [0, 1, 2, 0, 2, 2]


class _Unpacking(nn.Module):
    def __init__(self, loop: bool) -> None:
        super().__init__()
        self.loop = loop
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.conv(x).chunk(2, 1)
        if self.loop:
            return sum(p.mean() for p in parts)
        first, second = parts
        return first - second


@pytest.mark.parametrize("loop", [False, True])
def test_iterating_a_proxy_unpacks_without_len_only_when_unpacking(loop: bool) -> None:
    graph = DependencyGraph.build(_Unpacking(loop), torch.randn(1, 3, 4, 4))
    lens = [n for n in graph.prop.trace.graph.nodes if n.op == "call_function" and n.target is len]
    assert len(lens) == (1 if loop else 0)
    assert _instruction_at(_Unpacking.forward.__code__, 0).offset == 0


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.mid(self.conv(x).relu()).relu()
        c, w = h.shape[1], self.fc.weight  # a parameter read inside forward (the tracer's table path)
        pooled = h.mean((2, 3))
        return pooled @ w.t(), {"features": h[:, :c]}


def test_counted_forward_is_count_macs_and_the_output() -> None:
    torch.manual_seed(0)
    model, x = _Net().train(), torch.randn(2, 3, 8, 8)
    report, out = counted_forward(model, x)
    assert report == count_macs(model, x)
    assert model.training  # restored
    assert out[0].shape == (2, 4) and out[1]["features"].shape == (2, 8, 8, 8)
    assert not out[0].requires_grad


def test_prune_reports_counted_costs_and_keeps_output_shapes() -> None:
    torch.manual_seed(0)
    model, x = _Net(), torch.randn(1, 3, 8, 8)
    dense = count_macs(model, x).dense
    result = StructuredPruner(ratio=0.5, round_to=1).prune(model, x)
    assert result.macs_before == dense
    assert result.macs_after == count_macs(model, x).dense < dense
    assert result.params_after == sum(p.numel() for p in model.parameters())
    out = model(x)
    assert out[0].shape == (1, 4) and out[1]["features"].shape[0] == 1


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, groups=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(self.conv(x)).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(h).chunk(3, -1)
        return torch.softmax(q @ k.transpose(1, 2), -1) @ v + torch.nn.functional.scaled_dot_product_attention(q, k, v)


def test_count_macs_totals_like_flop_counter_mode() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model, x = _Attention().eval(), torch.randn(2, 3, 6, 6)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    report = count_macs(model, x)
    layers = sum(layer.dense for layer in report.layers)
    assert report.dense == max(layers, counter.get_total_flops() // 2 // 2)
    assert report.other == counter.get_total_flops() // 2 // 2 - layers > 0  # the attention products


class _Cond(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: self.a(t) @ t.t(), lambda t: self.b(t) @ t.t(), (x,))


def test_higher_order_operators_are_counted_by_flop_counter_mode() -> None:
    from prunekit.metrics.macs import _TotalFlops, _Unsupported

    model, x = _Cond(), torch.randn(3, 4)
    lean = _TotalFlops()
    with torch.no_grad(), lean, pytest.raises(_Unsupported):
        model(x)
    assert lean.unsupported
    report = count_macs(model, x)  # both branches' layers ran: 3 rows x 16 MACs / 3 examples each
    assert [(layer.name, layer.dense) for layer in report.layers] == [("a", 16), ("b", 16)] and report.dense == 32


def test_dense_only_counted_forward_keeps_dense_counts() -> None:
    torch.manual_seed(0)
    model, x = _Attention().eval(), torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        model.conv.weight[:4] = 0  # effective counts differ from dense ones
    full, out = counted_forward(model, x)
    dense, out_dense = counted_forward(model, x, effective=False)
    assert full.effective < full.dense
    assert (dense.dense, [(l.name, l.dense) for l in dense.layers]) == (full.dense, [(l.name, l.dense) for l in full.layers])
    assert dense.effective == dense.dense and all(l.effective == l.dense for l in dense.layers)
    assert torch.equal(out, out_dense)


@pytest.mark.parametrize("make", [_Attention, _Net])
def test_forward_counter_counts_like_counted_forward(make) -> None:
    from prunekit.metrics.macs import ForwardCounter

    torch.manual_seed(0)
    model, x = make().eval(), torch.randn(2, 3, 6, 6)
    counter = ForwardCounter(model, x)
    with torch.no_grad(), counter:
        model(x)  # a first forward is forgotten on the next entry
    with torch.no_grad(), counter:
        model(x)
    assert counter.dense() == count_macs(model, x).dense > 0
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_forward_counter_declines_higher_order_operators() -> None:
    from prunekit.metrics.macs import ForwardCounter

    model, x = _Cond(), torch.randn(3, 4)
    counter = ForwardCounter(model, x)
    with torch.no_grad(), counter:
        out = model(x)  # runs uncounted instead of raising
    assert out.shape == (3, 3) and counter.dense() is None


def test_prune_counts_dense_macs_on_the_tracers_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    import prunekit.pruners.structured as structured
    import prunekit.pruners.structured_checks as checks

    calls = []
    measure = checks.measure
    for module in (structured, checks):  # the pruner's own fallback forward and the checked forward
        monkeypatch.setattr(module, "measure", lambda *a: calls.append(1) or measure(*a))
    torch.manual_seed(0)
    model, x = _Net(), torch.randn(1, 3, 8, 8)
    dense = count_macs(model, x).dense
    result = StructuredPruner(ratio=0.5, round_to=1).prune(model, x)
    assert len(calls) == 1  # only the pruned model's checked forward
    assert (result.macs_before, result.macs_after) == (dense, count_macs(model, x).dense)


def test_forward_counter_declines_layers_called_on_proxies() -> None:
    from torch import fx

    from prunekit.metrics.macs import ForwardCounter

    class ThroughLayers(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, name: str) -> bool:
            return False  # layers' forwards (and hooks) run on proxies

    model, x = _Attention().eval(), torch.randn(2, 3, 6, 6)
    counter = ForwardCounter(model, x)
    with counter:
        ThroughLayers().trace(model)
    assert counter.dense() is None


class _OwnLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # an own forward: the tracer traces through it
        return torch.nn.functional.linear(x, self.weight, self.bias)


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3), _OwnLinear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def test_forward_counter_resolves_the_structured_tracers_proxies() -> None:
    from prunekit.metrics.macs import ForwardCounter
    from prunekit.structured.trace import concrete_value

    torch.manual_seed(0)
    model, x = _Head().eval(), torch.randn(2, 3, 6, 6)
    counter = ForwardCounter(model, x, resolve=concrete_value)
    graph = DependencyGraph.build(model, x, observer=counter)
    assert counter.dense() == count_macs(model, x).dense
    assert any(r[0] == "fc" for r in counter._records)  # the traced-through layer was recorded
    plain = DependencyGraph.build(model, x)
    assert [n.format_node() for n in graph.prop.trace.graph.nodes] == [n.format_node() for n in plain.prop.trace.graph.nodes]


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("shape,dim", [((6,), 0), ((5, 3), 0), ((5, 3), 1), ((4, 3, 2, 2), 0), ((4, 3, 2, 2), 1), ((2, 3, 4), 2)])
def test_per_position_reduces_in_place_like_the_moved_axis(shape: tuple[int, ...], dim: int, reduce: str) -> None:
    values = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape) * 10 + dim))
    member = Member(module="m", name="weight", dim=dim, role="out", units=np.arange(shape[dim]))
    moved = values.movedim(dim, 0).reshape(shape[dim], -1)
    expected = {"sum": moved.sum(1), "mean": moved.mean(1), "max": moved.amax(1)}[reduce]
    got = member.per_position(values, reduce)
    assert got.shape == (shape[dim],)
    torch.testing.assert_close(got, expected)
    if len(shape) == 1:
        got.add_(1.0)  # a 1-D input comes back as a copy: the caller may write into it
        torch.testing.assert_close(values, torch.randn(shape, generator=torch.Generator().manual_seed(10)))


@pytest.mark.parametrize("seed", range(10))
def test_distinct_is_np_unique(seed: int) -> None:
    from prunekit.structured.fields import distinct

    values = np.random.default_rng(seed).integers(0, 50, size=(seed * 7, 3))
    assert np.array_equal(distinct(values), np.unique(values))


@pytest.mark.parametrize("seed", range(10))
def test_components_extended_step_by_step_equal_a_fresh_computation(seed: int) -> None:
    from prunekit.structured.fields import IdSpace

    rng = np.random.default_rng(seed)
    ids = IdSpace()
    pool = ids.fresh((60,))
    seen = []
    for step in range(6):
        if step == 3:
            ids.seal()
            pool = np.concatenate([pool, ids.fresh((20,))])  # ids allocated after a result was cached
        a, b = rng.choice(pool, 8), rng.choice(pool, 8)
        ids.union(a, b)
        seen.append((a, b))
        if step == 4:
            ids.block(pool[:2], "test", "here")
        labels = ids.components()
        every_a = np.concatenate([np.concatenate([s[0] for s in seen]), *([pool[:2]] if step >= 4 else [])])
        every_b = np.concatenate([np.concatenate([s[1] for s in seen]), *([np.zeros(2, np.int64)] if step >= 4 else [])])
        assert np.array_equal(labels, connected_components(ids.size, every_a, every_b))
    sealed = np.concatenate([s[0] for s in seen[:3]]), np.concatenate([s[1] for s in seen[:3]])
    assert np.array_equal(ids.components(explicit=False, propagated_only=True), connected_components(ids.size, *sealed))
