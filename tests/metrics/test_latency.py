"""measure_latency / compare_latency: the statistics logic under a scripted clock (no real timing).

The module's clock is replaced by one that only moves when a target runs, by a duration the test
chooses; so every sample is known exactly and the expected medians are written out by hand.
Durations are binary fractions (1/1024 s, ...) so that sums of them are exact floats.
"""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prunekit.metrics import Latency, compare_latency, measure_latency
from prunekit.metrics import latency as latency_module

MS = 1e3


class ScriptedClock:
    """``perf_counter`` that advances only through :meth:`spend`."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> ScriptedClock:
    fake = ScriptedClock()
    monkeypatch.setattr(latency_module, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def scripted(clock: ScriptedClock, durations: list[float], log: list | None = None, name: str = ""):
    """A callable spending ``durations[i]`` seconds on its i-th call (the last one repeats)."""
    calls = []

    def target(*args):
        clock.spend(durations[min(len(calls), len(durations) - 1)])
        calls.append(args)
        if log is not None:
            log.append(name)

    target.calls = calls
    return target


def test_median_of_known_samples_with_warmup_excluded(clock) -> None:
    # 3 warm-up calls of 100 s each, then 5 timed calls of 1, 3, 2, 5, 4 (×1/1024 s)
    unit = 1 / 1024
    target = scripted(clock, [100.0] * 3 + [1 * unit, 3 * unit, 2 * unit, 5 * unit, 4 * unit])
    result = measure_latency(target, torch.zeros(1), warmup=3, repeats=5)
    assert len(target.calls) == 3 + 5
    assert result.repeats == 5
    assert result.median_ms == 3 * unit * MS  # sorted 1 2 3 4 5: the middle one; the 100 s warm-ups never count
    assert result.p10_ms == 1 * unit * MS
    assert result.p90_ms == 5 * unit * MS


def test_median_of_an_even_count_is_the_mean_of_the_middle_two(clock) -> None:
    unit = 1 / 1024
    target = scripted(clock, [4 * unit, 1 * unit, 8 * unit, 2 * unit])
    assert measure_latency(target, torch.zeros(1), warmup=0, repeats=4).median_ms == (2 + 4) / 2 * unit * MS


def test_percentiles_bracket_the_median_and_ignore_outliers(clock) -> None:
    # 30 samples (the default count): 1..30 ms in shuffled order; then one 10 s outlier added
    unit = 1 / 1024
    order = [(7 * i) % 30 + 1 for i in range(30)]  # 7 is coprime with 30: a permutation of 1..30
    assert sorted(order) == list(range(1, 31))
    result = measure_latency(scripted(clock, [v * unit for v in order]), torch.zeros(1), warmup=0)
    assert result.repeats == 30
    assert result.median_ms == (15 + 16) / 2 * unit * MS
    # nearest-rank p10/p90 of 30 samples: the 3rd/27th (or the next rank, by convention)
    assert result.p10_ms / (unit * MS) in (3, 4)
    assert result.p90_ms / (unit * MS) in (27, 28)
    with_outlier = measure_latency(scripted(clock, [v * unit for v in order] + [10.0]), torch.zeros(1), warmup=0, repeats=31)
    assert with_outlier.median_ms == 16 * unit * MS


def test_side_by_side_ratio_of_medians(clock) -> None:
    unit = 1 / 1024
    log: list[str] = []
    slow = scripted(clock, [2 * unit], log, "slow")
    fast = scripted(clock, [1 * unit], log, "fast")
    result = compare_latency({"slow": slow, "fast": fast}, torch.zeros(1), warmup=2, repeats=10)
    assert set(result) == {"slow", "fast"}
    assert len(slow.calls) == len(fast.calls) == 2 + 10
    assert result["slow"].median_ms / result["fast"].median_ms == 2.0
    assert result["slow"].repeats == result["fast"].repeats == 10


def test_rounds_rotate_the_order_of_the_targets(clock) -> None:
    log: list[str] = []
    targets = {name: scripted(clock, [1 / 1024], log, name) for name in "abc"}
    compare_latency(targets, torch.zeros(1), warmup=1, repeats=4)
    assert log == list("abc") + list("abc") + list("bca") + list("cab") + list("abc")  # warm-up, then rounds 0..3


def test_interleaving_cancels_a_steady_drift_in_machine_load(clock) -> None:
    """Every call is slower than the one before (load grows); side by side, the ratio stays ≈ 2."""
    calls = [0]
    unit = 1 / 1024

    def drifting(base: float):
        def target(*args):
            calls[0] += 1
            clock.spend(base * unit * (1 + calls[0] / 64))

        return target

    result = compare_latency({"a": drifting(2.0), "b": drifting(1.0)}, torch.zeros(1), warmup=0, repeats=40)
    assert result["a"].median_ms / result["b"].median_ms == pytest.approx(2.0, rel=0.02)


def test_min_time_extends_the_rounds(clock) -> None:
    target = scripted(clock, [0.25])  # a quarter of a second per call
    timed = compare_latency({"t": target}, torch.zeros(1), warmup=0, repeats=2, min_time_s=1.0)["t"]
    assert timed.repeats == 4  # 2 rounds are not enough: 4 × 0.25 s reach 1 s
    assert compare_latency({"t": scripted(clock, [0.25])}, torch.zeros(1), warmup=0, repeats=6, min_time_s=1.0)["t"].repeats == 6


def test_inputs_are_passed_positionally_and_modules_run_in_eval_and_inference_mode(clock) -> None:
    seen = []

    class Probe(nn.Module):
        def forward(self, x, y):
            seen.append((x, y, self.training, torch.is_inference_mode_enabled()))
            clock.spend(1 / 1024)
            return x + y

    x, y = torch.ones(2), torch.zeros(2)
    model = Probe().train()
    measure_latency(model, (x, y), warmup=1, repeats=2)
    assert len(seen) == 3
    assert all(a is x and b is y and not training and inference for a, b, training, inference in seen)

    single = scripted(clock, [1 / 1024])
    measure_latency(single, x, warmup=0, repeats=1)
    assert single.calls == [(x,)]


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 5), (0, 0)])
def test_bad_counts_are_refused(warmup, repeats) -> None:
    with pytest.raises(ValueError, match="need warmup >= 0 and repeats >= 1"):
        measure_latency(lambda x: x, torch.zeros(1), warmup=warmup, repeats=repeats)


def test_latency_to_dict() -> None:
    assert Latency(1.5, 1.0, 2.0, 3).to_dict() == {"median_ms": 1.5, "p10_ms": 1.0, "p90_ms": 2.0, "repeats": 3}

