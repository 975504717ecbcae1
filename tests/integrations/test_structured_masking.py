"""Structured steps as channel masks: monotone across steps, exact counts, and coupled (residual) channels masked together."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.integrations import RecipeManager
from prunekit.masks import MaskSet

from .helpers import batches, train

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))


class Residual(nn.Module):
    """conv → (conv + shortcut) → head: the block's output channels are one coupled group."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.relu(self.body(h) + h)
        return self.head(h.mean((2, 3)))


def _out_masked(model: nn.Module, name: str) -> set[int]:
    mask = MaskSet.from_model(model)[name]
    return {i for i in range(mask.shape[0]) if not mask[i].any()}


def test_units_masked_early_stay_masked_and_counts_are_exact() -> None:
    model = Residual()
    section = {"method": "structured", "ratio": 0.5, "steps": 2, "importance": "random", "round_to": 1}
    manager = RecipeManager.from_recipe(section, model, total_steps=2, example_inputs=X)
    first = _out_masked(model, "body.0.weight")
    assert len(first) == 2  # half the target: 2 of 8 coupled channels
    train(model, manager, batches(2))
    last = _out_masked(model, "body.0.weight")
    assert len(last) == 4 and first <= last  # random scores would choose afresh; masked units rank first
    # the coupled group: the stem conv, both norms and the head's inputs lose the same channels
    assert _out_masked(model, "stem.0.weight") == last
    masks = MaskSet.from_model(model)
    assert {i for i in range(8) if not masks["head.weight"][:, i].any()} == last
    assert {i for i in range(8) if not masks["stem.1.weight"][i]} == last
    model.eval()
    with torch.no_grad():
        masked = model(X)
    manager.finish()
    assert model.stem[0].out_channels == model.body[0].out_channels == 4 and model.head.in_features == 4
    with torch.no_grad():
        torch.testing.assert_close(model(X), masked, rtol=1e-5, atol=1e-6)
