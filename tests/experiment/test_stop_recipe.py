"""``prune.stop`` in recipes: validated with its field path, ends the steps early, recorded in summary.json."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from prunekit.errors import ConfigError
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe

from tests.experiment.recipes import tiny_recipe


def _structured(**prune) -> dict:
    raw = tiny_recipe()
    raw["model"] = {"name": "conv2"}
    raw["prune"] = {"method": "structured", "ratio": 0.75, "steps": 3, "importance": "l2",
                    "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}, **prune}
    return raw


def test_structured_recipe_stops_at_the_macs_target_and_the_summary_says_so(tmp_path) -> None:
    run = run_recipe(load_recipe(_structured(stop={"min_macs_reduction": 1.5})), tmp_path, progress=False)
    s = json.loads((run / "summary.json").read_text())
    stop = s["stop"]
    assert stop["condition"] == {"min_macs_reduction": 1.5, "latency_batch_size": 1, "latency_threads": 1, "metric_name": "metric",
                                 "patience": 0, "restore_best": True}
    assert stop["method"] == "l2 (uniform)" and stop["stopped_at"] == stop["last_good_step"] < 2
    assert stop["stop_reason"].startswith(f"step {stop['stopped_at']} reached the target: MACs reduction")
    steps = [r for r in s["curve"] if r["round"] > 0]
    assert len(steps) == stop["stopped_at"] + 1 and steps[-1]["macs_reduction"] >= 1.5
    assert not (run / "structured" / "l2-uniform" / "step_02").exists()
    assert s["dense"]["macs"] / s["pruned"]["macs"] == pytest.approx(steps[-1]["macs_reduction"], rel=1e-6)
    assert any(note.startswith("stop condition (l2 (uniform)): step") for note in s["notes"])


def test_unstructured_recipe_stops_at_the_parameter_target(tmp_path) -> None:
    raw = tiny_recipe(stop={"min_params_reduction": 2.0}, baselines=[])
    s = json.loads((run_recipe(load_recipe(raw), tmp_path, progress=False) / "summary.json").read_text())
    assert s["stop"]["stopped_at"] == s["stop"]["last_good_step"] == 0  # round 0 (60% of the weights) already halves them
    assert [r["round"] for r in s["curve"]] == [0, 1]
    assert s["stop"]["variants"]["magnitude (global)"]["checks"][0]["measures"]["params"] == s["pruned"]["nonzero_params"]


def test_an_empty_stop_section_fails_with_its_path() -> None:
    with pytest.raises(ValidationError) as info:
        load_recipe(_structured(stop={}))
    assert "prune.structured.stop" in str(info.value) and "StopCondition names no condition" in str(info.value)


def test_an_accuracy_limit_without_a_validation_split_says_how_to_fix(tmp_path) -> None:
    raw = tiny_recipe(stop={"max_accuracy_drop": 0.5}, baselines=[])
    raw["data"]["val_fraction"] = 0
    raw["train"]["epochs"] = 1
    with pytest.raises(ConfigError, match="set data.val_fraction above 0"):
        run_recipe(load_recipe(raw), tmp_path, progress=False)


def test_structured_recipe_stops_at_a_latency_target_measured_on_the_named_runtime(tmp_path) -> None:
    stop = {"min_latency_reduction": 1.0001, "latency_runtime": "torch", "latency_batch_size": 4}
    s = json.loads((run_recipe(load_recipe(_structured(stop=stop)), tmp_path, progress=False) / "summary.json").read_text())
    checks = s["stop"]["variants"]["l2 (uniform)"]["checks"]
    assert all(c["measures"]["latency_ms"] > 0 and c["measures"]["latency_reduction"] > 0 for c in checks)
    assert s["stop"]["condition"]["latency_runtime"] == "torch" and s["stop"]["condition"]["latency_batch_size"] == 4


def test_a_latency_stop_on_masked_pruning_is_refused_with_the_reason(tmp_path) -> None:
    raw = tiny_recipe(stop={"max_latency_ms": 1.0}, baselines=[])
    with pytest.raises(ConfigError, match="a masked model runs at dense speed"):
        run_recipe(load_recipe(raw), tmp_path, progress=False)
