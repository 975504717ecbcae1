"""LeNet-300-100 and the Caffe LeNet-5 (Han et al. 2015; LeCun et al. 1998)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from prunekit.zoo.models._shape import flat_features
from prunekit.zoo.models.registry import register_model


class LeNet300100(nn.Module):
    """Fully connected 784-300-100-10 network with ReLU."""

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.fc1(self.flatten(x)))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """Caffe's LeNet-5: conv20-pool-conv50-pool-fc500-fc10, no ReLU after the convolutions."""

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 20, 5),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(flat_features(self.features, input_shape, "lenet5"), 500)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.flatten(self.features(x))
        return self.fc2(self.relu(self.fc1(x)))


@register_model("lenet_300_100", input_shape=(1, 28, 28), description="MLP 784-300-100-10 (Han et al. 2015)")
def lenet_300_100(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return LeNet300100(num_classes, input_shape)


@register_model("lenet5", input_shape=(1, 28, 28), description="Caffe LeNet-5: conv20-conv50-fc500-fc10")
def lenet5(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return LeNet5Caffe(num_classes, input_shape)
