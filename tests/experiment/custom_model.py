"""A user's own model, outside the zoo, for recipe tests."""

import math

from torch import nn


class TwoLayer(nn.Module):
    def __init__(self, num_classes: int, in_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def build(num_classes: int, input_shape: tuple[int, int, int], hidden_scale: int = 1) -> nn.Module:
    return TwoLayer(num_classes, math.prod(input_shape))
