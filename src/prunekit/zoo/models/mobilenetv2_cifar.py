"""MobileNetV2 (Sandler et al. 2018) adapted to 32×32 inputs: stride 1 in the stem and first stages."""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.zoo.models.registry import register_model

# (expansion t, output channels c, repeats n, first stride s); CIFAR variant keeps early strides at 1.
_CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _round(channels: float, divisor: int = 8) -> int:
    return max(divisor, int(channels + divisor / 2) // divisor * divisor)


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise 3×3 → project (1×1), residual when shapes match."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_planes * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(in_planes, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_planes == out_planes

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Cifar(nn.Module):
    """MobileNetV2 with a width multiplier; 1280-channel last conv, global pooling, linear head."""

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32), width_mult: float = 1.0) -> None:
        super().__init__()
        stem = _round(32 * width_mult)
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6()]
        channels = stem
        for t, c, n, s in _CFG:
            out = _round(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, t, s if i == 0 else 1))
                channels = out
        last = _round(1280 * max(1.0, width_mult))
        layers += [nn.Conv2d(channels, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


@register_model("mobilenetv2", input_shape=(3, 32, 32), description="MobileNetV2 for CIFAR (stride-1 stem)")
def mobilenetv2(num_classes: int, input_shape: tuple[int, int, int], width_mult: float = 1.0) -> nn.Module:
    return MobileNetV2Cifar(num_classes, input_shape, width_mult)
