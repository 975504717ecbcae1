"""Run directories you can trust: the run hash covers the files and code a recipe names, and
--force / --from-step redo steps from their start."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from prunekit._io import save_safetensors
from prunekit.cli.app import app
from prunekit.errors import ConfigError, DataError
from prunekit.experiment import inputs, runner
from prunekit.experiment.artifacts import load_model
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.rundir import STEPS, RunDir
from prunekit.experiment.runner import run_recipe
from prunekit.zoo import create_model

from tests.experiment.recipes import tiny_recipe

STEP_FILES = ("dense", "prune", "evaluate", "compress")


def _no_report(*args, **kwargs):
    """Stands in for the report (its plots took two thirds of a run's time; no test here reads them)."""


@pytest.fixture(autouse=True)
def _fast_runs(monkeypatch):
    monkeypatch.setattr(runner, "write_report", _no_report)


def _raw(data=None, **model):
    raw = tiny_recipe(baselines=[], schedule=None, sparsity=0.5)
    raw["name"] = "inputs"
    raw["train"]["epochs"] = 1
    raw["prune"]["finetune"]["epochs"] = 1
    raw["evaluate"] = {"latency": False, "corruptions": []}
    raw["compress"] = {"fc_bits": 4}
    raw["model"].update(model)
    raw["data"].update(data or {})
    return raw


def _run(raw, out, caplog, **kwargs):
    """Run the recipe; returns (run directory, log messages of this run)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="prunekit.experiment"):  # the CLI sets this logger's own level
        path = run_recipe(load_recipe(raw), out, progress=False, **kwargs)
    return path, [r.getMessage() for r in caplog.records]


def _stamps(run):
    return {step: (run / "steps" / f"{step}.json").stat().st_mtime_ns for step in STEP_FILES}


def _digest(path):
    return inputs.file_digest(path).removeprefix("sha256:")[:8]


def _changed(key, since, old, new):
    return f"{key} changed since {since} ({old} → {new}): starting a new run directory"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The output folder of a finished run of :func:`_raw` (copy it with :func:`_copy` before running again)."""
    out = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "write_report", _no_report)
        run_recipe(load_recipe(_raw()), out, progress=False)
    return out


def _copy(finished, tmp_path):
    """A copy of the finished output folder; returns its run directory."""
    out = shutil.copytree(finished, tmp_path / "runs", symlinks=True)
    (run,) = out.glob("inputs-*")
    return run


def test_unchanged_inputs_reuse_the_run_directory(tmp_path, caplog, finished):
    first = _copy(finished, tmp_path)
    stamps = _stamps(first)
    second, messages = _run(_raw(), first.parent, caplog)
    assert second == first and _stamps(second) == stamps
    assert any(m.startswith("dense model: already trained") for m in messages)
    assert any(m.startswith("pruning: already done") for m in messages)
    assert not any("changed since" in m for m in messages)
    recorded = json.loads((first / "inputs.json").read_text())
    assert recorded["name"] == "inputs" and recorded["inputs"] == {"prunekit": inputs.__version__}


def test_overwritten_checkpoint_starts_a_new_run(tmp_path, caplog):
    checkpoint = tmp_path / "mine.safetensors"

    def write(seed):
        torch.manual_seed(seed)
        weights = create_model("lenet_300_100", 10, (1, 8, 8)).state_dict()
        save_safetensors(checkpoint, weights)
        return weights

    write(1)
    raw = _raw(checkpoint=str(checkpoint))
    first, _ = _run(raw, tmp_path / "runs", caplog)
    old = _digest(checkpoint)
    weights = write(2)
    second, messages = _run(raw, tmp_path / "runs", caplog)
    assert second != first and second.parent == first.parent
    assert _changed("model.checkpoint", first, f"sha256 {old}…", f"{_digest(checkpoint)}…") in messages
    assert f"dense model: loading {checkpoint}" in messages
    dense, _ = load_model(second / "checkpoints" / "dense")
    assert torch.equal(dense.state_dict()["fc1.weight"], weights["fc1.weight"])


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A user's model module ``user_factory_<n>`` in ``tmp_path`` (on the import path); edit it with ``write``."""
    name = f"user_factory_{abs(hash(str(tmp_path))) % 10**8}"
    path = tmp_path / f"{name}.py"

    def write(hidden):
        path.write_text(textwrap.dedent(f"""\
            import math
            from torch import nn

            def build(num_classes, input_shape):
                return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), {hidden}), nn.ReLU(), nn.Linear({hidden}, num_classes))
            """))

    write(16)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:build", path, write
    sys.modules.pop(name, None)


