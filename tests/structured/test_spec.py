"""Architecture specs: JSON round trip, rebuild from the constructor, helpful errors."""

from __future__ import annotations

import json

import pytest
import torch

from prunekit._io import save_safetensors
from prunekit.errors import CheckpointError
from prunekit.pruners import StructuredPruner
from prunekit.structured import architecture_spec, load_spec, rebuild, save_spec
from prunekit.zoo import create_model

from .test_graph import AttnNet


def test_spec_is_json_and_rebuilds_attention_attributes(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = AttnNet().eval(), torch.randn(2, 5, 6)
    StructuredPruner(ratio=0.5).prune(model, x)
    spec = architecture_spec(model)
    json.dumps(spec)
    assert spec["modules"]["attn"]["attrs"]["num_heads"] == 2
    save_spec(model, tmp_path / "arch.json")
    save_safetensors(tmp_path / "w.safetensors", model.state_dict())
    rebuilt = rebuild(AttnNet, load_spec(tmp_path / "arch.json"), tmp_path / "w.safetensors").eval()
    assert rebuilt.attn.num_heads == 2 and rebuilt.attn.attn_dim == 8
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_rebuild_refuses_the_wrong_constructor(tmp_path) -> None:
    model = create_model("resnet20")
    StructuredPruner(ratio=0.5).prune(model, torch.randn(1, 3, 32, 32))
    with pytest.raises(CheckpointError, match="does not exist|is a"):
        rebuild(lambda: create_model("vgg16"), architecture_spec(model))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CheckpointError, match="spec"):
        load_spec(tmp_path / "bad.json")


def test_weights_must_fit(tmp_path) -> None:
    model = create_model("lenet_300_100")
    StructuredPruner(ratio=0.5).prune(model, torch.randn(1, 1, 28, 28))
    with pytest.raises(CheckpointError, match="do not fit"):
        rebuild(lambda: create_model("lenet_300_100"), architecture_spec(model), {"fc9.weight": torch.zeros(1)})
