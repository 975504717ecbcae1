"""Accuracy under input corruptions (Hooker et al. 2019; Liebenwein et al. 2021): pruned models can
keep test accuracy yet lose robustness. Corruptions act on normalised input batches, seeded.

Eleven corruptions at severities 1..5 in the spirit of ImageNet-C (Hendrycks & Dietterich 2019), in
plain tensor ops, grouped in families (``noise``, ``blurring``, ``weather``, ``digital``; see
:func:`families`). Convention: every corruption takes and returns a *normalised* batch; amounts are
in normalised units or, where a pixel range is needed, fractions of each image's own per-channel
range (its minimum and maximum stand in for black and white)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit._registry import Registry, did_you_mean
from prunekit.metrics.accuracy import evaluate
from prunekit.metrics.batches import model_device

Corruption = Callable[[Tensor, int, torch.Generator], Tensor]
#: name → ``corrupt(batch, severity 1..5, generator) -> batch``.
CORRUPTIONS: Registry[Corruption] = Registry("corruption")
#: The corruptions a recipe evaluates unless told otherwise: cheap, one per family but weather.
DEFAULT_CORRUPTIONS = ("gaussian_noise", "blur", "contrast")


@CORRUPTIONS.register("gaussian_noise", family="noise")
def gaussian_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Additive Gaussian noise with std 0.1·severity (in normalised units)."""
    return x + 0.1 * severity * torch.randn(x.shape, generator=generator).to(x)


@CORRUPTIONS.register("blur", family="blurring")
def blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Box blur per channel (reflect padding) with radius ``max(1, round(severity · size / 64))``, so a
    severity blurs 8×8, 28×28 and 32×32 images comparably (radius 1 for MNIST at 3, 2 for CIFAR-10)."""
    radius = max(1, round(severity * min(x.shape[-2:]) / 64))
    k = 2 * radius + 1
    channels = x.shape[1]
    kernel = torch.full((channels, 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="reflect"), kernel, groups=channels)


@CORRUPTIONS.register("contrast", family="digital")
def contrast(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Contrast reduced toward each image's mean by 1 − 0.15·severity."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (1.0 - 0.15 * severity)


# ---- helpers for the corruptions that need a pixel range ---------------------------------------
# Batches arrive normalised ((x − mean) / std per channel), and no corruption is told mean and std.
# Where a corruption needs "black" and "white" (salt and pepper, saturation, quantisation), each
# image's own per-channel minimum and maximum stand in for them: they are what 0 and 1 map to for a
# typical image, and the result is the same whatever normalisation the dataset uses.


def _range(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image, per-channel minimum and span (span ≥ 1e-6) of ``x`` (N, C, H, W)."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    return lo, (x.amax(dim=(2, 3), keepdim=True) - lo).clamp_min(1e-6)


def _draw(shape: tuple[int, ...], generator: torch.Generator, like: Tensor, uniform: bool = False) -> Tensor:
    """Seeded noise drawn on the CPU (so it is device-independent), moved to ``like``'s device and dtype."""
    noise = torch.rand(shape, generator=generator) if uniform else torch.randn(shape, generator=generator)
    return noise.to(like)


