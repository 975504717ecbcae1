import json

import pytest
import torch

from prunekit.experiment.artifacts import load_model
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_dir_for, run_recipe
from prunekit.masks import MaskSet

from tests.experiment.recipes import tiny_recipe


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    recipe = load_recipe(tiny_recipe(), ["compress.fc_bits=5", "compress.finetune.epochs=1", "export.int8=true", "deploy.force=sparse", "deploy.batch_size=16"])
    return recipe, run_recipe(recipe, out, progress=False)


def test_run_directory_holds_everything(finished_run):
    _, run = finished_run
    for name in ("recipe.yaml", "environment.json", "metrics.jsonl", "summary.json", "report.md", "report.html",
                 "compressed.pkdc", "export/model.onnx", "export/model.int8.onnx", "checkpoints/dense.safetensors", "checkpoints/pruned.safetensors", "plots/accuracy_vs_remaining.png"):
        assert (run / name).exists(), name
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img alt='accuracy_vs_remaining.png'" in html


def test_summary_reports_dense_and_pruned(finished_run):
    _, run = finished_run
    s = json.loads((run / "summary.json").read_text())
    for side in ("dense", "pruned"):
        for key in ("accuracy", "params", "nonzero_params", "macs", "effective_macs", "disk_bytes", "disk_compressed_bytes"):
            assert key in s[side], (side, key)
    prunable = s["pruned"]["prunable_params"]
    assert s["pruned"]["nonzero_prunable_params"] == prunable - round(0.8 * prunable)  # exact global sparsity
    assert s["theoretical_speedup"] == pytest.approx(s["dense"]["macs"] / s["pruned"]["effective_macs"])
    assert s["compression_ratio"] == pytest.approx(s["dense"]["params"] / s["pruned"]["nonzero_params"])
    assert {r["method"] for r in s["curve"]} == {"magnitude (global)", "random (global)"}
    assert set(s["pruned"]["corruption_accuracy"]) == {"gaussian_noise", "blur", "contrast"}
    mean = sum(s["pruned"]["corruption_accuracy"].values()) / 3
    assert s["corruption_summary"]["mean"]["pruned"] == pytest.approx(mean)
    assert set(s["corruption_summary"]["families"]) == {"noise", "blurring", "digital"}
    assert s["prune_potential"]["delta"] == 0.005 and set(s["prune_potential"]["methods"]) == {"magnitude (global)", "random (global)"}
    assert s["compression"]["file_bytes"] == (run / "compressed.pkdc").stat().st_size
    assert s["compression"]["bit_identical"] and s["compression"]["predictions_identical"]
    assert s["compression"]["accuracy_decompressed"] == s["compression"]["accuracy_quantized"]
    assert s["export"]["onnx"]["accuracy"] == pytest.approx(s["pruned"]["accuracy"], abs=0.01)
    assert s["export"]["int8"]["bytes"] < s["export"]["onnx"]["bytes"]
    assert set(s["export"]["latency_ms"]) == {"torch eager", "onnxruntime", "onnxruntime int8"}
    assert s["deploy"]["converted"] == ["fc1", "fc2", "fc3"] and s["deploy"]["max_abs_error"] < 1e-4
    assert s["deploy"]["test_accuracy"] == pytest.approx(s["pruned"]["accuracy"], abs=1e-3)


def test_saved_pruned_model_reloads_with_masks(finished_run):
    _, run = finished_run
    model, description = load_model(run / "checkpoints" / "pruned", attach_masks=True)
    assert description["name"] == "lenet_300_100" and description["input_shape"] == [1, 8, 8]
    assert MaskSet.from_model(model).sparsity() == pytest.approx(0.8, abs=1e-4)