def test_edited_model_factory_starts_a_new_run_and_trains_again(tmp_path, caplog, factory_module):
    spec, path, write = factory_module
    out = tmp_path / "runs"
    first, _ = _run(_raw(name=spec), out, caplog)
    old = _digest(path)
    write(24)
    second, messages = _run(_raw(name=spec), out, caplog)
    assert second != first
    assert _changed("model.name", first, f"sha256 {old}…", f"{_digest(path)}…") in messages
    assert "dense model: training" in messages  # the dense cache of the old code is not reused


def test_new_prunekit_version_starts_a_new_run_and_trains_again(tmp_path, caplog, monkeypatch, finished):
    first = _copy(finished, tmp_path)
    monkeypatch.setattr(inputs, "__version__", "99.0")
    second, messages = _run(_raw(), first.parent, caplog)
    assert second != first
    assert _changed("the prunekit version", first, "0.1.0", "99.0") in messages
    assert "dense model: training" in messages
    assert json.loads((second / "inputs.json").read_text())["inputs"] == {"prunekit": "99.0"}


def _arrays(seed, train=64):
    """Random 8×8 grayscale images of 4 classes: x_train, y_train, x_test, y_test."""
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (train, 1, 8, 8), dtype=np.uint8), "y_train": np.arange(train) % 4,
            "x_test": rng.integers(0, 256, (16, 1, 8, 8), dtype=np.uint8), "y_test": np.arange(16) % 4}


@pytest.mark.parametrize("layout", ["npz file", "npy folder"])
def test_changed_data_starts_a_new_run_and_trains_again(tmp_path, caplog, layout):
    path = tmp_path / ("data.npz" if layout == "npz file" else "arrays")

    def write(seed, train=64):
        if layout == "npz file":
            np.savez(path, **_arrays(seed, train))
        else:
            path.mkdir(exist_ok=True)
            for key, array in _arrays(seed, train).items():
                np.save(path / f"{key}.npy", array)

    write(1)
    raw = _raw(data={"name": "arrays", "path": str(path), "batch_size": 32})
    first, _ = _run(raw, tmp_path / "runs", caplog)
    old = inputs.path_fingerprint(path)
    write(2, train=72)
    second, messages = _run(raw, tmp_path / "runs", caplog)
    new = inputs.path_fingerprint(path)
    kind = "sha256" if layout == "npz file" else "listing"
    assert second != first and new.startswith(f"{kind}:")
    assert _changed("data.path", first, f"{kind} {old[len(kind) + 1:][:8]}…", f"{new[len(kind) + 1:][:8]}…") in messages
    assert "dense model: training" in messages


def _started_over(messages):
    """Nothing of a redone step was resumed (a finished training or round would be: "resuming …", "round 0 already done")."""
    return not any(m.startswith("resuming") or "already done in" in m for m in messages)


def test_force_redoes_every_step_from_its_start(tmp_path, caplog, finished):
    first = _copy(finished, tmp_path)
    stamps = _stamps(first)
    assert (first / "checkpoints" / "dense-train.safetensors").exists()  # a finished training, which would "resume" at its end
    second, messages = _run(_raw(), first.parent, caplog, force=True)
    assert second == first
    assert all(after > stamps[step] for step, after in _stamps(second).items())
    assert "dense model: training" in messages  # not from the dense cache
    assert "pruning: method unstructured" in messages and _started_over(messages)
    assert (first.parent / "dense-cache").is_dir()


def test_from_step_prune_redoes_prune_and_the_later_steps(tmp_path, caplog, finished):
    first = _copy(finished, tmp_path)
    stamps = _stamps(first)
    round_file = first / "rounds" / "magnitude-global" / "round_000" / "record.json"
    round_stamp = round_file.stat().st_mtime_ns
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_raw()))
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(first.parent), "--from-step", "prune"])
    assert result.exit_code == 0, result.output
    after = _stamps(first)
    assert after["dense"] == stamps["dense"] and "dense model: already trained" in result.output
    assert all(after[step] > stamps[step] for step in ("prune", "evaluate", "compress"))
    assert "prune: redoing" in result.output and "pruning: method unstructured" in result.output
    assert round_file.stat().st_mtime_ns > round_stamp  # the round was fine-tuned again, not read back


