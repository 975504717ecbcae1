"""``prunekit prune MODEL --data ... --checkpoint ...``: one command, the run directory a recipe would write."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from prunekit.cli.app import app
from prunekit.errors import ConfigError
from prunekit.experiment.quick import default_name, quick_recipe
from prunekit.experiment.recipe import load_recipe

from tests.zoo.image_folders import make_class_folders

runner = CliRunner()

USER_MODEL = '''
from torch import nn


def build(num_classes, input_shape):
    channels = input_shape[0]
    return nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))
'''


def test_the_target_decides_the_method_and_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = quick_recipe("my_model.py:build", "imagefolder:photos", checkpoint="w.pt")
    assert raw["prune"]["method"] == "structured" and raw["prune"]["macs_reduction"] == 2.0
    assert raw["model"] == {"name": f"{tmp_path / 'my_model.py'}:build", "checkpoint": str(tmp_path / "w.pt")}
    assert raw["data"] == {"name": "imagefolder", "path": str(tmp_path / "photos")}
    assert "train" not in raw  # a checkpoint means no dense training
    assert raw["name"] == "my_model.build-on-photos"
    unstructured = quick_recipe("lenet_300_100", "digits", sparsity=0.9)
    assert unstructured["prune"]["method"] == "unstructured" and unstructured["prune"]["sparsity"] == 0.9
    assert unstructured["train"]["epochs"] == 10.0
    latency = quick_recipe("resnet20", "cifar10", latency_reduction=1.5, runtime="onnxruntime")
    assert latency["prune"]["runtime"] == "onnxruntime" and latency["evaluate"] == {"latency_runtime": "onnxruntime"}
    with pytest.raises(ConfigError, match="give one pruning target, not --macs-reduction and --sparsity"):
        quick_recipe("resnet20", "cifar10", macs_reduction=2, sparsity=0.5)


def test_default_names_are_valid_run_names():
    assert default_name("timm/resnet18", {"name": "imagefolder", "path": "/data/my flowers"}) == "resnet18-on-my_flowers"
    assert default_name("pkg.models:build", {"name": "cifar10"}) == "models.build-on-cifar10"
    load_recipe(quick_recipe("resnet20", "cifar10"))  # the default recipe validates


def test_one_command_prunes_a_user_model_and_checkpoint_on_an_image_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("my_model.py").write_text(USER_MODEL)
    make_class_folders(tmp_path / "photos", per_class=10)
    torch.manual_seed(0)
    namespace: dict = {}
    exec(USER_MODEL, namespace)
    model: nn.Module = namespace["build"](3, (3, 16, 16))
    torch.save(model.state_dict(), "w.pt")  # the user's own plain PyTorch checkpoint
    args = ["prune", "my_model.py:build", "--data", "imagefolder:photos", "--checkpoint", "w.pt", "--macs-reduction", "2",
            "--finetune-epochs", "1", "--batch-size", "8", "--set", "data.image_size=16", "--set", "evaluate.corruptions=[]",
            "--save-recipe", "saved.yaml", "--out", "runs", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = Path("runs").glob("my_model.build-on-photos-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["dataset"] == "imagefolder"
    assert summary["theoretical_speedup"] >= 1.9
    assert summary["pruned"]["macs"] < summary["dense"]["macs"]
    assert "measured speed-up" in result.output and (run_dir / "report.html").exists()
    written = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert written["model"]["checkpoint"] == str(tmp_path / "w.pt") and written["data"]["path"] == str(tmp_path / "photos")
    # the saved recipe names the same run: running it reuses every step
    again = runner.invoke(app, ["run", "saved.yaml", "--out", "runs"])
    assert again.exit_code == 0, again.output
    assert [p.name for p in Path("runs").glob("my_model.build-on-photos-*")] == [run_dir.name]


def test_bad_arguments_exit_2_without_a_traceback(tmp_path):
    result = runner.invoke(app, ["prune", "resnet20", "--data", "imagefolder:", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "give the path after 'imagefolder:'" in result.output
    result = runner.invoke(app, ["prune", "resnet20", "--data", "cifar10", "--ratio", "0.5", "--sparsity", "0.5", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "give one pruning target" in result.output
    assert not (tmp_path / "runs").exists()
