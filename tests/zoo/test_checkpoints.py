"""prunekit.load_weights: safetensors and PyTorch files, tensors only; nested and prefixed state
dicts; one line per mismatching tensor; timm's pretrained weights offline and from local files."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from prunekit import load_weights
from prunekit.errors import CheckpointError, ConfigError
from prunekit.zoo import create_model

from tests.structured.conftest import timm  # noqa: F401  (the fixture: timm through the torchvision stand-in)
from tests.zoo.payloads import write_payload


def _model() -> torch.nn.Module:
    return create_model("lenet_300_100", 10, (1, 8, 8)).eval()


@pytest.mark.parametrize("container", ["torch.save", "pickle"])
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin", ".weights"])
def test_a_pickle_holding_code_is_refused_never_run(tmp_path, suffix, container):
    marker = tmp_path / "marker"
    path = tmp_path / f"evil{suffix}"
    write_payload(path, marker, container)
    with pytest.raises(CheckpointError) as info:
        load_weights(path, _model())
    message = str(info.value)
    assert message.startswith(f"{path} holds pickled code or objects other than tensors")
    assert "prunekit never unpickles code" in message and "torch.save(model.state_dict(), 'weights.pt')" in message
    assert "weights_only=False" not in message and "delete" not in message.lower()
    assert ("MyLitModule.load_from_checkpoint(path).state_dict()" in message) == (suffix == ".ckpt")
    assert not marker.exists()


def test_the_payload_is_real(tmp_path):
    """Unpickling it the unsafe way does create the marker (so the refusals above prove something)."""
    write_payload(tmp_path / "evil.pt", tmp_path / "marker", "pickle")
    pickle.loads((tmp_path / "evil.pt").read_bytes())
    assert (tmp_path / "marker").exists()


def test_a_whole_pickled_model_is_refused_with_how_to_resave(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_model(), path)
    with pytest.raises(CheckpointError, match=r"\(it names prunekit\.zoo\.models\.\w+\.\w+\).*re-save the weights only"):
        load_weights(path)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt", ".safetensors"])
def test_state_dict_loads_and_gives_identical_outputs(tmp_path, suffix):
    source = _model()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    other = _model()
    other.load_state_dict(load_weights(path, other))
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(other(x), source(x))


@pytest.mark.parametrize(("wrap", "prefix"), [
    ("state_dict", "model."),  # Lightning: self.model inside a LightningModule
    ("state_dict", ""),
    ("model_state_dict", "module."),  # a training script's dict around a DDP model
    ("model", "_orig_mod."),  # torch.compile
    (None, "module._orig_mod."),  # DDP around a compiled model
    (None, "module."),
])
def test_nested_and_prefixed_checkpoints_are_matched_to_the_model(tmp_path, wrap, prefix):
    source = _model()
    tensors = {prefix + k: v for k, v in source.state_dict().items()}
    obj = tensors if wrap is None else {wrap: tensors, "epoch": 3, "optimizer_states": [{"lr": 0.1}], "hyper_parameters": {"a": 1}}
    torch.save(obj, tmp_path / "w.ckpt")
    loaded = load_weights(tmp_path / "w.ckpt", _model())
    assert list(loaded) == list(source.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_without_a_model_names_are_kept_as_saved(tmp_path):
    torch.save({"state_dict": {"model.fc1.weight": torch.ones(2)}}, tmp_path / "w.ckpt")
    assert list(load_weights(tmp_path / "w.ckpt")) == ["model.fc1.weight"]


def test_mismatching_tensors_are_listed_one_per_line(tmp_path):
    state = _model().state_dict()
    state["fc1.weight"] = torch.zeros(5, 5)
    del state["fc3.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as info:
        load_weights(tmp_path / "w.pt", _model())
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'w.pt'} does not fit model LeNet300100 (3 tensor(s)):",
        "  fc3.bias: missing from the checkpoint (model has shape [10])",
        "  extra.weight: not in the model",
        "  fc1.weight: checkpoint shape [5, 5], model shape [300, 64]",
    ]


@pytest.mark.parametrize(("content", "expected"), [
    ({"epoch": 3, "lr": 0.1}, "holds a mapping with keys ['epoch', 'lr'], not a state dict"),
    ({}, "holds no tensors"),
    ([torch.zeros(1)], "holds a list, not a state dict"),
])
def test_files_without_a_state_dict_say_what_they_hold(tmp_path, content, expected):
    torch.save(content, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        load_weights(tmp_path / "w.pt")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_weights(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04truncated")
    with pytest.raises(CheckpointError, match=r"bad.pt is not a readable PyTorch checkpoint .*re-save the weights only"):
        load_weights(tmp_path / "bad.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="bad.safetensors is not a readable safetensors file"):
        load_weights(tmp_path / "bad.safetensors")


def test_meta_device_reads_shapes_only(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "w.pt")
    save_file(_model().state_dict(), tmp_path / "w.safetensors")
    for name in ("w.pt", "w.safetensors"):
        loaded = load_weights(tmp_path / name, device="meta")
        assert loaded["fc1.weight"].is_meta and loaded["fc1.weight"].shape == (300, 64)


def _offline(monkeypatch, timm_module) -> None:
    """The Hugging Face hub unreachable, as on a machine without network (no retries, no waiting)."""
    import timm.models._hub as hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")

    monkeypatch.setattr(hub, "hf_hub_download", unreachable)


def test_timm_pretrained_offline_says_how_to_use_a_local_file(timm, monkeypatch):
    _offline(monkeypatch, timm)
    with pytest.raises(CheckpointError) as info:
        create_model("timm/resnet18", 10, pretrained=True)
    message = str(info.value)
    assert message.startswith("timm model 'resnet18': pretrained=True could not fetch the weights from the Hugging Face hub (is this machine offline?")
    assert "pretrained_cfg_overlay={'file': 'weights.safetensors'}" in message and "checkpoint_path=" in message


def test_timm_pretrained_from_local_files(timm, tmp_path, monkeypatch):
    _offline(monkeypatch, timm)
    imagenet = timm.create_model("resnet18", num_classes=1000)
    save_file(imagenet.state_dict(), tmp_path / "r18.safetensors")
    model = create_model("timm/resnet18", 10, pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "r18.safetensors")})
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight) and model.fc.out_features == 10

    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "r18-10.ckpt")
    again = create_model("timm/resnet18", 10, checkpoint_path=tmp_path / "r18-10.ckpt")
    assert torch.equal(again.fc.weight, model.fc.weight)
    with pytest.raises(CheckpointError, match=r"checkpoint_path: .*does not fit model ResNet \(2 tensor\(s\)\):\n  fc.weight: checkpoint shape \[10, 512\], model shape \[1000, 512\]"):
        create_model("timm/resnet18", 1000, checkpoint_path=tmp_path / "r18-10.ckpt")


def test_timm_local_file_mistakes(timm, tmp_path):
    with pytest.raises(CheckpointError, match="pretrained_cfg_overlay file .*missing.safetensors' does not exist"):
        create_model("timm/resnet18", 10, pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "missing.safetensors")})
    with pytest.raises(ConfigError, match="which timm reads only with pretrained=True"):
        create_model("timm/resnet18", 10, pretrained_cfg_overlay={"file": str(tmp_path / "w.safetensors")})
