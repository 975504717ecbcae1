"""The channel staircase, per-layer latency tables, their cache keys and the layer probes."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.deployment.latency_tables import LatencyCache, LayerTable, MachineKey, sample_grid, staircase_step
from prunekit.deployment.layer_probe import LayerConfig, probe_input, probe_macs, probe_module, probe_onnx
from prunekit.deployment.runtimes import RUNTIMES, measured_speedup, ort_call, ort_session


def staircase(step: int, lo: int = 33, hi: int = 65, base: float = 1.0) -> dict[int, float]:
    """Latency flat between multiples of ``step``, one jump after each."""
    return {c: base + -(-c // step) for c in range(lo, hi + 1)}


@pytest.mark.parametrize("step", [2, 4, 8, 16])
def test_staircase_step_is_read_from_a_clean_staircase(step: int) -> None:
    assert staircase_step(staircase(step)) == step


def test_no_staircase_gives_step_one() -> None:
    assert staircase_step({c: 0.01 * c for c in range(33, 66)}) == 1


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([4, 8, 16]), st.integers(0, 2**32 - 1))
def test_staircase_step_survives_timing_noise(step: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    noisy = {c: v * (1 + rng.uniform(-0.005, 0.005)) for c, v in staircase(step, base=2.0).items()}
    assert staircase_step(noisy) == step


def test_input_axis_with_slow_non_multiples_reads_its_step() -> None:
    # onnxruntime's input-channel axis: multiples of 8 fast, others up to 30% slower
    latency = {c: (1 + c // 8) * (1.0 if c % 8 == 0 else 1.3) for c in range(33, 66)}
    assert staircase_step(latency) == 8


def test_sample_grid() -> None:
    assert sample_grid(64, 8, 20) == [8, 16, 24, 32, 40, 48, 56, 64]
    thin = sample_grid(512, 8, 6)
    assert len(thin) == 6 and thin[0] == 8 and thin[-1] == 512 and all(c % 8 == 0 for c in thin)
    assert sample_grid(10, 8, 6) == [8, 10]
    assert sample_grid(3, 8, 6, free=False) == [3]


def test_layer_table_interpolates_between_measured_counts() -> None:
    config = LayerConfig("conv", (8, 8), (3, 3), (1, 1), (1, 1), (1, 1))
    table = LayerTable(config, [8, 16], [8, 24], [[1.0, 3.0], [2.0, 6.0]])
    assert table(8, 8) == 1.0 and table(16, 24) == 6.0
    assert table(12, 8) == pytest.approx(1.5)
    assert table(16, 16) == pytest.approx(4.0)
    assert table(32, 32) == 6.0  # clamped above the grid
    assert table(4, 8) == pytest.approx(0.5)  # below the smallest count: linear to zero


def key(**changes: object) -> MachineKey:
    return dataclasses.replace(MachineKey("torch", "torch 2", "2", "cpu X", 1, 1), **changes)


def test_cache_round_trip_and_key_mismatch(tmp_path, caplog) -> None:
    LatencyCache(key(), tmp_path).store("table a", {"ms": [[1.0]]})
    assert LatencyCache(key(), tmp_path).load("table a") == {"ms": [[1.0]]}
    assert LatencyCache(key(), tmp_path).load("table b") is None
    for other in (key(cpu="cpu Y"), key(runtime_version="torch 3"), key(torch_version="3")):
        with caplog.at_level(logging.WARNING, "prunekit.deployment.latency_tables"):
            assert LatencyCache(other, tmp_path).load("table a") is None
        assert "measuring again" in caplog.text
        caplog.clear()
    # another batch size or thread count lives in another folder: never even found
    assert LatencyCache(key(batch_size=64), tmp_path).load("table a") is None
    assert LatencyCache(key(threads=4), tmp_path).load("table a") is None


def test_unwritable_cache_warns_and_goes_on(tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        LatencyCache(key(), blocker).store("t", {"ms": [[1.0]]})
    assert "could not write the latency cache" in caplog.text and "PRUNEKIT_CACHE_DIR" in caplog.text


def test_damaged_cache_file_is_measured_again(tmp_path, caplog) -> None:
    cache = LatencyCache(key(), tmp_path)
    cache.store("t", {"ms": [[1.0]]})
    cache.path("t").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert cache.load("t") is None
    assert "measuring again" in caplog.text


CONFIGS = [
    LayerConfig("conv", (9, 9), (3, 3), (2, 2), (1, 1), (1, 1)),
    LayerConfig("conv", (8, 8), (3, 3), (1, 1), (1, 1), (1, 1), in_per_group=1, out_per_group=1),
    LayerConfig("conv", (16,), (5,), (1,), (2,), (2,)),
    LayerConfig("linear", (4,)),
    LayerConfig("linear", ()),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name())
def test_onnx_probe_computes_what_the_torch_probe_does(config: LayerConfig) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    data = probe_onnx(config, 16, 24, 2)
    torch.manual_seed(0)
    module = probe_module(config, 16, 24)
    x = probe_input(config, 16, 24, 2)
    session = ort_session(data, 1)
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        torch.testing.assert_close(got, module(x), rtol=1e-4, atol=1e-5)
    assert callable(ort_call(session, (x,)))


def test_probe_macs_match_count_macs() -> None:
    from prunekit.metrics import count_macs

    for config in CONFIGS:
        module, x = probe_module(config, 16, 24), probe_input(config, 16, 24, 1)
        assert probe_macs(config, 16, 24) == count_macs(module, x).dense, config


def test_layer_config_of_modules() -> None:
    assert LayerConfig.of(nn.Conv2d(4, 8, 3, padding=1), (1, 4, 10, 10)) == LayerConfig("conv", (10, 10), (3, 3), (1, 1), (1, 1), (1, 1))
    depthwise = LayerConfig.of(nn.Conv2d(8, 8, 3, groups=8), (1, 8, 6, 6))
    assert depthwise is not None and depthwise.grouped and depthwise.in_channels(0, 16) == 16
    assert LayerConfig.of(nn.Conv2d(4, 8, 3, padding="same"), (1, 4, 6, 6)) is None
    assert LayerConfig.of(nn.BatchNorm2d(4), (1, 4, 6, 6)) is None


@pytest.mark.parametrize("name", [n for n in RUNTIMES if n != "torch_compile"])
def test_contract_runtimes(name: str) -> None:
    """Every runtime runs a model and a lone layer, names its version, and times side by side."""
    runtime = RUNTIMES.get(name)
    if runtime.missing() is not None:
        pytest.skip(runtime.missing())
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2)).eval()
    x = torch.randn(2, 3, 6, 6)
    call = runtime.prepare(model, (x,), 1)
    expected = model(x).detach()
    with torch.no_grad():
        model[0].weight.zero_()  # a later change to the model (pruning it in place) must not reach the prepared snapshot
    out = call()
    torch.testing.assert_close(torch.as_tensor(out[0] if isinstance(out, list) else out), expected, rtol=1e-4, atol=1e-5)
    runtime.layer(CONFIGS[0], 8, 8, 2, 1)()
    assert runtime.version()
    check = measured_speedup(model, model, (x,), name, repeats=3, min_time_s=0.0)
    assert check.runtime == name and check.batch_size == 2 and check.dense_ms > 0 and check.pruned_ms > 0
