"""Contract test over every zoo model: prune, then forward, backward, save/rebuild, ONNX export."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from prunekit.pruners import StructuredPruner
from prunekit.structured import PruningWarning, load_pruned, save_pruned
from prunekit.zoo import MODELS, create_model, default_input_shape

SMALL_INPUT = {"resnet50": (3, 64, 64)}  # 224×224 works too, this keeps the default run short
CASES = [(name, ratio) for name in MODELS.names() for ratio in (0.3, 0.7)]


def _input(name: str) -> torch.Tensor:
    return torch.randn(2, *SMALL_INPUT.get(name, default_input_shape(name)))


def _build(name: str) -> torch.nn.Module:
    shape = SMALL_INPUT.get(name)
    model = create_model(name, input_shape=shape) if shape else create_model(name)
    return model.eval()


@pytest.mark.parametrize(("name", "ratio"), CASES)
def test_pruned_zoo_model_trains_saves_and_exports(name: str, ratio: float, tmp_path) -> None:
    model, x = _build(name), _input(name)
    dense = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PruningWarning)  # zoo models must be fully understood
        result = StructuredPruner(ratio=ratio).prune(model, x)
    assert result.params_after < result.params_before
    assert result.units_removed > 0

    model.train()
    out = model(x)
    assert out.shape == dense.shape
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    save_pruned(model, tmp_path / "pruned")
    shape = SMALL_INPUT.get(name)
    rebuilt = load_pruned(lambda: create_model(name, input_shape=shape) if shape else create_model(name), tmp_path / "pruned").eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    copy.deepcopy(model)  # plain module: deep-copyable

    if ratio == 0.7:  # ONNX once per model keeps the default run short
        _check_onnx(model, x, tmp_path / "model.onnx")


def _check_onnx(model: torch.nn.Module, x: torch.Tensor, path) -> None:
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=1e-4 * scale, rtol=1e-4)
