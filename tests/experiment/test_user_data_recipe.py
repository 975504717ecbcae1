"""Recipes on your own data: data-section validation, ``check`` and an end-to-end run on an image folder."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from prunekit.experiment.check import check_recipe
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe

from tests.experiment.recipes import tiny_recipe
from tests.zoo.image_folders import make_class_folders


def folder_recipe(root, **data):
    recipe = tiny_recipe()
    recipe["data"] = {"name": "imagefolder", "path": str(root), "image_size": 8, "num_workers": 0, "batch_size": 16, **data}
    recipe["train"] = {"epochs": 8, "optimizer": {"name": "sgd", "lr": 0.1}}
    recipe["prune"].update(sparsity=0.5, schedule={"name": "one_shot", "sparsity": 0.5}, baselines=[])
    recipe["evaluate"] = {"latency": False, "corruptions": ["contrast"]}
    return recipe


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "digits", "image_size": 8}, "image_size applies to imagefolder only, not to the registered dataset 'digits'"),
    ({"name": "digits", "path": "x"}, "path applies to imagefolder, arrays only"),
    ({"name": "imagefolder", "path": "x", "download": False}, "download applies to registered datasets only, not to imagefolder data"),
    ({"name": "imagefolder", "path": "x", "layout": "nhwc"}, "layout applies to arrays, factory only, not to imagefolder data"),
    ({"name": "arrays", "path": "x", "cache_mb": 10}, "cache_mb applies to imagefolder only, not to arrays data"),
    ({"name": "imagefolder"}, "name 'imagefolder' needs path"),
    ({"name": "imagefolder:photos"}, "write name: imagefolder and path: photos"),
    ({"name": "imagefolder", "path": "x", "mean": [0.5]}, "give both mean and std"),
    ({"name": "imagefolder", "path": "x", "channels": 2}, "Input should be 1 or 3"),
    ({"name": "tests.zoo.user_factories:nothing"}, "cannot import dataset factory"),
])
def test_data_settings_that_do_not_apply_are_errors(data, message):
    recipe = tiny_recipe()
    recipe["data"] = data
    with pytest.raises(ValidationError, match=message):
        load_recipe(recipe)


def test_a_factory_in_a_foreign_recipe_is_refused_unless_code_is_allowed():
    recipe = tiny_recipe()
    recipe["data"] = {"name": "tests.zoo.user_factories:blobs", "kwargs": {"n": 40}}
    assert load_recipe(recipe).data.kind == "factory"
    with pytest.raises(ValidationError, match="is user code; it is imported only when you allow it"):
        load_recipe(recipe, allow_code=False)


def test_check_reads_shapes_from_the_folder_and_writes_nothing(tmp_path, monkeypatch):
    root = make_class_folders(tmp_path / "photos", per_class=3, classes=("a", "b", "c", "d"))
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path / "cache"))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    model = check_recipe(load_recipe(folder_recipe(root, channels=1)), tmp_path / "runs")
    assert model.fc3.out_features == 4 and model.fc1.in_features == 1 * 8 * 8
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no run directory, no cache
    recipe = tiny_recipe()
    recipe["data"] = {"name": "tests.zoo.user_factories:blobs", "kwargs": {"classes": 5}}
    assert check_recipe(load_recipe(recipe), tmp_path / "runs").fc3.out_features == 5


def test_a_recipe_runs_end_to_end_on_an_image_folder(tmp_path, monkeypatch):
    root = make_class_folders(tmp_path / "photos", per_class=12)
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path / "cache"))
    run = run_recipe(load_recipe(folder_recipe(root, augment=False, test_fraction=0.25)), tmp_path / "runs", progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run"]["dataset"] == "imagefolder"
    assert summary["per_class"]["classes"] == ["ant", "bee", "cat"]
    assert summary["dense"]["accuracy"] == 1.0  # the red channel gives the class away
    assert "image folder" in (run / "report.md").read_text()
    assert len(list((tmp_path / "cache" / "decoded").glob("*.safetensors"))) == 1
