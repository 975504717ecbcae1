"""A wide MLP: the MLP-heavy model for sparse-inference benchmarks."""

from __future__ import annotations

import math

from torch import Tensor, nn

from prunekit.zoo.models.registry import register_model


class MLP(nn.Module):
    """Flatten → (Linear → ReLU) × len(hidden) → Linear."""

    def __init__(self, hidden: tuple[int, ...], num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register_model("mlp_wide", input_shape=(1, 28, 28), description="MLP 784-2048-2048-1024-10 (MLP-heavy)")
def mlp_wide(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return MLP((2048, 2048, 1024), num_classes, input_shape)
