"""int8 post-training quantization through onnxruntime: accuracy near float, smaller file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.deployment import evaluate_onnx, export_onnx, quantize_int8
from prunekit.errors import ConfigError
from prunekit.metrics import evaluate
from prunekit.pruners.nm import prune_nm

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2:4-pruned MLP trained on separable Gaussian blobs, exported to ONNX, with its test batches."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 32, generator=gen) * 1.5
    labels = torch.randint(0, 5, (3000,), generator=gen)
    inputs = centers[labels] + torch.randn(3000, 32, generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
    prune_nm(model, 2, 4)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        idx = torch.randint(0, 2000, (256,), generator=gen)
        loss = nn.functional.cross_entropy(model(inputs[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = [(inputs[i:i + 100], labels[i:i + 100]) for i in range(0, 2000, 100)]
    test = [(inputs[i:i + 250], labels[i:i + 250]) for i in range(2000, 3000, 250)]
    path = export_onnx(model, inputs[:4], tmp_path_factory.mktemp("onnx") / "mlp.onnx").path
    return model, path, train, test


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_int8_accuracy_close_to_float(trained, mode, tmp_path):
    model, path, train, test = trained
    float_eval = evaluate(model, test)
    assert float_eval.accuracy > 0.9
    result = quantize_int8(path, tmp_path / "int8.onnx", calibration=train if mode == "static" else None, mode=mode)
    assert result.int8_bytes < result.float_bytes and result.ratio > 1.5
    assert result.calibration_batches == (8 if mode == "static" else 0)
    int8_eval = evaluate_onnx(result.path, test, num_classes=5)
    assert abs(int8_eval.accuracy - float_eval.accuracy) <= 0.02
    assert int8_eval.count == 1000 and len(int8_eval.per_class_accuracy) == 5
    assert evaluate_onnx(path, test).accuracy == pytest.approx(float_eval.accuracy)


def test_static_int8_of_a_conv_net(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    path = export_onnx(model, torch.randn(2, 3, 12, 12), tmp_path / "conv.onnx").path
    result = quantize_int8(path, tmp_path / "conv_int8.onnx", calibration=[torch.randn(4, 3, 12, 12) for _ in range(3)])
    import onnx

    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and result.int8_bytes < result.float_bytes


def test_static_needs_calibration(trained, tmp_path):
    with pytest.raises(ConfigError, match="needs calibration batches"):
        quantize_int8(trained[1], tmp_path / "x.onnx")


def test_calibration_and_onnx_accuracy_show_progress_only_when_asked(trained, tmp_path, capsys):
    _, path, train, test = trained
    quantize_int8(path, tmp_path / "quiet.onnx", calibration=train, max_batches=3)
    evaluate_onnx(path, test)
    assert capsys.readouterr().err == ""
    quantize_int8(path, tmp_path / "shown.onnx", calibration=train, max_batches=3, progress=True)
    evaluate_onnx(path, test, progress=True)
    err = capsys.readouterr().err
    assert "int8 calibration" in err and "3/3" in err
    assert "onnx accuracy" in err and "4/4" in err
