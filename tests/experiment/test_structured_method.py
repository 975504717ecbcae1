import json

import pytest
import torch

from prunekit.experiment.artifacts import load_model
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.metrics import count_parameters

from tests.experiment.recipes import tiny_recipe


def _structured(**prune) -> dict:
    raw = tiny_recipe()
    raw["model"] = {"name": "conv2"}
    raw["prune"] = {"method": "structured", "ratio": 0.5, "steps": 2, "importance": "taylor", "calibration_batches": 2,
                    "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}, **prune}
    return raw


@pytest.fixture(scope="module")
def structured_run(tmp_path_factory):
    raw = _structured(baselines=["random:uniform", "activation"],
                      sparsity_learning={"kind": "group_lasso", "lam": 1e-4, "train": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}})
    return run_recipe(load_recipe(raw), tmp_path_factory.mktemp("runs"), progress=False)


def test_structured_run_makes_a_smaller_plain_model(structured_run):
    s = json.loads((structured_run / "summary.json").read_text())
    assert s["pruned"]["params"] < 0.5 * s["dense"]["params"]
    assert s["pruned"]["macs"] < s["dense"]["macs"]
    assert s["pruned"]["nonzero_params"] <= s["pruned"]["params"]
    channels = {r["name"]: (r["channels_before"], r["channels_after"]) for r in s["layers"]}
    assert channels["features.0"] == (64, 32) and channels["features.2"] == (64, 32)
    assert channels["classifier.4"] == (10, 10)  # the output layer is never pruned
    methods = {r["method"] for r in s["curve"]}
    assert methods == {"taylor (uniform, after sparsity learning)", "random (uniform)", "activation (uniform)"}
    assert (structured_run / "plots" / "layer_channels.png").exists()


def test_each_variants_allocation_is_recorded_side_by_side_and_plotted(structured_run):
    s = json.loads((structured_run / "summary.json").read_text())
    alloc = s["allocations"]
    assert alloc["layers"] == [r["name"] for r in s["layers"]]
    assert set(alloc["kept_fraction"]) == {r["method"] for r in s["curve"]}
    main = alloc["kept_fraction"]["taylor (uniform, after sparsity learning)"]
    assert main == [r["channels_after"] / r["channels_before"] for r in s["layers"]]  # the main variant is the pruned model
    assert all(len(v) == len(alloc["layers"]) and all(0 < f <= 1 for f in v) for v in alloc["kept_fraction"].values())
    assert (structured_run / "plots" / "allocations.png").exists()


def test_saved_structured_model_rebuilds_without_pickle(structured_run):
    model, description = load_model(structured_run / "checkpoints" / "pruned")
    assert "architecture" in description
    assert model.features[0].out_channels == 32
    s = json.loads((structured_run / "summary.json").read_text())
    assert count_parameters(model).params == s["pruned"]["params"]
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_interrupted_step_resumes_to_the_same_model(tmp_path):
    raw = _structured(importance="hessian", steps=2)
    recipe = load_recipe(raw)
    first = run_recipe(recipe, tmp_path / "a", progress=False)
    step = first / "structured" / "hessian-uniform" / "step_01"
    # simulate a kill during step 1's fine-tuning: its results are gone, its checkpoint remains
    for name in ("record.json", "architecture.json", "weights.safetensors"):
        (step / name).unlink()
    for name in ("steps/prune.json", "steps/evaluate.json", "summary.json"):
        (first / name).unlink()
    before = json.loads((first / "steps" / "dense.json").read_text())
    second = run_recipe(recipe, tmp_path / "a", progress=False)
    assert second == first and json.loads((first / "steps" / "dense.json").read_text()) == before
    again = run_recipe(recipe, tmp_path / "b", progress=False)
    a = json.loads((first / "summary.json").read_text())
    b = json.loads((again / "summary.json").read_text())
    assert a["curve"] == b["curve"] and a["pruned"]["params"] == b["pruned"]["params"]


def test_macs_target_is_met_within_tolerance(tmp_path):
    raw = _structured(importance="l2", steps=1, macs_reduction=2.0, round_to=1)
    del raw["prune"]["ratio"]
    s = json.loads((run_recipe(load_recipe(raw), tmp_path, progress=False) / "summary.json").read_text())
    assert s["dense"]["macs"] / s["pruned"]["macs"] == pytest.approx(2.0, rel=0.02)


def test_unknown_structured_criterion_names_allowed_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown group criterion 'l3'; allowed values: activation, apoz, bn_scale, fpgm, hessian, l1, l2, random, taylor"):
        load_recipe(_structured(importance="l3"))


def test_recipe_layer_round_to_overrides_round_to(tmp_path):
    raw = _structured(importance="l2", steps=1, ratio=0.4, round_to=16, layer_round_to={"features.0": 8})
    s = json.loads((run_recipe(load_recipe(raw), tmp_path, progress=False) / "summary.json").read_text())
    channels = {r["name"]: r["channels_after"] for r in s["layers"]}
    assert channels["features.0"] == 40  # 64 - 25 = 39 kept, rounded to a multiple of 8
    assert channels["features.2"] == 32  # the same 39, rounded to a multiple of 16


def test_a_structured_model_compresses_into_a_file_that_decompresses_bit_identically(structured_run):
    from typer.testing import CliRunner

    from prunekit.cli.app import app

    result = CliRunner().invoke(app, ["compress", str(structured_run), "-q"])
    assert result.exit_code == 0, result.output
    record = json.loads((structured_run / "steps" / "compress.json").read_text())
    assert record["bit_identical"] and record["predictions_identical"]
