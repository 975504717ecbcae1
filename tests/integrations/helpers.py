"""A tiny conv net and data for the integration tests (seconds on CPU)."""

from __future__ import annotations

import torch
from torch import nn


def convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def batches(n: int = 8, size: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.randint(0, 4, (size,), generator=g)) for _ in range(n)]


def train(model: nn.Module, manager, data, optimizer: torch.optim.Optimizer | None = None) -> torch.optim.Optimizer:
    """Plain PyTorch loop over ``data``, calling ``manager.step`` after every optimizer step."""
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for x, y in data:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        manager.step(optimizer)
    return optimizer
