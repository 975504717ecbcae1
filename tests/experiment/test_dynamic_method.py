"""``method: dynamic`` in recipes: validation errors, and a tiny run (static then gates) saved, rebuilt and summarised."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError

from prunekit.dynamic import GatedModel
from prunekit.experiment.artifacts import load_model
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe

from tests.experiment.recipes import tiny_recipe


def _dynamic(**settings):
    raw = tiny_recipe()
    raw["model"] = {"name": "resnet20"}
    raw["train"]["epochs"] = 1
    raw["prune"] = {"method": "dynamic", "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}, **settings}
    return raw


@pytest.mark.parametrize(("settings", "message"), [
    ({"density": 0}, "density\n  Input should be greater than 0"),
    ({"density": 1.5}, "density\n  Input should be less than or equal to 1"),
    ({"budget_weight": -1}, "budget_weight\n  Input should be greater than or equal to 0"),
    ({"groups": []}, "groups\n  Tuple should have at least 1 item"),
    ({"static": {"macs_reduction": 2.0, "ratio": 0.5}}, "static"),
    ({"gates": 3}, "gates\n  Extra inputs are not permitted"),
])
def test_invalid_dynamic_settings_are_rejected(settings, message):
    with pytest.raises(ValidationError, match=message):
        load_recipe(_dynamic(**settings))


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory):
    raw = _dynamic(density=0.5, static={"macs_reduction": 1.5, "round_to": 1}, budget_weight=1e-3)
    return run_recipe(load_recipe(raw), tmp_path_factory.mktemp("runs"), progress=False)


@pytest.mark.slow
def test_static_then_dynamic_run_reports_gates_and_rebuilds(dynamic_run):
    s = json.loads((dynamic_run / "summary.json").read_text())
    dyn = s["dynamic"]
    assert [r["method"] for r in s["curve"]] == ["static+dynamic", "static+dynamic"]
    assert len(s["layers"]) == 9 and all(0 < r["gate_rate"] <= math.ceil(0.5 * r["channels"]) / r["channels"] for r in s["layers"])  # 9 block interiors
    assert dyn["mean_macs"] < dyn["dense_macs_of_unpruned"] / 1.5 and sum(dyn["histogram"]["counts"]) == dyn["inputs"]
    assert set(dyn["latency_b1_ms"]) == {"dense", "skip path"}
    model, description = load_model(dynamic_run / "checkpoints" / "pruned")
    assert isinstance(model, GatedModel) and "architecture" in description and len(description["gated"]["sites"]) == 9
    model.eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
