"""``method: depth`` end to end on a tiny run: blocks removed, fine-tuned, saved and rebuilt without pickle."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunekit.experiment.artifacts import load_model
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.metrics import count_parameters

from tests.experiment.recipes import tiny_recipe


@pytest.fixture(scope="module")
def depth_run(tmp_path_factory):
    raw = tiny_recipe()
    raw["model"] = {"name": "resnet20"}
    raw["train"]["epochs"] = 1
    raw["prune"] = {"method": "depth", "blocks": 3, "importance": "output_change", "baselines": ["random", "bn_scale"],
                    "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}}
    return run_recipe(load_recipe(raw), tmp_path_factory.mktemp("runs"), progress=False)


def test_depth_run_removes_blocks_for_every_variant(depth_run):
    s = json.loads((depth_run / "summary.json").read_text())
    assert {r["method"] for r in s["curve"]} == {"depth output_change", "depth random", "depth bn_scale"}
    assert s["pruned"]["macs"] < s["dense"]["macs"] and s["pruned"]["params"] < s["dense"]["params"]
    rows = {r["name"]: r for r in s["layers"]}
    assert len(rows) == 7 and sum(r["removed"] for r in rows.values()) == 3  # ResNet-20: 7 identity-shortcut blocks
    extra = json.loads((depth_run / "steps" / "prune.json").read_text())["extra"]
    assert "layer2.0" not in rows and "shortcut is not the identity" in extra["depth_not_removable"]["layer2.0"]
    assert sorted(extra["depth_removed"]) == sorted(n for n, r in rows.items() if r["removed"])


def test_saved_depth_model_rebuilds_without_pickle(depth_run):
    model, description = load_model(depth_run / "checkpoints" / "pruned")
    s = json.loads((depth_run / "summary.json").read_text())
    removed = json.loads((depth_run / "steps" / "prune.json").read_text())["extra"]["depth_removed"]
    assert "architecture" in description and len(removed) == 3
    assert all(type(model.get_submodule(n)) is nn.ReLU for n in removed)
    assert count_parameters(model).params == s["pruned"]["params"]
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_unknown_depth_baseline_names_allowed_values():
    from pydantic import ValidationError

    raw = tiny_recipe()
    raw["prune"] = {"method": "depth", "blocks": 1, "baselines": ["magnitude"]}
    with pytest.raises(ValidationError, match="unknown depth criterion 'magnitude'; allowed values: bn_scale, l2, output_change, random"):
        load_recipe(raw)