def test_redo_removes_only_the_redone_steps_resumable_files(tmp_path):
    run = RunDir(tmp_path / "run")
    for name in ("checkpoints/dense-train.safetensors", "checkpoints/nm-plain-train.safetensors", "rounds/a/round_000/train.safetensors",
                 "checkpoints/compress-finetune.safetensors", "steps/dense.json", "steps/prune.json", "steps/compress.json"):
        (run.path / name).parent.mkdir(parents=True, exist_ok=True)
        (run.path / name).write_text("{}")
    run.redo(["prune"])
    left = sorted(p.relative_to(run.path).as_posix() for p in run.path.rglob("*") if p.is_file())
    assert left == ["checkpoints/compress-finetune.safetensors", "checkpoints/dense-train.safetensors", "steps/compress.json", "steps/dense.json"]


def test_force_and_from_step_are_checked():
    with pytest.raises(ConfigError, match=r"unknown step 'train' to redo from; allowed values: dense, prune, evaluate, compress, export, deploy, report"):
        run_recipe(load_recipe(_raw()), "unused", from_step="train")
    with pytest.raises(ConfigError, match="give either force"):
        run_recipe(load_recipe(_raw()), "unused", force=True, from_step="prune")
    assert STEPS[-1] == "report"


def test_cli_refuses_an_unknown_step(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_raw()))
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "runs"), "-q", "--from-step", "fit"])
    assert result.exit_code == 2 and "unknown step 'fit'" in result.output
    assert not (tmp_path / "runs").exists()


def test_file_digest_is_computed_once_per_version_of_a_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 3_000_000)
    misses = inputs._digest.cache_info().misses
    first = inputs.file_digest(path)
    assert inputs.file_digest(path) == first == "sha256:" + hashlib.sha256(b"a" * 3_000_000).hexdigest()
    assert inputs._digest.cache_info().misses == misses + 1
    path.write_bytes(b"b" * 3_000_000)
    assert inputs.file_digest(path) != first


@pytest.mark.parametrize("kind", ["dataset factory", "model factory file"])
def test_factory_fingerprint_follows_the_source_file(tmp_path, kind):
    """A dataset factory (``package.module:function``) and a ``path/to/file.py:function`` model are
    fingerprinted by the source file that defines them (checked without running)."""
    source = tmp_path / "user_code.py"
    body = textwrap.dedent("""\
        import math
        import torch
        from torch import nn

        def data():
            def split(n):
                return torch.rand(n, 1, 8, 8), torch.arange(n) % 4
            return split(32), None, split(8)

        def build(num_classes, input_shape):
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
        """)
    source.write_text(body)
    recipe = tmp_path / "recipe.yaml"
    raw = _raw(data={"name": "user_code:data", "batch_size": 32}) if kind == "dataset factory" else _raw(name="user_code.py:build")
    recipe.write_text(yaml.safe_dump(raw))
    key = "data.name" if kind == "dataset factory" else "model.name"
    try:
        before = inputs.input_fingerprints(load_recipe(recipe))  # imported from the recipe's folder
        assert before[key] == inputs.file_digest(source)
        source.write_text(body + "\n# edited\n")
        after = inputs.input_fingerprints(load_recipe(recipe))
        assert after[key] == inputs.file_digest(source) != before[key]
        assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    finally:
        for name in [m for m in sys.modules if m == "user_code" or m.startswith("prunekit_user_user_code_")]:
            del sys.modules[name]


def test_an_unreadable_data_file_is_a_data_error_naming_it(tmp_path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    (folder / "x_train.npy").symlink_to(tmp_path / "gone.npy")
    recipe = load_recipe(_raw(data={"name": "arrays", "path": str(folder)}))
    with pytest.raises(DataError, match=rf"^data.path: cannot read {folder / 'x_train.npy'}: No such file or directory; check the path in the recipe$"):
        inputs.input_fingerprints(recipe)
