"""Tiny in-memory datasets for training tests."""

from __future__ import annotations

import torch


class Batches:
    """Seeded, re-iterable mini-batches over tensors; order depends only on the epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.x, self.y, self.batch_size, self.seed, self.shuffle = x, y, batch_size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        else:
            order = torch.arange(len(self.x))
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.x[idx], self.y[idx]


def blobs(n: int = 512, classes: int = 4, features: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable-ish Gaussian blobs."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=g) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, features, generator=g)
    return x, y


def mlp() -> torch.nn.Module:
    """A seeded 16 → 32 → 32 → 4 MLP (two hidden ReLU layers), for prune → fine-tune loop tests."""
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def blob_splits() -> tuple[Batches, Batches, torch.Tensor]:
    """Training batches (192 blobs), validation batches (64, unshuffled) and 8 example inputs."""
    x, y = blobs(256)
    return Batches(x[:192], y[:192], 32), Batches(x[192:], y[192:], 64, shuffle=False), x[:8]
