"""Your own model and checkpoint in a recipe: PyTorch checkpoints (code never unpickled), one line
per mismatching tensor with exit 3, factories and relative paths found from the recipe's folder."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from prunekit.cli.app import app
from prunekit.errors import CheckpointError
from prunekit.experiment import runner as runner_module
from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import prepare_run
from prunekit.zoo import create_model

from tests.experiment.recipes import tiny_recipe
from tests.structured.conftest import timm  # noqa: F401  (the fixture: timm through the torchvision stand-in)
from tests.zoo.payloads import write_payload

cli = CliRunner()

NET = """
import math
from torch import nn


def build(num_classes, input_shape, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
"""


def _lenet() -> torch.nn.Module:
    return create_model("lenet_300_100", 10, (1, 8, 8)).eval()


def _recipe(folder: Path, **model) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    raw = tiny_recipe()
    raw["model"].update(model)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _invoke(command: str, recipe: Path, out: Path, *sets: str):
    args = [command, str(recipe), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return cli.invoke(app, args)


def _message(result) -> list[str]:
    """The error's lines as printed, label removed (rich wraps nothing: soft_wrap)."""
    return result.output.removeprefix("error: ").rstrip("\n").splitlines()


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """The working directory: a folder other than the recipe's."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(("suffix", "container"), [(".pt", "torch.save"), (".pth", "pickle"), (".ckpt", "torch.save"), (".ckpt", "pickle")])
def test_a_checkpoint_carrying_code_is_refused_and_never_run(tmp_path, elsewhere, command, suffix, container):
    marker = tmp_path / "marker"
    recipe = _recipe(tmp_path / "project", checkpoint=f"evil{suffix}")
    write_payload(tmp_path / "project" / f"evil{suffix}", marker, container)
    result = _invoke(command, recipe, tmp_path / "runs")
    assert result.exit_code == 3, result.output
    lines = _message(result)
    assert lines[0].startswith(f"model.checkpoint: {tmp_path / 'project' / f'evil{suffix}'} holds pickled code or objects other than tensors")
    assert "prunekit never unpickles code" in lines[0] and "torch.save(model.state_dict(), 'weights.pt')" in lines[0]
    assert "delete" not in result.output.lower() and "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_the_dense_step_itself_refuses_code_and_lists_mismatches(tmp_path, elsewhere, monkeypatch):
    """The run-time reader, even when the check before it is skipped (the Python API's dense step)."""
    monkeypatch.setattr(runner_module, "check_recipe", lambda *args, **kwargs: None)
    marker = tmp_path / "marker"
    write_payload(tmp_path / "evil.pt", marker, "torch.save")
    with pytest.raises(CheckpointError, match="^model.checkpoint: .*evil.pt holds pickled code"):
        prepare_run(load_recipe(tiny_recipe(), [f"model.checkpoint={tmp_path / 'evil.pt'}"]), tmp_path / "runs", progress=False)
    assert not marker.exists()

    state = _lenet().state_dict()
    state["fc2.weight"] = torch.zeros(3, 3)
    torch.save({"state_dict": state}, tmp_path / "wrong.ckpt")
    with pytest.raises(CheckpointError) as info:
        prepare_run(load_recipe(tiny_recipe(), [f"model.checkpoint={tmp_path / 'wrong.ckpt'}"]), tmp_path / "runs", progress=False)
    assert str(info.value).splitlines() == [f"model.checkpoint: {tmp_path / 'wrong.ckpt'} does not fit model LeNet300100 (1 tensor(s)):",
                                            "  fc2.weight: checkpoint shape [3, 3], model shape [100, 300]"]


def test_a_pt_state_dict_is_the_dense_model_and_paths_are_absolute_in_the_run(tmp_path, elsewhere):
    source = _lenet()
    (tmp_path / "project").mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}, "epoch": 7}, tmp_path / "project" / "dense.ckpt")
    recipe = _recipe(tmp_path / "project", checkpoint="dense.ckpt")
    ctx = prepare_run(load_recipe(recipe), tmp_path / "runs", progress=False)
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(ctx.dense_model().eval()(x), source(x))
    written = yaml.safe_load((ctx.run.path / "recipe.yaml").read_text())
    assert written["model"]["checkpoint"] == str(tmp_path / "project" / "dense.ckpt")


@pytest.mark.parametrize("command", ["check", "run"])
def test_mismatching_pt_checkpoint_lists_each_tensor_and_exits_3(tmp_path, elsewhere, command):
    state = {f"module.{k}": v for k, v in _lenet().state_dict().items()}  # DDP-saved
    state["module.fc1.weight"] = torch.zeros(5, 5)
    del state["module.fc3.bias"]
    state["module.head.weight"] = torch.zeros(2)
    (tmp_path / "project").mkdir()
    torch.save(state, tmp_path / "project" / "w.pt")
    result = _invoke(command, _recipe(tmp_path / "project", checkpoint="w.pt"), tmp_path / "runs")
    assert result.exit_code == 3, result.output
    assert _message(result) == [
        f"model.checkpoint: {tmp_path / 'project' / 'w.pt'} does not fit model LeNet300100 (3 tensor(s)):",
        "  fc3.bias: missing from the checkpoint (model has shape [10])",
        "  head.weight: not in the model",
        "  fc1.weight: checkpoint shape [5, 5], model shape [300, 64]",
    ]
    assert not (tmp_path / "runs").exists()


