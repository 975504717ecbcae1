"""`prunekit check` and the validation `run` does first: bad input → exit 2/3, a short message
naming the field, nothing written (the cases of issue 13, each reproduced)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from prunekit._io import save_safetensors
from prunekit.cli.app import app
from prunekit.zoo import create_model

from tests.experiment.recipes import tiny_recipe

runner = CliRunner()


def _write(folder: Path, raw: dict | str) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def _invoke(tmp_path: Path, command: str, raw: dict | str, *sets: str):
    """Run ``command`` from an empty working folder; return the result and every path it left."""
    recipe = _write(tmp_path, raw)
    work = tmp_path / "work"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        args = [command, str(recipe), "--out", str(tmp_path / "runs")]
        for s in sets:
            args += ["--set", s]
        result = runner.invoke(app, args)
    finally:
        os.chdir(cwd)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name != "recipe.yaml" and p != work)
    return result, written


def _flat(text: str) -> str:
    return " ".join(text.split())


BAD_SETTINGS = [
    ("train.epochs=.inf", "train.epochs: Input should be a finite number"),
    ("train.epochs=1e999", "train.epochs: Input should be a finite number"),
    ("train.epochs=1e308", "train.epochs: Input should be less than or equal to 100000"),
    ("train.lr_schedule.warmup_epochs=.inf", "train.lr_schedule.warmup_epochs: Input should be a finite number"),
    ("train.optimizer.lr=.inf", "train.optimizer.lr: Input should be a finite number"),
    ("train.optimizer.weight_decay=.nan", "train.optimizer.weight_decay: Input should be a finite number"),
    ("train.epochs=true", "train.epochs: Input should be a valid number (got True)"),
    ("device=banana", "device: unknown device 'banana'; allowed values: cpu, cuda, cuda:N, mps"),
    ("device=tpu", "device: unknown device 'tpu'"),
    ("device=''", "device: unknown device ''"),
    ("seed=1234567890123456789012345678901", "--set 'seed': an integer of 31 digits"),
    ("seed=123456789012", "seed: Input should be less than or equal to 4294967295"),
    ("name=" + "a" * 300, "name: String should have at most 100 characters"),
    ("model.name=os:getcwd", "model.name 'os:getcwd' with model.kwargs {} could not be built"),
    ("model.kwargs={bogus: 1}", "model.kwargs {'bogus': 1} could not be built: TypeError"),
    ("model.name=..x:f", "model.name: model factory '..x:f' must read package.module:function"),
    ("prune.schedule.name=[1]", "prune.schedule: schedule name must be text"),
    ("a..b=1", "--set 'a..b': the dotted key has an empty part"),
    ("prune.overrides={'zzz*': 0.5}", "prune: overrides pattern 'zzz*' matches no pruned parameter"),
    ("prune.exclude=[nothing*]", "prune: exclude pattern 'nothing*' matches no parameter"),
    ("compress={overrides: {'nope*': 4}}", "compress: compression pattern 'nope*' matches no conv/linear weight"),
    ("prune.finetune.checkpoint_every_epochs=1.0", "prune.finetune.checkpoint_every_epochs: Input should be a valid integer"),
    ("data.batch_size=10000000", "data.batch_size: Input should be less than or equal to 65536"),
]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("setting, expected", BAD_SETTINGS)
def test_bad_setting_exits_2_names_the_field_and_writes_nothing(tmp_path, command, setting, expected):
    result, written = _invoke(tmp_path, command, tiny_recipe(), setting)
    assert result.exit_code == 2, result.output
    assert expected in _flat(result.output)
    assert "Traceback" not in result.output
    assert written == []


def test_cuda_device_is_checked_against_this_machine(tmp_path):
    result, written = _invoke(tmp_path, "check", tiny_recipe(), "device=cuda:99")
    assert result.exit_code == 2
    expected = "no CUDA GPU" if not torch.cuda.is_available() else "CUDA GPU(s)"
    assert expected in _flat(result.output) and written == []


def test_long_values_are_truncated_in_messages(tmp_path):
    raw = tiny_recipe()
    raw["name"] = "x" * 100_000
    raw["model"]["name"] = "y" * 100_000
    result, written = _invoke(tmp_path, "run", raw)
    assert result.exit_code == 2 and written == []
    assert len(result.output) < 3000
    assert "(100,000 characters)" in _flat(result.output)


def test_markup_in_user_text_is_printed_verbatim(tmp_path):
    result, _ = _invoke(tmp_path, "check", tiny_recipe(), "model.name=[/bold]nope")
    assert result.exit_code == 2
    assert "[/bold]nope" in result.output and "Traceback" not in result.output


def test_alias_bomb_in_model_kwargs_is_refused(tmp_path):
    bomb = "a0: &a0 [1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    text = yaml.safe_dump(tiny_recipe()).replace("  name: lenet_300_100", "  name: lenet_300_100\n  kwargs: {k: *a9}")
    result, written = _invoke(tmp_path, "run", bomb + text)
    assert result.exit_code == 2 and written == []
    assert "expands to more than 100,000 values" in _flat(result.output)


def test_recipe_path_that_is_a_directory_or_fifo(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, expected in ((tmp_path, "is a directory"), (fifo, "not a regular file")):
        result = runner.invoke(app, ["check", str(path)])
        assert result.exit_code == 2 and expected in _flat(result.output)


def test_missing_and_mismatching_checkpoints_exit_3(tmp_path):
    raw = tiny_recipe()
    raw["model"]["checkpoint"] = str(tmp_path / "missing.safetensors")
    result, written = _invoke(tmp_path, "run", raw)
    assert result.exit_code == 3 and "model.checkpoint: no such file" in _flat(result.output) and written == []

    wrong = {"conv1.weight": torch.zeros(3, 3), "fc1.weight": torch.zeros(5, 5)}
    save_safetensors(tmp_path / "wrong.safetensors", wrong)
    raw["model"]["checkpoint"] = str(tmp_path / "wrong.safetensors")
    result = runner.invoke(app, ["check", str(_write(tmp_path, raw))])
    assert result.exit_code == 3, result.output
    text = result.output
    assert "does not fit model" in text and "fc2.weight: missing from the checkpoint" in text
    assert "fc1.weight: checkpoint shape [5, 5], model shape [300, 64]" in text
    assert "conv1.weight: not in the model" in text and "Traceback" not in text

    (tmp_path / "garbage.safetensors").write_bytes(b"\x00garbage")
    raw["model"]["checkpoint"] = str(tmp_path / "garbage.safetensors")
    result = runner.invoke(app, ["check", str(_write(tmp_path, raw))])
    assert result.exit_code == 3 and "is not a readable safetensors file" in result.output


def test_matching_checkpoint_passes(tmp_path):
    raw = tiny_recipe()
    save_safetensors(tmp_path / "ok.safetensors", create_model("lenet_300_100", 10, (1, 8, 8)).state_dict())
    raw["model"]["checkpoint"] = str(tmp_path / "ok.safetensors")
    result = runner.invoke(app, ["check", str(_write(tmp_path, raw)), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "recipe OK: tiny" in _flat(result.output) and not (tmp_path / "runs").exists()


def test_structured_layer_patterns_are_checked_before_training(tmp_path):
    raw = tiny_recipe(method="structured", ratio=0.5, layer_ratios={"nolayer*": 0.2})
    for key in ("criterion", "scope", "sparsity", "schedule", "baselines"):
        raw["prune"].pop(key)
    result, written = _invoke(tmp_path, "run", raw)
    assert result.exit_code == 2 and written == []
    assert "layer_ratios: pattern(s) ['nolayer*'] match no module" in _flat(result.output)


def test_offline_dataset_without_download_fails_before_any_folder_is_made(tmp_path):
    raw = tiny_recipe()
    raw["data"] = {"name": "mnist", "root": str(tmp_path / "data" / "nested"), "download": False}
    result, written = _invoke(tmp_path, "run", raw)
    assert result.exit_code == 3, result.output
    assert "dataset 'mnist' is not available" in _flat(result.output)
    assert written == []


def test_user_code_in_a_run_directory_is_not_imported_without_trust(tmp_path):
    from pydantic import ValidationError

    from prunekit.experiment.recipe import load_recipe

    raw = tiny_recipe()
    raw["model"]["name"] = "tests.experiment.never_imported:build"
    path = _write(tmp_path, raw)
    with pytest.raises(ValidationError, match=r"is user code; it is imported only when you allow it \(--trust-code\)"):
        load_recipe(path, allow_code=False)
    assert "tests.experiment.never_imported" not in sys.modules


def _run_dir_naming(tmp_path: Path, model_name: str) -> Path:
    """A run directory that looks finished and whose recipe names ``model_name``."""
    run_dir = tmp_path / "run"
    (run_dir / "steps").mkdir(parents=True)
    for step in ("dense", "prune"):
        (run_dir / "steps" / f"{step}.json").write_text("{}")
    raw = tiny_recipe()
    raw["model"]["name"] = model_name
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(raw))
    return run_dir


def test_compress_refuses_user_code_without_trust_flag(tmp_path):
    run_dir = _run_dir_naming(tmp_path, "tests.experiment.never_imported:build")
    for command in ("compress", "export"):
        result = runner.invoke(app, [command, str(run_dir)])
        assert result.exit_code == 2, result.output
        assert "--trust-code" in _flat(result.output)
    assert "tests.experiment.never_imported" not in sys.modules


def test_check_accepts_every_shipped_recipe():
    from prunekit.experiment.recipe import shipped_recipes

    for name in shipped_recipes():
        result = runner.invoke(app, ["check", name])
        if result.exit_code == 3:  # a shipped recipe with download: false and data absent here
            assert "is not available" in result.output
            continue
        assert result.exit_code == 0, (name, result.output)


def test_python_m_compress_never_imports_a_factory_from_the_working_folder(tmp_path):
    """The hostile case: an untrusted run directory names ``evil:build`` and ``evil.py`` sits in the
    current folder, which ``python -m`` puts on ``sys.path``."""
    marker = tmp_path / "marker"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef build(**kw): pass\n")
    _run_dir_naming(tmp_path, "evil:build")
    result = subprocess.run([sys.executable, "-m", "prunekit", "compress", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--trust-code" in _flat(result.stderr) and not marker.exists()
