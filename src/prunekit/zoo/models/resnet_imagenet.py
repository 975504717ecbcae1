"""ImageNet-style bottleneck ResNet-50 (He et al. 2016), for 224×224 speed and engine benchmarks."""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.zoo.models.registry import register_model


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4), projection shortcut when shapes change."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class ResNetImageNet(nn.Module):
    """Stem (7×7/2 + max-pool), four bottleneck stages, global pooling, linear head."""

    def __init__(self, blocks: tuple[int, ...], num_classes: int = 1000, input_shape: tuple[int, int, int] = (3, 224, 224)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes, stages = 64, []
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            layers = []
            for j in range(count):
                layers.append(Bottleneck(in_planes, planes, 2 if (j == 0 and i > 0) else 1))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.pool(x)))


@register_model("resnet50", input_shape=(3, 224, 224), description="ImageNet-style ResNet-50 (bottleneck)")
def resnet50(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return ResNetImageNet((3, 4, 6, 3), num_classes, input_shape)
