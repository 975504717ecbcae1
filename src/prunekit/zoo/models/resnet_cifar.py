"""CIFAR ResNets (He et al. 2016, §4.2) with 1×1-conv + BN shortcuts where shapes change."""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.zoo.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity or projection shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) with stages of 16, 32 and 64 channels."""

    def __init__(self, depth: int, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for i in range(blocks):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


def cifar_resnet(depth: int, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> CifarResNet:
    """Any CIFAR ResNet depth 6n+2 (e.g. for depth series beyond the registered ones)."""
    return CifarResNet(depth, num_classes, input_shape)


def _make(depth: int):
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        return CifarResNet(depth, num_classes, input_shape)

    build.__name__ = f"resnet{depth}"
    return build


for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}", input_shape=(3, 32, 32), description=f"CIFAR ResNet-{_depth}")(_make(_depth))
