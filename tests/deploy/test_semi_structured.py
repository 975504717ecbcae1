"""2:4 semi-structured kernels: plainly refused on CPU; converted on CUDA where available."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from prunekit.deployment import CPU_MESSAGE, to_semi_structured
from prunekit.pruners.nm import prune_nm


def test_cpu_says_there_is_no_kernel(caplog):
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    prune_nm(model, 2, 4)
    before = [p.detach().clone() for p in model.parameters()]
    with caplog.at_level(logging.WARNING, logger="prunekit.deployment.semi_structured"):
        result = to_semi_structured(model)
    assert result.message == CPU_MESSAGE == "no CPU kernel for 2:4 semi-structured sparsity; the model stays dense-with-zeros"
    assert CPU_MESSAGE in caplog.text
    assert result.converted == [] and set(result.skipped) == {"0", "2"}
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 semi-structured kernels need CUDA")
def test_cuda_converts_valid_linears():
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128)).half().cuda().eval()
    prune_nm(model, 2, 4, include=["0.weight"])
    x = torch.randn(64, 128, device="cuda", dtype=torch.half)
    with torch.no_grad():
        expected = model(x)
        result = to_semi_structured(model)
        got = model(x)
    assert result.converted == ["0"] and "2" in result.skipped  # layer 2 is dense, not 2:4
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2)