def _line_kernel(length: int, direction: int) -> Tensor:
    """A (length × length) line of 1/length through the centre: 0 horizontal, 1 vertical, 2 and 3 diagonals."""
    eye = torch.eye(length)
    kernel = {0: torch.zeros(length, length).index_fill_(0, torch.tensor([length // 2]), 1.0),
              1: torch.zeros(length, length).index_fill_(1, torch.tensor([length // 2]), 1.0),
              2: eye, 3: eye.flip(1)}[direction]
    return kernel / length


def _dct_matrix(n: int = 8) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``D @ block @ D.T`` transforms an n×n block)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(torch.pi * (2 * i + 1) * k / (2 * n)) * (2 / n) ** 0.5
    d[0] /= 2**0.5
    return d


#: The JPEG standard's luminance quantisation table (ITU T.81, Annex K), at quality 50.
_JPEG_TABLE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float64)


def jpeg_table(quality: int) -> Tensor:
    """The luminance table scaled to ``quality`` (1..100) as libjpeg does, entries at least 1."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return torch.floor((_JPEG_TABLE * scale + 50) / 100).clamp_min(1)


@CORRUPTIONS.register("shot_noise", family="noise")
def shot_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Poisson-like noise: with ``p`` the pixel in each image's own range mapped to [0, 1], adds
    ``sqrt(p / λ)``·N(0, 1) for λ = 60, 25, 12, 5, 3 photons (ImageNet-C's), the normal approximation."""
    lam = (60, 25, 12, 5, 3)[severity - 1]
    lo, span = _range(x)
    p = (x - lo) / span
    return x + span * (p.clamp_min(0) / lam).sqrt() * _draw(tuple(x.shape), generator, x)


@CORRUPTIONS.register("impulse_noise", family="noise")
def impulse_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Salt and pepper: a fraction 0.03, 0.06, 0.09, 0.17, 0.27 of the values (ImageNet-C's), half set
    to each image's per-channel minimum and half to its maximum."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    lo, span = _range(x)
    u = _draw(tuple(x.shape), generator, x, uniform=True)
    return torch.where(u < amount / 2, lo, torch.where(u > 1 - amount / 2, lo + span, x))


@CORRUPTIONS.register("motion_blur", family="blurring")
def motion_blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """A line blur of length ``2r + 1``, ``r = ceil(severity · size / 32)`` (1..5 at 28×28 and 32×32), in
    one seeded direction per batch (horizontal, vertical or a diagonal), reflect padding."""
    radius = math.ceil(severity * min(x.shape[-2:]) / 32)
    radius = min(radius, min(x.shape[-2:]) - 1)  # reflect padding needs r < size
    direction = int(torch.randint(4, (1,), generator=generator))
    channels = x.shape[1]
    kernel = _line_kernel(2 * radius + 1, direction).to(x).expand(channels, 1, -1, -1)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="reflect"), kernel, groups=channels)


@CORRUPTIONS.register("brightness", family="weather")
def brightness(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Brighter by 0.1·severity of each image's per-channel range, saturating at its maximum."""
    lo, span = _range(x)
    return torch.minimum(x + 0.1 * severity * span, lo + span)


@CORRUPTIONS.register("fog", family="weather")
def fog(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Fog-like haze: a seeded low-frequency field (4×4 and 8×8 normal grids upsampled bilinearly, shared
    by the channels, rescaled to [0, 1] per image) times 0.15, 0.25, 0.35, 0.5, 0.7 of each image's
    per-channel range, added."""
    n, _, h, w = x.shape
    field = sum(scale * F.interpolate(_draw((n, 1, g, g), generator, x), size=(h, w), mode="bilinear", align_corners=False)
                for g, scale in ((4, 1.0), (8, 0.5)))
    low, field_span = _range(field)
    _, span = _range(x)
    return x + (0.15, 0.25, 0.35, 0.5, 0.7)[severity - 1] * span * (field - low) / field_span


@CORRUPTIONS.register("pixelate", family="digital")
def pixelate(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Each block of 1×2, 2×2, 2×3, 3×3, 3×4 pixels (rows × columns; from the top left, edge blocks
    replicate-padded) replaced by its mean: whole blocks, so a higher severity always keeps less detail."""
    bh, bw = ((1, 2), (2, 2), (2, 3), (3, 3), (3, 4))[severity - 1]
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, -w % bw, 0, -h % bh), mode="replicate") if h % bh or w % bw else x
    return F.avg_pool2d(padded, (bh, bw)).repeat_interleave(bh, 2).repeat_interleave(bw, 3)[..., :h, :w]


@CORRUPTIONS.register("jpeg", family="digital")
def jpeg(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """JPEG-like compression: each channel in 8×8 blocks (replicate-padded), DCT-II coefficients rounded
    to the luminance table at quality 25, 18, 15, 10, 7 (ImageNet-C's) on 0..255 of each image's range."""
    quality = (25, 18, 15, 10, 7)[severity - 1]
    n, c, h, w = x.shape
    lo, span = _range(x)
    pixels = ((x - lo) / span * 255 - 128).double()
    ph, pw = -h % 8, -w % 8
    pixels = F.pad(pixels, (0, pw, 0, ph), mode="replicate") if ph or pw else pixels
    blocks = pixels.unfold(2, 8, 8).unfold(3, 8, 8)  # N, C, H/8, W/8, 8, 8
    d, table = _dct_matrix().to(blocks.device), jpeg_table(quality).to(blocks.device)
    coefficients = torch.round(d @ blocks @ d.T / table) * table
    restored = (d.T @ coefficients @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h + ph, w + pw)[..., :h, :w]
    return ((restored + 128).clamp(0, 255) / 255).to(x) * span + lo


@CORRUPTIONS.register("affine", family="digital")
def affine(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """A seeded rotation by ±5·severity degrees and a shift by 0.03·severity of the size in a seeded
    direction, per image (bilinear, border padding): the magnitudes are fixed, only the signs drawn."""
    n = x.shape[0]
    draws = torch.rand((n, 2), generator=generator, dtype=torch.float64)
    angle = torch.deg2rad(torch.tensor(5.0 * severity, dtype=torch.float64)) * torch.where(draws[:, 0] < 0.5, -1.0, 1.0)
    heading = 2 * torch.pi * draws[:, 1]
    shift = 2 * 0.03 * severity  # affine_grid coordinates span 2 per side
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift * torch.cos(heading)], 1),
                         torch.stack([sin, cos, shift * torch.sin(heading)], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
    corruptions: Iterable[str] = DEFAULT_CORRUPTIONS,
    severity: int = 3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    label: str = "",
) -> dict[str, float]:
    """Test accuracy of ``model`` on every corrupted copy of ``batches`` (same noise for every model).

    ``corruptions`` holds names, family names or ``"all"`` (see :func:`expand_corruptions`).

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
    for name in expand_corruptions(corruptions):
        corrupted = _Corrupted(batches, CORRUPTIONS.get(name), severity, seed, device)
        results[name] = evaluate(model, corrupted, device=device, progress=progress, description=f"{label} {name}".strip()).accuracy
    return results



def families() -> dict[str, tuple[str, ...]]:
    """Family → its registered corruptions (sorted), from each entry's ``family`` (``"other"`` if unset)."""
    out: dict[str, list[str]] = {}
    for name in CORRUPTIONS.names():
        out.setdefault(CORRUPTIONS.meta(name).get("family", "other"), []).append(name)
    return {family: tuple(names) for family, names in sorted(out.items())}


def expand_corruptions(names: Iterable[str]) -> tuple[str, ...]:
    """Corruption names with ``"all"`` and family names (``"noise"``...) expanded, in order, without repeats.

    Raises :class:`ValueError` naming the unknown entry and the allowed names and families."""
    groups = {"all": tuple(CORRUPTIONS.names()), **families()}
    out: list[str] = []
    for name in names:
        if name in groups:
            out.extend(groups[name])
        elif name in CORRUPTIONS:
            out.append(name)
        else:
            raise ValueError(f"unknown corruption {name!r}{did_you_mean(name, [*groups, *CORRUPTIONS.names()])}; allowed: 'all', "
                             f"families {', '.join(repr(f) for f in families())} or names {', '.join(repr(n) for n in CORRUPTIONS.names())}")
    return tuple(dict.fromkeys(out))


def corruption_summary(dense: Mapping[str, float], pruned: Mapping[str, float]) -> dict[str, Any]:
    """Mean corruption accuracy of dense and pruned, overall and per family, and the relative drop.

    ``dense`` and ``pruned`` map corruption names to accuracies (as :func:`corruption_accuracy` returns,
    same names in both). ``relative_drop`` is ``(dense_mean − pruned_mean) / dense_mean`` (0 when the
    dense mean is 0): the fraction of the dense model's corrupted accuracy that pruning lost."""
    if set(dense) != set(pruned) or not dense:
        raise ValueError(f"dense and pruned must report the same, non-empty corruptions; got {sorted(dense)} and {sorted(pruned)}")

    def means(names: Iterable[str]) -> dict[str, float]:
        names = list(names)
        d, p = sum(dense[n] for n in names) / len(names), sum(pruned[n] for n in names) / len(names)
        return {"dense": d, "pruned": p, "relative_drop": (d - p) / d if d else 0.0}

    by_family = {family: means(n for n in names if n in dense) for family, names in families().items() if any(n in dense for n in names)}
    return {"mean": means(dense), "families": by_family}
