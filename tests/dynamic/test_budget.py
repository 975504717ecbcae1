"""The budget loss (L1 on the gate saliencies) trains through ``fit``: it goes down on a tiny synthetic task."""

from __future__ import annotations

import pytest
import torch

from prunekit import dynamic as dyn
from prunekit.errors import ConfigError
from prunekit.training import OptimizerConfig, TrainConfig, fit

from tests.dynamic.test_gates import Chain3


def test_training_lowers_the_budget_loss() -> None:
    torch.manual_seed(0)
    gated = dyn.add_gates(Chain3().eval(), torch.randn(1, 3, 8, 8), density=0.5)
    x = torch.randn(64, 3, 8, 8)
    y = (x.mean((1, 2, 3)) > 0).long()
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    loss = dyn.GateBudgetLoss(gated, weight=1.0)
    result = fit(gated, batches, TrainConfig(epochs=4, optimizer=OptimizerConfig(name="sgd", lr=0.05), eval_every_epochs=0),
                 callbacks=[loss], progress=False)
    curve = [r["budget_loss"] for r in result.history]
    assert len(curve) == 4 and all(b < a for a, b in zip(curve, curve[1:])) and curve[-1] < 0.9 * curve[0]
    assert loss.last == pytest.approx(curve[-1], rel=0.5)


def test_budget_loss_needs_a_forward_and_a_valid_weight() -> None:
    gated = dyn.add_gates(Chain3().eval(), torch.randn(1, 3, 8, 8))
    with pytest.raises(RuntimeError, match="needs a forward pass first"):
        gated.budget_loss()
    with pytest.raises(ConfigError, match="weight must be >= 0, got -1"):
        dyn.GateBudgetLoss(gated, -1)
