"""attention="auto": whole heads or head dims per attention block, chosen by the target."""

from __future__ import annotations

import copy
import logging
import warnings
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError
from prunekit.pruners import StructuredPruner
from prunekit.pruners.attention import block_groups
from prunekit.pruners.plan import Plan
from prunekit.structured.graph import DependencyGraph, PruningWarning

from ..structured.helpers import outputs, relative_error
from .test_latency_target import fake_runtime  # noqa: F401 (fixture)


class Attention(nn.Module):
    """timm-style attention with an explicit head width (so blocks can differ); the scale is fixed at
    init as in timm (one computed from ``head_dim`` in ``forward`` would change with head dims)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, sdpa: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.sdpa = num_heads, head_dim, sdpa
        self.attn_dim = num_heads * head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * self.attn_dim)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.sdpa:  # the default scale, 1/sqrt(head_dim): head dims of q and k are refused
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(B, N, self.attn_dim))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, sdpa: bool = False) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, head_dim, sdpa)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.fc2(torch.relu(self.fc1(x)))


class TinyViT(nn.Module):
    """Blocks of ``(heads, head_dim)``: (3, 8) loses more as head dims at ratio 0.5, (4, 3) as whole heads."""

    def __init__(self, shapes: tuple[tuple[int, int], ...] = ((3, 8), (3, 8)), dim: int = 16, sdpa: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.blocks = nn.Sequential(*[Block(dim, h, d, sdpa) for h, d in shapes])
        self.head = nn.Linear(dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x))).mean(1)


def _heads(model: TinyViT) -> list[tuple[int, int]]:
    return [(b.attn.num_heads, b.attn.head_dim) for b in model.blocks]


def _pruned(shapes: tuple[tuple[int, int], ...], attention: object, **settings: object) -> tuple[TinyViT, object]:
    torch.manual_seed(0)
    model = TinyViT(shapes).eval()
    result = StructuredPruner(**{"ratio": 0.5, **settings}, attention=attention).prune(model, torch.randn(1, 7, 6))
    return model, result


def test_auto_takes_head_dims_where_whole_heads_round_away_macs() -> None:
    runs = {mode: _pruned(((3, 8), (3, 8)), mode) for mode in ("heads", "head_dims", "auto")}
    assert _heads(runs["heads"][0]) == [(2, 8), (2, 8)]  # 3 heads at 0.5 keep 2
    assert _heads(runs["head_dims"][0]) == [(3, 4), (3, 4)]
    assert _heads(runs["auto"][0]) == [(3, 4), (3, 4)]
    macs = {mode: result.macs_after for mode, (_, result) in runs.items()}
    assert macs["auto"] == macs["head_dims"] < macs["heads"]
    assert runs["auto"][1].attention == {"blocks.0.attn": "head_dims", "blocks.1.attn": "head_dims"}
    assert runs["heads"][1].attention == {"blocks.0.attn": "heads", "blocks.1.attn": "heads"}
    assert runs["auto"][1].to_dict()["attention"] == runs["auto"][1].attention


def test_auto_chooses_per_block() -> None:
    shapes = ((3, 8), (4, 3))  # head dims win in block 0 (4 of 8 vs 1 of 3 heads), whole heads in block 1 (2 of 4 vs 1 of 3 dims)
    runs = {mode: _pruned(shapes, mode) for mode in ("heads", "head_dims", "auto")}
    assert _heads(runs["heads"][0]) == [(2, 8), (2, 3)]
    assert _heads(runs["head_dims"][0]) == [(3, 4), (4, 2)]
    assert _heads(runs["auto"][0]) == [(3, 4), (2, 3)]
    assert runs["auto"][1].attention == {"blocks.0.attn": "head_dims", "blocks.1.attn": "heads"}
    best_fixed = min(runs["heads"][1].macs_after, runs["head_dims"][1].macs_after)
    assert runs["auto"][1].macs_after < best_fixed


def test_a_forced_mapping_prunes_each_block_as_told() -> None:
    model, result = _pruned(((3, 8), (3, 8)), {"blocks.0.*": "heads", "blocks.1.*": "head_dims"})
    assert _heads(model) == [(2, 8), (3, 4)]
    assert result.attention == {"blocks.0.attn": "heads", "blocks.1.attn": "head_dims"}


def test_auto_plan_equals_zeroing_its_attention_units() -> None:
    torch.manual_seed(0)
    model, x = TinyViT(((3, 8), (4, 3))).eval(), torch.randn(1, 7, 6)
    graph, plan = StructuredPruner(ratio=0.5).plan(model, x)
    inner = {g for gs in block_groups(graph, graph.head_scopes).values() for g in gs}
    attention_only = Plan({g: u for g, u in plan.removals.items() if g in inner})
    assert {graph.groups[g].name for g in attention_only.removals} == {"blocks.0.attn.qkv", "blocks.1.attn.qkv"}
    masked = copy.deepcopy(model)
    attention_only.masks(graph).attach(masked)
    expected = outputs(masked, x)
    attention_only.apply(graph)
    assert _heads(model) == [(3, 4), (2, 3)]
    assert relative_error(expected, outputs(model, x)) <= 1e-5


def test_macs_target_takes_the_mode_removing_less_importance() -> None:
    shapes, x = ((3, 8), (4, 3)), torch.randn(1, 7, 6)
    removed = {}
    for mode in ("heads", "head_dims"):
        torch.manual_seed(0)
        model, pruner = TinyViT(shapes).eval(), StructuredPruner(macs_reduction=2.5, attention=mode)
        pruner.prepare(model, x)
        option = pruner._option(pruner.graph(model, x), (x,), 1.0, None, {})
        assert option.reached == pytest.approx(pruner._goal(1.0), rel=0.02)  # both reach the target
        removed[mode] = option.importance_removed()
    assert removed["head_dims"] < removed["heads"]
    model, result = _pruned(shapes, "auto", ratio=None, macs_reduction=2.5)
    assert result.attention == {"blocks.0.attn": "head_dims", "blocks.1.attn": "head_dims"}
    assert _heads(model) == [(3, 6), (4, 3)]
    assert result.macs_before / result.macs_after == pytest.approx(2.5, rel=0.02)


def test_warnings_of_the_mode_not_chosen_stay_silent() -> None:
    x = torch.randn(1, 7, 6)
    runs = {}
    for mode in ("head_dims", "auto"):
        torch.manual_seed(0)
        model = TinyViT(((3, 8), (3, 8)), sdpa=True).eval()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = StructuredPruner(ratio=0.5, attention=mode).prune(model, x)
        runs[mode] = (model, result, [str(w.message) for w in caught if issubclass(w.category, PruningWarning)])
    model, result, emitted = runs["head_dims"]
    assert _heads(model) == [(3, 8), (3, 8)]  # refused: the default scale would change
    assert [m.partition(":")[0] for m in result.warnings] == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"] and emitted == result.warnings
    assert all("scaled_dot_product_attention without scale=" in m for m in emitted)
    model, result, emitted = runs["auto"]
    assert result.attention == {"blocks.0.attn": "heads", "blocks.1.attn": "heads"} and _heads(model) == [(2, 8), (2, 8)]
    assert emitted == result.warnings == []


def test_a_model_without_attention_builds_one_graph() -> None:
    model, x = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 5)), torch.randn(2, 6)
    with (mock.patch.object(DependencyGraph, "build", wraps=DependencyGraph.build) as build,
          mock.patch.object(DependencyGraph, "with_attention") as again):
        result = StructuredPruner(ratio=0.5).prune(model, x)
        assert build.call_count == 1
        pruner = StructuredPruner(ratio=0.25, steps=2)
        pruner.prepare(model, x)  # builds the one graph it always built: nothing to choose
        assert build.call_count == 2 and pruner.state_dict()["attention"] == {}
    assert not again.called
    assert result.attention == {} and model[0].out_features == 8


def test_auto_builds_a_second_graph_only_for_attention() -> None:
    torch.manual_seed(0)
    model = TinyViT(((3, 8), (3, 8))).eval()
    with (mock.patch.object(DependencyGraph, "build", wraps=DependencyGraph.build) as build,
          mock.patch.object(DependencyGraph, "with_attention", autospec=True, side_effect=DependencyGraph.with_attention) as again):
        StructuredPruner(ratio=0.5).prune(model, torch.randn(1, 7, 6))
    assert build.call_count == 1  # one trace, whole heads
    assert [call.args[1] for call in again.call_args_list] == [{"blocks.0.attn": "head_dims", "blocks.1.attn": "head_dims"}]  # both agree: no mixed graph


def test_the_choice_is_kept_across_steps_and_resumes(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model, x = TinyViT(((3, 8), (3, 8))).eval(), torch.randn(1, 7, 6)
    pruner = StructuredPruner(ratio=0.5, steps=2)
    with caplog.at_level(logging.INFO, logger="prunekit.pruners.structured"):
        pruner.prepare(model, x)  # chooses for the whole target
    assert "attention='auto': 2 block(s) head_dims" in caplog.text
    assert pruner.graph(model, x).options.attention == {"blocks.0.attn": "head_dims", "blocks.1.attn": "head_dims"}
    first = pruner.step(model, x, pruner.schedule()[0])
    state = pruner.state_dict()
    assert state["attention"] == first.attention == {"blocks.0.attn": "head_dims", "blocks.1.attn": "head_dims"}
    resumed = StructuredPruner(ratio=0.5, steps=2)
    resumed.load_state_dict(state)
    last = resumed.step(model, x, 1.0)
    assert last.attention == first.attention and _heads(model) == [(3, 4), (3, 4)]


def test_attention_rejects_an_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="attention"):
        StructuredPruner(ratio=0.5, attention="rows")


def test_recipes_take_auto_a_mode_or_a_mapping_and_name_a_bad_value() -> None:
    from pydantic import ValidationError

    from prunekit.experiment.overrides import apply_overrides
    from prunekit.experiment.recipe import load_recipe
    from tests.experiment.recipes import tiny_recipe

    raw = {**tiny_recipe(), "prune": {"method": "structured", "ratio": 0.5}}
    assert load_recipe(raw).prune.attention == "auto"
    assert load_recipe(apply_overrides(raw, ["prune.attention=head_dims"])).prune.attention == "head_dims"
    mapping = apply_overrides(raw, ['prune.attention={"blocks.*.attn": heads}'])
    assert load_recipe(mapping).prune.attention == {"blocks.*.attn": "heads"}
    with pytest.raises(ValidationError, match=r"prune\.structured\.attention"):
        load_recipe(apply_overrides(raw, ["prune.attention=rows"]))


def test_latency_target_chooses_per_block_by_the_runtime_tables(fake_runtime, monkeypatch) -> None:  # noqa: F811 (the fixture)
    from prunekit.pruners import structured_modes

    from .test_latency_target import FakeCall

    torch.manual_seed(0)
    model, x = TinyViT(((3, 8), (4, 3))).eval(), torch.randn(1, 7, 6)
    dense_ms = FakeCall(model, (x,)).ms
    priced = []
    real = structured_modes.block_modes

    def block_modes(heads, dims, objectives, **kw):
        priced.append(([o.cost(Plan()) for o in objectives], kw))
        return real(heads, dims, objectives, **kw)

    monkeypatch.setattr(structured_modes, "block_modes", block_modes)
    result = StructuredPruner(latency_reduction=1.5, round_to=1, attention="auto").prune(model, x)
    assert len(result.attention) == 2 and result.macs_before / result.macs_after > 1.3
    (costs, kw), = priced  # one per-block comparison, priced in ms by the latency tables (not in MACs)
    assert costs == [pytest.approx(dense_ms), pytest.approx(dense_ms)] and kw == {"resource": True}


def test_importance_removed_weighs_shares_by_channels() -> None:
    torch.manual_seed(0)
    model, x = TinyViT(((3, 8), (4, 3))).eval(), torch.randn(1, 7, 6)
    pruner = StructuredPruner(ratio=0.5, attention="heads", normalization="standardize")
    pruner.prepare(model, x)
    option = pruner._option(pruner.graph(model, x), (x,), 1.0, None, {})
    heads = next(c for c in option.cands if option.graph.groups[c.index].name == "blocks.0.attn.qkv")
    units = option.plan.removals[heads.index]
    assert heads.scores.min() < 0 and len(units) == 1  # standardised scores; 1 of 3 heads goes
    shifted = heads.scores - heads.scores.min() + 1.0
    expected = shifted[list(units)].sum() / shifted.sum() * 3 * 24  # 3 heads of 3·8 qkv rows
    assert option.importance_removed([heads.index]) == pytest.approx(expected)
    assert 0 < expected < 72 / 3
