"""Tiny models and magnitude pruning for the compression tests."""

from __future__ import annotations

import torch
from torch import nn


class TinyMLP(nn.Sequential):
    def __init__(self, sizes: tuple[int, ...] = (20, 16, 10)) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, bias=False))
        self.classifier = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def prune_(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the smallest-magnitude fraction of every conv/linear weight, in place."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                k = int(sparsity * w.numel())
                if k:
                    threshold = w.abs().flatten().kthvalue(k).values
                    w[w.abs() <= threshold] = 0
    return model


def trained_bn_(model: nn.Module) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(17)
    return model
