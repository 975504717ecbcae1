"""Latency targets and runtimes in recipes: validation, the staircase in summary and report, the runtime timings use."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import prunekit.experiment.methods.structured as structured_method
from prunekit.deployment.latency_tables import Staircase
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe

from tests.experiment.test_structured_method import _structured


def test_latency_fields_are_recipe_settings() -> None:
    raw = _structured(importance="l2", steps=1, latency_reduction=1.5, runtime="torch", batch_size=8)
    del raw["prune"]["ratio"]
    recipe = load_recipe(raw)
    assert recipe.prune.latency_target and recipe.prune.resolved_allocation == "knapsack" and recipe.prune.batch_size == 8


@pytest.mark.parametrize("prune, evaluate, message", [
    ({"runtime": "tvm"}, {}, "unknown runtime 'tvm'"),
    ({}, {"latency_runtime": "tvm"}, "unknown runtime 'tvm'"),
    ({"baselines": ["l1:knapsack"]}, {}, "knapsack"),
])
def test_unknown_runtimes_and_bad_allocations_are_refused(prune, evaluate, message) -> None:
    raw = _structured(**prune)
    raw["evaluate"] = {**raw.get("evaluate", {}), **evaluate}
    with pytest.raises((ValidationError, ValueError), match=message):
        load_recipe(raw)


def test_auto_rounding_records_the_staircase_and_times_on_the_prune_runtime(tmp_path, monkeypatch) -> None:
    counts = list(range(33, 66))
    staircase = Staircase(8, counts, [1.0 + c // 8 for c in counts], [1.0 + c // 8 for c in counts])
    monkeypatch.setattr(structured_method, "measure_staircase", lambda *a, **k: staircase)
    monkeypatch.delenv("PRUNEKIT_CHANNEL_STEP")
    monkeypatch.setattr("prunekit.pruners.latency.measure_staircase", lambda *a, **k: staircase)
    raw = _structured(importance="l2", steps=1, ratio=0.5, runtime="torch")
    raw["evaluate"] = {**raw.get("evaluate", {}), "latency_batch_size": 4, "latency_repeats": 2}
    run = run_recipe(load_recipe(raw), tmp_path, progress=False)
    s = json.loads((run / "summary.json").read_text())
    assert s["staircase"]["step"] == 8 and s["staircase"]["runtime"] == "torch"
    assert s["latency_runtime"] == "torch"
    assert all(r["channels_after"] % 8 == 0 for r in s["layers"] if r["channels_after"] != r["channels_before"])
    assert (run / "plots" / "channel_staircase.png").exists()
    assert any("channel staircase of torch (step 8" in n for n in s["notes"])
    own = s["staircase"]["layers"]  # the dense model's own costliest layers, measured on the runtime
    assert 1 <= len(own) <= 3
    widths = {r["name"]: r["channels_before"] for r in s["layers"]}
    for name, data in own.items():
        assert data["counts"][-1] == widths[name] and data["counts"][0] == max(1, widths[name] // 2)
        assert len(data["ms"]) == len(data["counts"]) and all(ms > 0 for ms in data["ms"])
    assert (run / "plots" / "layer_staircases.png").exists()
