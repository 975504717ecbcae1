"""Sparsity-learning penalties."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.structured import DependencyGraph, apply_bn_l1_grad_, bn_l1_penalty, group_lasso_penalty
from prunekit.zoo import create_model


def test_bn_l1_penalty_and_subgradient_agree() -> None:
    model = create_model("resnet20")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight)
    scales = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    penalty = bn_l1_penalty(model, 1e-3)
    torch.testing.assert_close(penalty, 1e-3 * sum(w.abs().sum() for w in scales))
    penalty.backward()
    autograd = [w.grad.clone() for w in scales]
    model.zero_grad(set_to_none=True)
    apply_bn_l1_grad_(model, 1e-3)
    for w, g in zip(scales, autograd):
        torch.testing.assert_close(w.grad, g)


def test_group_lasso_sums_unit_norms_and_drives_units_down() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(3, 4)
    groups = DependencyGraph.build(model, x).prunable_groups()
    (group,) = groups
    w1, b1, w2 = model[0].weight, model[0].bias, model[2].weight
    expected = (w1.pow(2).sum(1) + b1.pow(2) + w2.pow(2).sum(0)).sqrt().sum()
    torch.testing.assert_close(group_lasso_penalty(model, groups, 1.0), expected)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = expected.item()
    for _ in range(20):
        opt.zero_grad()
        group_lasso_penalty(model, groups, 1.0).backward()
        opt.step()
    assert group_lasso_penalty(model, groups, 1.0).item() < before