def test_relative_checkpoint_is_found_from_the_recipe_folder_and_set_from_the_working_directory(tmp_path, elsewhere):
    recipe = _recipe(tmp_path / "project", checkpoint="w.pt")
    torch.save(_lenet().state_dict(), tmp_path / "project" / "w.pt")
    assert load_recipe(recipe).model.checkpoint == str(tmp_path / "project" / "w.pt")
    result = _invoke("check", recipe, tmp_path / "runs")
    assert result.exit_code == 0, result.output

    torch.save(_lenet().state_dict(), elsewhere / "mine.pt")
    assert load_recipe(recipe, ["model.checkpoint=mine.pt"]).model.checkpoint == str(elsewhere / "mine.pt")
    assert load_recipe(recipe, ["model.checkpoint=~/w.pt"]).model.checkpoint == os.path.expanduser("~/w.pt")
    result = _invoke("check", recipe, tmp_path / "runs", "model.checkpoint=w.pt")  # not in the working directory
    assert result.exit_code == 3 and f"model.checkpoint: no such file: '{elsewhere / 'w.pt'}'" in result.output


def test_factory_module_in_the_recipe_folder_is_imported_from_anywhere(tmp_path, elsewhere):
    module = f"ownnet_{uuid.uuid4().hex[:8]}"  # a fresh name: imported modules stay in sys.modules
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / f"{module}.py").write_text(NET)
    result = _invoke("check", _recipe(tmp_path / "project", name=f"{module}:build", kwargs={"hidden": 8}), tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert f"unstructured pruning of {module}:build" in " ".join(result.output.split())


def test_factory_module_in_the_working_directory(tmp_path, elsewhere):
    module = f"cwdnet_{uuid.uuid4().hex[:8]}"
    (elsewhere / f"{module}.py").write_text(NET)
    model = create_model(f"{module}:build", 3, (1, 4, 4), hidden=5)
    assert model(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


def test_factory_file_path_relative_to_the_recipe(tmp_path, elsewhere):
    (tmp_path / "project" / "nets").mkdir(parents=True)
    (tmp_path / "project" / "nets" / "net.py").write_text(NET)
    recipe = _recipe(tmp_path / "project", name="nets/net.py:build")
    assert load_recipe(recipe).model.name == f"{tmp_path / 'project' / 'nets' / 'net.py'}:build"
    assert _invoke("check", recipe, tmp_path / "runs").exit_code == 0

    missing = _recipe(tmp_path / "other", name="nets/net.py:build")
    result = _invoke("check", missing, tmp_path / "runs")
    assert result.exit_code == 2
    assert f"model factory '{tmp_path / 'other' / 'nets' / 'net.py'}:build': no such file" in " ".join(result.output.split())


def test_create_model_with_a_file_factory(tmp_path, elsewhere):
    (elsewhere / "net.py").write_text(NET)
    model = create_model("net.py:build", 4, (1, 2, 2), hidden=3)
    assert [tuple(p.shape) for p in model.parameters()] == [(3, 4), (3,), (4, 3), (4,)]
    from prunekit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model factory 'gone.py:build': no such file 'gone.py' \(looked in '.*/work'\)"):
        create_model("gone.py:build", 4, (1, 2, 2))
    with pytest.raises(ConfigError, match=r"cannot import model factory 'net.py:nope'"):
        create_model("net.py:nope", 4, (1, 2, 2))


def test_timm_weight_files_in_a_recipe_are_relative_to_it_and_checked(timm, tmp_path, elsewhere):
    project = tmp_path / "project"
    project.mkdir()
    imagenet = timm.create_model("resnet18", num_classes=1000)
    save_file(imagenet.state_dict(), project / "r18.safetensors")
    kwargs = {"in_chans": 1, "pretrained": True, "pretrained_cfg_overlay": {"file": "r18.safetensors"}}
    recipe = _recipe(project, name="timm/resnet18", kwargs=kwargs)
    result = _invoke("check", recipe, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    spec = load_recipe(recipe).model
    assert spec.kwargs["pretrained_cfg_overlay"]["file"] == str(project / "r18.safetensors")
    model = create_model(spec.name, 10, (1, 8, 8), **spec.kwargs)  # as the run builds it (the start of dense training)
    assert torch.equal(model.layer1[0].conv1.weight, imagenet.layer1[0].conv1.weight) and model.fc.out_features == 10

    result = _invoke("check", recipe, tmp_path / "runs", "model.kwargs.pretrained_cfg_overlay.file=missing.safetensors")
    assert result.exit_code == 3
    assert _message(result) == [f"model.kwargs: timm model 'resnet18': pretrained_cfg_overlay file '{elsewhere / 'missing.safetensors'}' does not exist"]

    torch.save(imagenet.state_dict(), project / "r18-1000.pt")
    result = _invoke("check", _recipe(project, name="timm/resnet18", kwargs={"in_chans": 1, "checkpoint_path": "r18-1000.pt"}), tmp_path / "runs")
    assert result.exit_code == 3
    assert _message(result) == [f"model.kwargs.checkpoint_path: {project / 'r18-1000.pt'} does not fit model ResNet (3 tensor(s)):",
                                "  conv1.weight: checkpoint shape [64, 3, 7, 7], model shape [64, 1, 7, 7]",
                                "  fc.weight: checkpoint shape [1000, 512], model shape [10, 512]",
                                "  fc.bias: checkpoint shape [1000], model shape [10]"]
