"""Conv-2/4/6 from the lottery-ticket paper (Frankle & Carbin 2019, Fig. 2)."""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.zoo.models._shape import flat_features
from prunekit.zoo.models.registry import register_model

_PLANS = {2: [64, 64, "M"], 4: [64, 64, "M", 128, 128, "M"], 6: [64, 64, "M", 128, 128, "M", 256, 256, "M"]}


class ConvNet(nn.Module):
    """VGG-like 3×3 conv stacks followed by fc256-fc256-fc(num_classes)."""

    def __init__(self, depth: int, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for item in _PLANS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(flat_features(self.features, input_shape, f"conv{depth}"), 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(x)))


def _make(depth: int):
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        return ConvNet(depth, num_classes, input_shape)

    build.__name__ = f"conv{depth}"
    return build


for _depth in _PLANS:
    register_model(f"conv{_depth}", input_shape=(3, 32, 32), description=f"Conv-{_depth} (lottery-ticket paper)")(_make(_depth))
