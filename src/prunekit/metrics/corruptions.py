"""Accuracy under input corruptions (Hooker et al. 2019; Liebenwein et al. 2021): pruned models can
keep test accuracy yet lose robustness. Corruptions act on normalised input batches, seeded."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit._registry import Registry
from prunekit.metrics.accuracy import evaluate
from prunekit.metrics.batches import model_device

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


class _Corrupted:
    """``batches`` corrupted on ``device``, re-iterable: every pass draws the same noise (seeded)."""

    def __init__(self, batches: Iterable[tuple[Tensor, Tensor]], corrupt: Corruption, severity: int, seed: int, device: torch.device) -> None:
        self.batches, self.corrupt, self.severity, self.seed, self.device = batches, corrupt, severity, seed, device

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        for x, y in self.batches:
            yield self.corrupt(x.to(self.device), self.severity, generator), y


def corruption_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    corruptions: Iterable[str] = ("gaussian_noise", "blur", "contrast"),
    severity: int = 3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    label: str = "",
) -> dict[str, float]:
    """Test accuracy of ``model`` on every corrupted copy of ``batches`` (same noise for every model).

    Batches are corrupted one at a time on ``device`` (default: the model's); noise is drawn on the
    CPU from one seeded generator, so it does not depend on the device. ``batches`` must be
    re-iterable in a fixed order. ``progress`` shows one bar per corruption (described as
    ``"<label> <corruption>"``)."""
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    device = model_device(model) if device is None else torch.device(device)
    if not hasattr(batches, "__len__"):
        batches = list(batches)
    results = {}
    for name in corruptions:
        corrupted = _Corrupted(batches, CORRUPTIONS.get(name), severity, seed, device)
        results[name] = evaluate(model, corrupted, device=device, progress=progress, description=f"{label} {name}".strip()).accuracy
    return results
