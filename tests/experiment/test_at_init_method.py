"""``method: at_init`` end to end (CLI, tiny synthetic digits run) and its recipe validation."""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from prunekit.cli.app import app
from prunekit.experiment.recipe import load_recipe

from tests.experiment.recipes import tiny_recipe


def _raw(**prune):
    raw = tiny_recipe()
    raw["train"]["epochs"] = 1
    raw["prune"] = {"method": "at_init", "criterion": "snip", "sparsity": 0.9, "baselines": ["random_same_density"], **prune}
    raw["evaluate"] = {"latency": False}
    return raw


def test_cli_runs_a_tiny_at_init_recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_raw()))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output
    [run] = (tmp_path / "runs").glob("tiny-*")
    summary = json.loads((run / "summary.json").read_text())
    pruned = {r["method"]: r for r in summary["curve"] if r["round"] == 1}
    assert set(pruned) == {"snip (at init)", "random (snip's layer densities, at init)"}
    assert all(r["fraction_remaining"] == pytest.approx(0.1, abs=1e-4) for r in pruned.values())
    layers = {r["name"]: r for r in summary["layers"]}
    assert set(layers) == {"fc1.weight", "fc2.weight", "fc3.weight"}


@pytest.mark.parametrize(
    "prune, expected",
    [
        ({"criterion": "snipp"}, "unknown unstructured criterion 'snipp'"),
        ({"baselines": ["magic"]}, "baseline 'magic': unknown unstructured criterion 'magic'"),
        ({"init": "he"}, "prune.at_init.init"),
        ({"sparsity": 1.0}, "less than 1"),
        ({"batches": 0}, "greater than or equal to 1"),
        ({"train": {"epochs": 1}}, "prune.at_init.train"),
    ],
)
def test_at_init_recipe_names_the_bad_setting(prune, expected):
    with pytest.raises(ValidationError, match=expected):
        load_recipe(_raw(**prune))


def test_the_shipped_snip_recipe_loads():
    recipe = load_recipe("snip_lenet300")
    assert recipe.prune.method == "at_init" and recipe.prune.criterion == "snip" and recipe.prune.sparsity == 0.98
    assert recipe.prune.variants() == ["snip", "synflow", "random", "random_same_density"]
