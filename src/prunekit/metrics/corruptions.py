"""Accuracy under input corruptions (Hooker et al. 2019; Liebenwein et al. 2021): pruned models can
keep test accuracy yet lose robustness. Corruptions act on normalised input batches, seeded."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit._registry import Registry
from prunekit.metrics.accuracy import evaluate

Corruption = Callable[[Tensor, int, torch.Generator], Tensor]
#: name → ``corrupt(batch, severity 1..5, generator) -> batch``.
CORRUPTIONS: Registry[Corruption] = Registry("corruption")


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Additive Gaussian noise with std 0.1·severity (in normalised units)."""
    return x + 0.1 * severity * torch.randn(x.shape, generator=generator).to(x)


@CORRUPTIONS.register("blur")
def blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Box blur per channel (reflect padding) with radius ``max(1, round(severity · size / 64))``, so a
    severity blurs 8×8, 28×28 and 32×32 images comparably (radius 1 for MNIST at 3, 2 for CIFAR-10)."""
    radius = max(1, round(severity * min(x.shape[-2:]) / 64))
    k = 2 * radius + 1
    channels = x.shape[1]
    kernel = torch.full((channels, 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="reflect"), kernel, groups=channels)


@CORRUPTIONS.register("contrast")
def contrast(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Contrast reduced toward each image's mean by 1 − 0.15·severity."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (1.0 - 0.15 * severity)


def corruption_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    corruptions: Iterable[str] = ("gaussian_noise", "blur", "contrast"),
    severity: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Test accuracy of ``model`` on every corrupted copy of ``batches`` (same noise for every model)."""
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    batches = list(batches)
    results = {}
    for name in corruptions:
        corrupt = CORRUPTIONS.get(name)
        generator = torch.Generator().manual_seed(seed)
        corrupted = [(corrupt(x, severity, generator), y) for x, y in batches]
        results[name] = evaluate(model, corrupted, device=device).accuracy
    return results
