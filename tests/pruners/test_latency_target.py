"""Latency targets end to end, on a deterministic stand-in for the runtime (latency ∝ MACs).

Real timings are noisy, so these tests replace the runtime's timing with a model's MACs (and the
layer tables with the probes' MACs); what is tested is the plumbing: targets, knapsack
allocation, channel steps, speed-up checks and their warnings. Measured figures live in
``benchmarks/latency_targets.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit.pruners.latency as latency_mod
import prunekit.pruners.structured as structured_mod
from prunekit.deployment.latency_tables import LayerTable, Staircase
from prunekit.deployment.layer_probe import probe_macs
from prunekit.deployment.runtimes import SpeedupCheck
from prunekit.errors import ConfigError
from prunekit.metrics import Latency, count_macs
from prunekit.pruners import StructuredConfig, prune_structured
from prunekit.zoo import create_model

OVERHEAD_MS = 0.05


class FakeCall:
    def __init__(self, model: nn.Module, inputs: tuple) -> None:
        self.ms = count_macs(model, tuple(x[:1] for x in inputs)).dense / 1e6 + OVERHEAD_MS

    def __call__(self) -> None:
        return None


def fake_time(models, inputs, runtime=None, threads=1, repeats=20, min_time_s=1.0):
    calls = {n: m if isinstance(m, FakeCall) else FakeCall(m, inputs) for n, m in models.items()}
    return {n: Latency(c.ms, c.ms, c.ms, repeats) for n, c in calls.items()}


def fake_tables(requests, runtime=None, batch_size=1, threads=1, **_):
    return {config: LayerTable(config, grid_in, grid_out, [[probe_macs(config, ci, co) / 1e6 for co in grid_out] for ci in grid_in])
            for config, (grid_in, grid_out) in requests.items()}


def fake_speedup(dense, pruned, inputs, runtime=None, threads=1, repeats=20, min_time_s=1.0):
    t = fake_time({"dense": dense, "pruned": pruned}, inputs)
    return SpeedupCheck(runtime or "torch", int(inputs[0].shape[0]), threads, t["dense"].median_ms, t["pruned"].median_ms, 0.0, repeats)


@pytest.fixture
def fake_runtime(monkeypatch):
    monkeypatch.setattr(latency_mod, "prepare_on", lambda runtime, model, inputs, threads=1: FakeCall(model, inputs))
    monkeypatch.setattr(latency_mod, "time_side_by_side", fake_time)
    monkeypatch.setattr(latency_mod, "measure_tables", fake_tables)
    monkeypatch.setattr(structured_mod, "measured_speedup", fake_speedup)
    monkeypatch.setattr(latency_mod, "measure_staircase", lambda *a, **k: Staircase(8, [], [], []))
    monkeypatch.delenv("PRUNEKIT_CHANNEL_STEP", raising=False)


@pytest.mark.parametrize("reduction", [1.5, 2.0, 3.0])
def test_latency_reduction_is_met_on_the_runtime_within_five_percent(fake_runtime, reduction) -> None:
    model = create_model("resnet20").eval()
    result = prune_structured(model, torch.randn(1, 3, 32, 32), latency_reduction=reduction, runtime="torch", batch_size=4)
    assert result.speedup is not None
    assert abs(result.speedup.speedup - reduction) <= 0.05 * reduction
    assert result.to_dict()["speedup"]["speedup"] == pytest.approx(result.speedup.speedup)
    # channel counts land on the runtime's step (8): every pruned layer keeps a multiple of it
    assert all(layer.after % 8 == 0 for layer in result.layers if layer.after != layer.before)


def test_max_latency_ms_is_an_absolute_budget(fake_runtime) -> None:
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    dense_ms = FakeCall(model, (x,)).ms
    result = prune_structured(model, x, max_latency_ms=dense_ms / 2, runtime="torch")
    assert FakeCall(model, (x,)).ms <= dense_ms / 2 * 1.05


@pytest.mark.parametrize("allocation", ["knapsack", "global", "uniform"])
def test_every_allocation_meets_a_latency_target(fake_runtime, allocation) -> None:
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    dense_ms = FakeCall(model, (x,)).ms
    prune_structured(model, x, latency_reduction=2.0, runtime="torch", allocation=allocation)
    assert dense_ms / FakeCall(model, (x,)).ms == pytest.approx(2.0, rel=0.05)


def test_slower_result_is_reported_loudly_with_the_fix(fake_runtime, monkeypatch, caplog) -> None:
    monkeypatch.setattr(structured_mod, "measured_speedup",
                        lambda *a, **k: SpeedupCheck("onnxruntime", 64, 1, 10.0, 12.0, 0.01, 20))
    model = create_model("resnet20").eval()
    result = prune_structured(model, torch.randn(1, 3, 32, 32), macs_reduction=2.0, runtime="onnxruntime", round_to=1)
    assert result.speedup is not None and result.speedup.speedup < 1
    assert any("SLOWER" in w and "latency_reduction" in w for w in result.warnings)
    assert "SLOWER" in caplog.text


def test_a_speedup_bought_with_far_more_macs_is_explained(fake_runtime, monkeypatch) -> None:
    monkeypatch.setattr(structured_mod, "measured_speedup", lambda *a, **k: SpeedupCheck("torch", 1, 1, 10.0, 8.0, 0.01, 20))
    result = prune_structured(create_model("resnet20").eval(), torch.randn(1, 3, 32, 32), macs_reduction=4.0, runtime="torch", round_to=1)
    assert any("per-layer overhead" in w and "prune_depth" in w for w in result.warnings)


def test_macs_targets_measure_only_when_asked(fake_runtime) -> None:
    x = torch.randn(1, 3, 32, 32)
    assert prune_structured(create_model("resnet20").eval(), x, macs_reduction=1.5).speedup is None
    assert prune_structured(create_model("resnet20").eval(), x, macs_reduction=1.5, measure_speedup=True).speedup is not None


def test_auto_round_to_follows_the_measured_staircase_or_the_pin(fake_runtime, monkeypatch) -> None:
    assert StructuredConfig(ratio=0.5).resolved_round_to() == 8
    monkeypatch.setenv("PRUNEKIT_CHANNEL_STEP", "4")
    assert StructuredConfig(ratio=0.5).resolved_round_to() == 4
    assert StructuredConfig(ratio=0.5, round_to=2).resolved_round_to() == 2
    monkeypatch.setenv("PRUNEKIT_CHANNEL_STEP", "eight")
    with pytest.raises(ConfigError, match="PRUNEKIT_CHANNEL_STEP"):
        StructuredConfig(ratio=0.5).resolved_round_to()


@pytest.mark.parametrize("settings, message", [
    (dict(latency_reduction=2.0, macs_reduction=2.0), "give one target"),
    (dict(latency_reduction=2.0, runtime="tensorrt"), "unknown runtime 'tensorrt'"),
    (dict(ratio=0.5, allocation="knapsack"), "knapsack' needs a resource target"),
    (dict(ratio=0.5, round_to=0), "round_to"),
    (dict(latency_reduction=0.5), "latency_reduction"),
])
def test_bad_latency_settings_are_refused(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        prune_structured(create_model("resnet20"), torch.randn(1, 3, 32, 32), **settings)
