"""Structured sensitivity: one row per group and ratio, exact against the pruner, resumable, sharded."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import pytest
import torch
from torch import nn

import prunekit.analysis.group_sensitivity as scan_module
from prunekit.analysis import StructuredSensitivity, merge_sensitivity_shards, structured_sensitivity
from prunekit.analysis.group_space import Shard, recalibrate_bn, resolve_shard
from prunekit.errors import ConfigError
from prunekit.metrics.accuracy import evaluate
from prunekit.pruners import StructuredPruner
from prunekit.zoo import create_model

RATIOS = (0.25, 0.5, 0.75)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4)).eval()


def _data(model: nn.Module, n: int = 3) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(16, 3, 8, 8, generator=g) for _ in range(n)]
    with torch.no_grad():
        batches = [(x, model(x).argmax(1)) for x in xs]  # the model is perfect on its own labels: baseline 1.0
    return xs[0][:2], batches


def _plain(result: StructuredSensitivity) -> list[dict]:
    """Rows without timings (what a rerun or another process must reproduce exactly)."""
    rows = ([result.baseline] if result.baseline else []) + result.rows
    return [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in rows]


def test_one_row_per_group_and_ratio_exactly_as_the_pruner_prunes():
    model = _net()
    x, batches = _data(model)
    before = copy.deepcopy(model.state_dict())
    result = structured_sensitivity(model, x, batches, RATIOS, progress=False)
    assert result.complete and result.groups == {0: "0", 1: "3"}
    assert result.baseline.accuracy == 1.0 and result.baseline.macs == 8 * 8 * (3 * 8 * 9 + 8 * 12 * 9) + 12 * 4
    assert [(r.group, r.ratio, r.removed) for r in result.rows] == [(0, 0.25, 2), (0, 0.5, 4), (0, 0.75, 6), (1, 0.25, 3), (1, 0.5, 6), (1, 0.75, 9)]
    for row in result.rows:
        pruned = copy.deepcopy(model)
        out = StructuredPruner(layer_ratios={row.name: row.ratio}, round_to=1).prune(pruned, x)
        assert (row.macs, row.params) == (out.macs_after, out.params_after)
        assert row.accuracy == evaluate(pruned, batches).accuracy
        assert result.drop(row.name, row.ratio) == pytest.approx(1.0 - row.accuracy)
        assert result.macs_saved(row.group, row.ratio) == out.macs_before - out.macs_after
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model itself is untouched
    table = result.accuracy_table()
    assert list(table) == ["0", "3"] and all(len(v) == 3 for v in table.values())
    fig = result.plot()
    assert len(fig.axes[0].lines) == 3  # two groups and the unpruned line
    assert json.loads(json.dumps(result.to_dict()))["complete"] is True


def test_calibration_batches_recalibrate_bn_before_each_measurement():
    model = _net()
    x, batches = _data(model)
    train = _data(_net(), 2)[1]
    result = structured_sensitivity(model, x, batches, (0.5,), calibration_batches=train, progress=False)
    pruned = copy.deepcopy(model)
    StructuredPruner(layer_ratios={"0": 0.5}, round_to=1).prune(pruned, x)
    assert result.row("0", 0.5).accuracy == evaluate(recalibrate_bn(pruned, train), batches).accuracy


def test_recalibrate_bn_reestimates_the_running_mean():
    model = _net()
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 3, 8, 8, generator=g) + 2.0, torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    recalibrate_bn(model, batches)
    conv_out = torch.cat([model[0](x) for x, _ in batches])
    assert torch.allclose(model[1].running_mean, conv_out.mean((0, 2, 3)), atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training


def test_resume_after_a_kill_redoes_only_unfinished_measurements(tmp_path, monkeypatch):
    model = _net()
    x, batches = _data(model)
    cache = tmp_path / "scan.jsonl"
    full = structured_sensitivity(model, x, batches, RATIOS, cache=cache, progress=False)
    lines = cache.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 + 1 + 6  # header, baseline, 2 groups x 3 ratios
    cache.write_bytes(b"".join(lines[:4]) + lines[4][:25])  # killed while writing the 4th measurement
    calls = []
    monkeypatch.setattr(scan_module, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    resumed = structured_sensitivity(model, x, batches, RATIOS, cache=cache, progress=False)
    assert len(calls) == 7 - 3 and _plain(resumed) == _plain(full)
    assert all(json.loads(line) for line in cache.read_bytes().splitlines())  # the cut line is gone, appends stay whole
    calls.clear()
    assert _plain(structured_sensitivity(model, x, batches, RATIOS, cache=cache, progress=False)) == _plain(full) and not calls


@pytest.mark.parametrize("change, what", [("ratios", "settings"), ("data", "data"), ("model", "model")])
def test_a_cache_of_another_model_data_or_settings_is_refused(tmp_path, change, what):
    model = _net()
    x, batches = _data(model)
    cache = tmp_path / "scan.jsonl"
    structured_sensitivity(model, x, batches, (0.5,), cache=cache, progress=False)
    ratios = (0.25,) if change == "ratios" else (0.5,)
    if change == "data":
        batches = batches[:2]
    if change == "model":
        with torch.no_grad():
            model[0].weight.mul_(2)
    with pytest.raises(ConfigError, match=f"written for another {what} .*choose another cache path, or move this file aside"):
        structured_sensitivity(model, x, batches, ratios, cache=cache, progress=False)


def test_two_shards_merged_equal_the_unsharded_scan(tmp_path, monkeypatch):
    model = _net()
    x, batches = _data(model)
    single = structured_sensitivity(model, x, batches, RATIOS, progress=False)
    cache = tmp_path / "scan.jsonl"
    calls = []
    monkeypatch.setattr(scan_module, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    shard0 = structured_sensitivity(model, x, batches, RATIOS, cache=cache, rank=0, world_size=2, progress=False)
    assert len(calls) == 4 and not shard0.complete  # items 0, 2, 4, 6 of 7
    shard1 = structured_sensitivity(model, x, batches, RATIOS, cache=cache, rank=1, world_size=2, progress=False)
    assert len(calls) == 7 and shard1.baseline is None and len(shard1.rows) == 3
    assert (tmp_path / "scan.shard0-of-2.jsonl").exists() and (tmp_path / "scan.shard1-of-2.jsonl").exists()
    merged = merge_sensitivity_shards(cache, 2)
    assert merged.complete and _plain(merged) == _plain(single)
    calls.clear()  # the merged cache answers an unsharded rerun
    assert _plain(structured_sensitivity(model, x, batches, RATIOS, cache=cache, progress=False)) == _plain(single) and not calls


def test_shards_come_from_arguments_torch_distributed_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_shard() == Shard()
    assert resolve_shard(1, 3) == Shard(1, 3, "explicit")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_shard() == Shard(1, 2, "environment")
    model = _net()
    x, batches = _data(model)
    with pytest.raises(ConfigError, match="needs cache="):
        structured_sensitivity(model, x, batches, RATIOS, progress=False)
    part = structured_sensitivity(model, x, batches, RATIOS, cache=tmp_path / "s.jsonl", progress=False)  # rank 1 does not wait
    assert [r.ratio for r in part.rows] == [0.25, 0.75, 0.5]
    with pytest.raises(ConfigError, match="give both rank= and world_size="):
        resolve_shard(rank=0)
    with pytest.raises(ConfigError, match=r"rank must be in \[0, world_size\)"):
        resolve_shard(2, 2)


def test_bad_inputs_are_config_errors():
    model = _net()
    x, batches = _data(model)
    with pytest.raises(ConfigError, match="no validation batches"):
        structured_sensitivity(model, x, [], RATIOS, progress=False)
    with pytest.raises(ConfigError, match=r"distinct numbers in \(0, 1\)"):
        structured_sensitivity(model, x, batches, (0.5, 1.0), progress=False)
    result = structured_sensitivity(model, x, batches, (0.5,), progress=False)
    with pytest.raises(ConfigError, match="no measurement of group 'nope'"):
        result.row("nope", 0.5)


def test_resnet20_every_group_is_scanned():
    model = create_model("resnet20", 10, (3, 16, 16)).eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g))]
    result = structured_sensitivity(model, batches[0][0][:2], batches, (0.5,), progress=False)
    assert len(result.groups) == 12 and len(result.rows) == 12 and result.complete
    shared = result.row("conv1", 0.5)  # the residual stream of stage 1: conv1 and every layer1 conv2
    assert shared.removed == 8 and result.macs_saved("conv1", 0.5) > result.macs_saved("layer1.0.conv1", 0.5) > 0
