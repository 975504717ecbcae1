import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prunekit.cli.app import app

from tests.experiment.recipes import tiny_recipe

runner = CliRunner()


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda r: r["prune"].update(sparsity=1.0), "prune.sparsity: Input should be less than 1"),
        (lambda r: r["prune"].update(sparsity=-0.1), "prune.sparsity"),
        (lambda r: r["prune"].update(sparsity="lots"), "prune.sparsity: Input should be a valid number"),
        (lambda r: r["prune"].update(criterion="l9"), "prune.criterion: unknown unstructured criterion 'l9'; allowed values: grasp, lamp, magnitude, random, snip, synflow, taylor"),
        (lambda r: r["model"].update(name="resnet7"), "model.name: unknown model 'resnet7'; allowed values: conv2"),
        (lambda r: r["data"].update(name="imagenet"), "data.name: unknown dataset 'imagenet'; allowed values: cifar10, digits, fashion_mnist, mnist"),
        (lambda r: r.update(trian={"epochs": 1}), "trian: unknown key"),
        (lambda r: r["train"].update(epochs="ten"), "train.epochs: Input should be a valid number"),
        (lambda r: r["prune"].update(method="magic"), "prune: unknown method 'magic'; allowed values: at_init, depth, dst, dynamic, gradual, lottery, nm, structured, unstructured"),
    ],
)
def test_invalid_recipe_exits_2_names_the_field_and_writes_nothing(tmp_path, edit, expected):
    raw = tiny_recipe()
    edit(raw)
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(_write(tmp_path, raw)), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not out.exists()


def test_bad_override_and_missing_file_exit_2(tmp_path):
    path = _write(tmp_path, tiny_recipe())
    result = runner.invoke(app, ["run", str(path), "--set", "prune.sparsity", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "recipe file not found" in result.output


def test_list_shows_registries():
    result = runner.invoke(app, ["list", "models"])
    assert result.exit_code == 0 and "resnet56" in result.output and "lenet_300_100" in result.output
    assert runner.invoke(app, ["list", "bogus"]).exit_code == 2


def test_report_needs_a_finished_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 3 and "summary.json" in result.output


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "prunekit", *args]


def test_sigkill_during_finetuning_resumes_to_the_same_result(tmp_path):
    raw = tiny_recipe(baselines=[], schedule=None, sparsity=0.9, finetune={"epochs": 12, "optimizer": {"name": "sgd", "lr": 0.01}})
    raw["evaluate"] = {"latency": False}
    recipe = _write(tmp_path, raw)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(_cli("run", str(recipe), "--out", str(tmp_path / "a"), "-q"), env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "b"
    proc = subprocess.Popen(_cli("run", str(recipe), "--out", str(out), "-q"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("*/rounds/magnitude-global/round_000/train.safetensors"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.01)
    assert ckpt is not None, "fine-tuning never wrote a checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ckpt.parents[3] / "summary.json").exists()
    resumed = subprocess.run(_cli("run", str(recipe), "--out", str(out), "-q"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads(next((tmp_path / "a").glob("*/summary.json")).read_text())
    b = json.loads(next(out.glob("*/summary.json")).read_text())
    assert a["pruned"]["accuracy"] == b["pruned"]["accuracy"]
    assert a["pruned"]["loss"] == b["pruned"]["loss"]
    assert a["curve"] == b["curve"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    raw = {**tiny_recipe(baselines=[], schedule=None), "compress": {"fc_bits": 5}}
    result = runner.invoke(app, ["run", str(_write(tmp, raw)), "--out", str(tmp / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return next(p.parent for p in (tmp / "runs").glob("*/summary.json"))


def test_compress_decompress_and_export_a_run(finished_run, tmp_path):
    result = runner.invoke(app, ["compress", str(finished_run), "--set", "fc_bits=4", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((finished_run / "summary.json").read_text())
    assert all(layer["bits"] == 4 for layer in summary["compression"]["layers"])
    result = runner.invoke(app, ["decompress", str(finished_run / "compressed.pkdc"), "--out", str(tmp_path / "w.safetensors")])
    assert result.exit_code == 0 and "checksums OK" in result.output
    assert (tmp_path / "w.safetensors").exists()
    result = runner.invoke(app, ["export", str(finished_run), "--format", "onnx", "-q"])
    assert result.exit_code == 0, result.output
    assert (finished_run / "export" / "model.onnx").exists()
    assert runner.invoke(app, ["export", str(finished_run), "--format", "tflite"]).exit_code == 2


def test_decompress_rejects_a_corrupted_file(finished_run, tmp_path):
    data = bytearray((finished_run / "compressed.pkdc").read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "bad.pkdc"
    bad.write_bytes(bytes(data))
    result = runner.invoke(app, ["decompress", str(bad)])
    assert result.exit_code == 3 and "bad.pkdc" in result.output


def test_compress_needs_a_finished_run(tmp_path):
    result = runner.invoke(app, ["compress", str(tmp_path)])
    assert result.exit_code == 3 and "not a finished run directory" in result.output


def test_analyze_writes_sensitivity_and_suggests_overrides(tmp_path):
    path = _write(tmp_path, tiny_recipe())
    result = runner.invoke(app, ["analyze", str(path), "--out", str(tmp_path / "runs"), "--sparsities", "0.5,0.9", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(next((tmp_path / "runs").glob("*/sensitivity.json")).read_text())
    assert data["sparsities"] == [0.5, 0.9] and set(data["accuracy"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert set(data["suggested_overrides"]) == set(data["accuracy"])
    assert "suggested prune.overrides" in result.output
    assert runner.invoke(app, ["analyze", str(path), "--sparsities", "0.5,1.5"]).exit_code == 2
