"""Sparse CPU inference: CSR/BSR layers equal the dense-masked ones; deploy() decides per layer."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn.utils import parametrize

import prunekit.deployment
from prunekit.deployment import DeployConfig, SparseConv1x1, SparseLinear, deploy
from prunekit.masks import MaskSet


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Within float32 round-off relative to the output scale."""
    scale = float(expected.abs().max()) or 1.0
    assert float((actual - expected).abs().max()) <= 1e-5 * scale


def _sparsify(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    keep = torch.rand(weight.shape, generator=torch.Generator().manual_seed(1)) >= sparsity
    return weight * keep


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("bias", [True, False])
def test_sparse_linear_matches_dense(sparsity, batch, bias):
    linear = nn.Linear(96, 48, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(_sparsify(linear.weight, sparsity))
    x = torch.randn(batch, 96)
    for layout, blocksize in [("csr", None), ("bsr", 16)]:
        sparse = SparseLinear.from_linear(linear, layout, blocksize)
        with torch.no_grad():
            _assert_close(sparse(x), linear(x))
    with torch.no_grad():
        _assert_close(SparseLinear.from_linear(linear)(x.reshape(batch, 1, 96)), linear(x).reshape(batch, 1, 48))


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
@pytest.mark.parametrize("batch", [1, 3])
def test_sparse_pointwise_conv_matches_dense(sparsity, batch):
    conv = nn.Conv2d(32, 16, 1)
    with torch.no_grad():
        conv.weight.copy_(_sparsify(conv.weight, sparsity))
    x = torch.randn(batch, 32, 5, 6)
    sparse = SparseConv1x1.from_conv(conv)
    with torch.no_grad():
        y = sparse(x)
        _assert_close(y, conv(x))
    assert y.is_contiguous()


def test_sparse_modules_are_plain_modules():
    linear = nn.Linear(16, 8)
    sparse = SparseLinear.from_linear(linear)
    clone = copy.deepcopy(sparse)
    buffer = io.BytesIO()
    torch.save(sparse.state_dict(), buffer)
    buffer.seek(0)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(2, 16)
    with torch.no_grad():
        _assert_close(clone(x), linear(x))
    assert not sparse._forward_hooks and not sparse._forward_pre_hooks
    assert "layout=csr" in repr(sparse)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.pw = nn.Conv2d(32, 32, 1)
        self.strided = nn.Conv2d(32, 32, 1, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 10)
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        x = torch.relu(self.strided(torch.relu(self.pw(torch.relu(self.stem(x))))))
        return self.fc2(torch.relu(self.fc1(self.pool(x).flatten(1))))


def _masked_net(sparsity: float = 0.9) -> nn.Module:
    model = Net().eval()
    gen = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=gen) >= sparsity for n, p in model.named_parameters() if n.endswith("weight")}
    MaskSet(masks).attach(model)
    return model


def test_forced_sparse_converts_eligible_layers_and_matches_masked_model():
    model = _masked_net()
    x = torch.randn(4, 3, 8, 8)
    converted, report = deploy(model, x, force="sparse")
    assert report.converted == ["pw", "fc1", "fc2", "unused"]
    assert isinstance(converted.pw, SparseConv1x1) and isinstance(converted.fc1, SparseLinear)
    assert type(converted.stem) is nn.Conv2d and type(converted.strided) is nn.Conv2d
    assert parametrize.is_parametrized(model.fc1)  # the input model is untouched
    assert not any(parametrize.is_parametrized(m) for m in converted.modules())
    with torch.no_grad():
        for batch in (x, torch.randn(1, 3, 8, 8), torch.randn(9, 3, 8, 8)):
            _assert_close(converted(batch), model(batch))
    assert report.max_abs_error <= 1e-5 * float(model(x).detach().abs().max())


def test_forced_dense_and_thresholds():
    model = _masked_net()
    x = torch.randn(2, 3, 8, 8)
    _, report = deploy(model, x, force="dense")
    assert report.converted == [] and {d.reason for d in report.layers} == {"forced dense"}
    _, report = deploy(_masked_net(0.3), x, force="sparse")
    below = {d.name for d in report.layers if "below min_sparsity 0.5" in d.reason}
    assert below == {d.name for d in report.layers if d.sparsity < 0.5} and {"pw", "fc1", "fc2"} <= below
    assert set(report.converted) == {d.name for d in report.layers} - below


def test_measured_decisions_follow_min_speedup():
    model, x = _masked_net(), torch.randn(8, 3, 8, 8)
    _, always = deploy(model, x, min_speedup=1e-9, budget_s=0.01)
    _, never = deploy(model, x, min_speedup=1e9, budget_s=0.01)
    assert always.converted == ["pw", "fc1", "fc2"]
    assert never.converted == []
    unused = next(d for d in never.layers if d.name == "unused")
    assert unused.reason == "not called by example_inputs (cannot measure)"
    for d in always.layers:
        if d.name != "unused":
            assert d.dense_ms > 0 and d.sparse_ms > 0 and d.speedup == pytest.approx(d.dense_ms / d.sparse_ms)
    assert always.to_dict()["converted"] == always.converted


def test_bsr_is_tried_only_for_block_clustered_weights():
    blocks = torch.rand(4, 4, generator=torch.Generator().manual_seed(0)) < 0.25
    block_sparse = nn.Linear(64, 64)
    unstructured = nn.Linear(64, 64)
    with torch.no_grad():
        block_sparse.weight.mul_(blocks.repeat_interleave(16, 0).repeat_interleave(16, 1))
        unstructured.weight.copy_(_sparsify(unstructured.weight, 0.9))
    model = nn.Sequential(block_sparse, unstructured)
    converted, report = deploy(model, torch.randn(8, 64), layouts=("bsr",), min_speedup=1e-9, budget_s=0.01)
    first, second = report.layers
    assert first.chosen == "sparse" and first.layout.startswith("bsr")
    assert second.chosen == "dense" and second.reason == "no sparse layout applies"
    with torch.no_grad():
        x = torch.randn(3, 64)
        _assert_close(converted(x), model(x))


def test_config_validation_and_top_level_entry_point():
    with pytest.raises(ValidationError):
        DeployConfig(forced="sparse")
    with pytest.raises(ValidationError):
        deploy(nn.Linear(4, 4), torch.randn(1, 4), min_sparsity=2.0)
    model = _masked_net()
    x = torch.randn(2, 3, 8, 8)
    _, report = prunekit.deploy(model, x, DeployConfig(force="dense", min_sparsity=0.1), force="sparse")
    assert report.converted == ["pw", "fc1", "fc2", "unused"]
