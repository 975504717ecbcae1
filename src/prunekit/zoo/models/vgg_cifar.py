"""VGG-16 for CIFAR with batch norm (as in Li et al. 2017, "Pruning Filters for Efficient ConvNets")."""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.zoo.models.registry import register_model

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGGCifar(nn.Module):
    """13 conv-BN-ReLU layers, global pooling, and a 512-512-classes head."""

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for item in _VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False), nn.BatchNorm2d(int(item)), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


@register_model("vgg16", input_shape=(3, 32, 32), description="VGG-16 with BN for CIFAR (Li et al. 2017)")
def vgg16(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return VGGCifar(num_classes, input_shape)