def test_rerun_skips_finished_steps(finished_run):
    recipe, run = finished_run
    stamps = {p: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    assert run_recipe(recipe, run.parent, progress=False) == run
    assert {p: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == stamps


def test_run_directory_name_is_a_hash_of_the_resolved_settings():
    a = run_dir_for(load_recipe(tiny_recipe()))
    b = run_dir_for(load_recipe(tiny_recipe(), ["prune.sparsity=0.8"]))  # same value as the default: same run
    c = run_dir_for(load_recipe(tiny_recipe(), ["prune.sparsity=0.7"]))
    assert a.path == b.path != c.path
    assert a.path.name.startswith("tiny-")


@pytest.mark.parametrize("method", ["gradual", "lottery", "nm", "dst"])
def test_other_methods_run_end_to_end(tmp_path, method):
    prune = {
        "gradual": {"method": "gradual", "criterion": "magnitude", "scope": "layer", "sparsity": 0.5,
                    "schedule": {"name": "polynomial_decay", "initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 20, "frequency": 5},
                    "train": {"epochs": 2, "optimizer": {"name": "sgd", "lr": 0.01}}},
        "lottery": {"method": "lottery", "rounds": 2, "rate": 0.5, "controls": ["random_reinit"]},
        "nm": {"method": "nm", "n": 2, "m": 4, "permute": True, "baselines": ["nm_plain", "unstructured"], "finetune": {"epochs": 1}},
        "dst": {"method": "dst", "algorithm": "rigl", "sparsity": 0.8, "delta_t": 5, "train": {"epochs": 2, "optimizer": {"name": "sgd", "lr": 0.05}}},
    }[method]
    raw = tiny_recipe()
    raw["prune"] = prune
    run = run_recipe(load_recipe(raw), tmp_path, progress=False)
    s = json.loads((run / "summary.json").read_text())
    expected = {"gradual": 0.5, "lottery": 0.75, "nm": 0.5, "dst": 0.8}[method]
    assert 1 - s["pruned"]["nonzero_prunable_params"] / s["pruned"]["prunable_params"] == pytest.approx(expected, abs=2e-3)
    if method == "lottery":
        assert {r["method"] for r in s["curve"]} == {"ticket", "random_reinit"}
        ticket, reinit = (next(r for r in s["curve"] if r["method"] == m and r["round"] == 2) for m in ("ticket", "random_reinit"))
        assert ticket["final_accuracy"] != reinit["final_accuracy"]  # a different initialisation trains differently
    if method == "nm":
        from prunekit.masks.nm import is_valid_nm

        assert {r["method"] for r in s["curve"]} == {"2:4 (permuted)", "2:4", "unstructured 50% (layer)"}
        model, _ = load_model(run / "checkpoints" / "pruned", attach_masks=True)
        assert all(is_valid_nm(mask, 2, 4, exact=True) for mask in MaskSet.from_model(model).values())


def test_a_users_own_model_runs_through_a_recipe(tmp_path):
    raw = tiny_recipe(baselines=[], schedule=None, sparsity=0.5)
    raw["model"] = {"name": "tests.experiment.custom_model:build", "kwargs": {"hidden_scale": 2}}
    run = run_recipe(load_recipe(raw, ["compress.fc_bits=4"]), tmp_path, progress=False)
    model, description = load_model(run / "checkpoints" / "pruned", attach_masks=True)
    assert type(model).__name__ == "TwoLayer" and description["kwargs"] == {"hidden_scale": 2}
    assert MaskSet.from_model(model).sparsity() == pytest.approx(0.5, abs=1e-3)


def test_unknown_user_factory_is_a_clear_error():
    from pydantic import ValidationError

    raw = tiny_recipe()
    raw["model"] = {"name": "tests.experiment.custom_model:nope"}
    with pytest.raises(ValidationError, match="cannot import model factory 'tests.experiment.custom_model:nope'"):
        load_recipe(raw)


def test_runs_with_the_same_dense_settings_share_one_dense_training(finished_run):
    recipe, run = finished_run
    other = run_recipe(load_recipe(tiny_recipe(baselines=[], schedule=None, sparsity=0.5)), run.parent, progress=False)
    assert other != run
    first = (run / "checkpoints" / "dense.safetensors").read_bytes()
    assert (other / "checkpoints" / "dense.safetensors").read_bytes() == first
    assert not (other / "checkpoints" / "dense-train.safetensors").exists()  # no training happened
    assert len(list((run.parent / "dense-cache").iterdir())) == 1


def test_run_name_ignores_settings_left_at_their_defaults_but_not_the_method():
    base = load_recipe(tiny_recipe())
    explicit = load_recipe(tiny_recipe(), ["evaluate.corruption_severity=3", "prune.scope=global"])  # both defaults/unchanged
    assert run_dir_for(base).path == run_dir_for(explicit).path
    lottery, gradual = (load_recipe({**tiny_recipe(), "prune": {"method": m}}) for m in ("lottery", "gradual"))
    assert run_dir_for(lottery).path != run_dir_for(gradual).path


@pytest.mark.parametrize("method", ["unstructured", "gradual", "lottery", "nm", "structured", "dst"])
def test_a_resolved_recipe_reloads_to_the_same_recipe(tmp_path, method):
    """open_run (compress/export/report on a run directory) reloads recipe.yaml as written."""
    import yaml

    prune = {"method": method, **({"ratio": 0.5} if method == "structured" else {}), **({"sparsity": 0.8} if method == "dst" else {})}
    recipe = load_recipe({**tiny_recipe(), "prune": prune})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe.resolved()))
    assert load_recipe(path) == recipe


def test_lottery_recipes_take_training_from_the_top_level():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lottery rounds train with the top-level 'train' section"):
        load_recipe({**tiny_recipe(), "prune": {"method": "lottery", "train": {"epochs": 3}}})
