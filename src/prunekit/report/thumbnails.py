"""A grid of small image thumbnails with captions (e.g. the PIE examples of a run), as a matplotlib figure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

#: The most thumbnails one grid shows (the rest are left out; the run's JSON lists them all).
MAX_THUMBNAILS = 32


def denormalize(images: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Tensor:
    """Normalised (K, C, H, W) images back to [0, 1]: ``x · std + mean`` per channel, clamped; without
    ``mean``/``std`` each image is stretched from its own minimum to its maximum."""
    x = images.detach().float().cpu()
    if mean is not None and std is not None:
        if len(mean) != x.shape[1] or len(std) != x.shape[1]:
            raise ValueError(f"mean and std need {x.shape[1]} values (one per channel), got {len(mean)} and {len(std)}")
        return (x * x.new_tensor(std).view(1, -1, 1, 1) + x.new_tensor(mean).view(1, -1, 1, 1)).clamp(0, 1)
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    return (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)


def thumbnail_grid(images: Tensor, captions: Sequence[str], mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   columns: int = 8, title: str = "") -> Figure:
    """The first :data:`MAX_THUMBNAILS` of ``images`` (normalised (K, C, H, W), see :func:`denormalize`),
    each with its caption below, ``columns`` per row. Raises :class:`ValueError` without images or
    with a caption count that differs from the image count."""
    if len(images) == 0:
        raise ValueError("thumbnail_grid needs at least one image")
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    shown = denormalize(images[:MAX_THUMBNAILS], mean, std)
    cols = min(columns, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.55 * rows + (0.3 if title else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(shown):
            continue
        image = shown[k].permute(1, 2, 0).numpy()
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(captions[k], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
