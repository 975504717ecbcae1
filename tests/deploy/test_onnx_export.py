"""ONNX export of every kind of pruned model, validated in onnxruntime; timing; clear errors."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.deployment import OnnxRunner, deploy, export_onnx, time_onnx
from prunekit.errors import ConfigError, ExportError
from prunekit.masks import MaskSet
from prunekit.metrics import compare_latency
from prunekit.pruners.nm import prune_nm

pytest.importorskip("onnxruntime")


def _convnet(widths: tuple[int, int] = (16, 32)) -> nn.Module:
    a, b = widths
    return nn.Sequential(
        nn.Conv2d(3, a, 3, padding=1), nn.BatchNorm2d(a), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(b, 10),
    ).eval()


def _masked(model: nn.Module, sparsity: float = 0.8) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    MaskSet({n: torch.rand(p.shape, generator=gen) >= sparsity for n, p in model.named_parameters() if p.dim() > 1}).attach(model)
    return model


class Quantize(nn.Module):
    """Stand-in for weight sharing: a parametrization mapping weights onto a few shared values."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.round(weight * 8) / 8


def _weight_shared(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            parametrize.register_parametrization(module, "weight", Quantize())
    return model


KINDS = {
    "unstructured": lambda: _masked(_convnet()),
    "structured": lambda: _convnet((13, 26)),  # a plain, smaller model as surgery leaves it
    "nm": lambda: (lambda m: (prune_nm(m, 2, 4), m)[1])(_convnet()),
    "weight_shared": lambda: _weight_shared(_masked(_convnet())),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_with_dynamic_batch(kind, tmp_path):
    model = KINDS[kind]().eval()
    x = torch.randn(2, 3, 16, 16)
    result = export_onnx(model, x, tmp_path / "m.onnx")
    assert result.path.exists() and result.size_bytes == result.path.stat().st_size
    assert result.max_abs_error < 1e-4 and result.opset >= 17
    runner = OnnxRunner(result.path)
    for batch in (1, 5):
        xb = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(runner(xb)[0]), model(xb), rtol=1e-4, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left behind


def test_source_model_is_untouched(tmp_path):
    model = _masked(_convnet())
    export_onnx(model, torch.randn(1, 3, 16, 16), tmp_path / "m.onnx", dynamic_batch=False)
    assert parametrize.is_parametrized(model[0])
    model(torch.randn(1, 3, 16, 16))  # still runs with its masks


def test_failed_validation_raises_with_numbers_and_keeps_old_file(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    with pytest.raises(ExportError, match=r"max abs error .* > atol -1.0 .*file was not written"):
        export_onnx(_convnet(), torch.randn(1, 3, 16, 16), target, rtol=0.0, atol=-1.0)  # a tolerance nothing meets
    assert target.read_bytes() == b"old"


def test_deployed_sparse_model_is_refused(tmp_path):
    converted, _ = deploy(_masked(nn.Sequential(nn.Linear(8, 8))), torch.randn(2, 8), force="sparse")
    with pytest.raises(ExportError, match="export the model you passed to deploy"):
        export_onnx(converted, torch.randn(2, 8), tmp_path / "m.onnx")


def test_timing_side_by_side(tmp_path):
    model = _convnet()
    x = torch.randn(4, 3, 16, 16)
    path = export_onnx(model, x, tmp_path / "m.onnx").path
    latency = time_onnx(path, x, warmup=1, repeats=3)
    assert latency.median_ms > 0 and latency.repeats == 3
    both = compare_latency({"torch": model, "onnxruntime": OnnxRunner(path)}, x, warmup=1, repeats=3)
    assert set(both) == {"torch", "onnxruntime"}


def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"pip install 'prunekit\[onnx\]'"):
        export_onnx(_convnet(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx")
