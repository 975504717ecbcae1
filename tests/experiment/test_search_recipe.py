"""``prune.search`` in a structured recipe: ratios searched on the validation split, then pruned to, resumably."""

from __future__ import annotations

import json

import pytest

from prunekit.errors import ConfigError
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe

from tests.experiment.recipes import tiny_recipe


def _raw(**prune) -> dict:
    raw = tiny_recipe()
    raw["model"] = {"name": "conv2"}
    raw["train"]["epochs"] = 1
    raw["prune"] = {"method": "structured", "macs_reduction": 2.0, "round_to": 1, "baselines": ["l2:global"],
                    "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}},
                    "search": {"strategy": "evolutionary", "trials": 4, "bn_batches": 1, "val_batches": 1}, **prune}
    return raw


def test_a_searched_recipe_prunes_to_the_searched_ratios_and_resumes(tmp_path):
    run = run_recipe(load_recipe(_raw()), tmp_path, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert {r["method"] for r in summary["curve"]} == {"l2 (search-evolutionary)", "l2 (global)"}
    searched = json.loads((run / "search" / "evolutionary.json").read_text())
    assert searched["cost"] <= searched["goal"] == searched["dense_cost"] / 2 and len(searched["trials"]) == 4
    final = [r for r in summary["curve"] if r["method"] == "l2 (search-evolutionary)"][-1]
    assert final["macs_reduction"] == pytest.approx(searched["dense_cost"] / searched["cost"])
    assert any("searched by the evolutionary strategy" in n for n in summary["notes"])
    for name in ("steps/prune.json", "steps/evaluate.json", "summary.json"):
        (run / name).unlink()
    log = (run / "search" / "evolutionary" / "evolutionary_trials.jsonl").read_text()
    run_recipe(load_recipe(_raw()), tmp_path, progress=False)
    assert (run / "search" / "evolutionary" / "evolutionary_trials.jsonl").read_text() == log  # no candidate scored again
    assert "0 scored now" in " ".join(json.loads((run / "summary.json").read_text())["notes"])


def test_search_needs_a_resource_target_and_a_validation_split(tmp_path):
    with pytest.raises(ValueError, match="search needs a resource target"):
        load_recipe(_raw(macs_reduction=None, ratio=0.5))
    with pytest.raises(ValueError, match="unknown search strategy 'amc'"):
        load_recipe(_raw(search={"strategy": "amc"}))
    raw = _raw()
    raw["data"]["val_fraction"] = 0.0
    with pytest.raises(ConfigError, match="validation split"):
        run_recipe(load_recipe(raw), tmp_path, progress=False)
