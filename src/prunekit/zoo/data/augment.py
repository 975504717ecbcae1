"""Batch augmentation in plain tensor ops, driven by an explicit ``torch.Generator``.

The random draws come from ``generator`` (a CPU generator); the batch may live on any device.
Augmentations take a batch of raw images (N, C, H, W) (uint8 as stored, before normalisation,
so zero padding means black pixels, as in torchvision's ``RandomCrop(32, padding=4)``) and a
generator, and return a batch of the same shape and dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class Augment(Protocol):
    """``augment(images, generator) -> images`` on a raw (N, C, H, W) batch."""

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor: ...


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad each image by ``padding`` on every side and crop a random window of the original size.

    Each image gets its own offset, drawn uniformly from ``0..2*padding`` in each direction.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return images
    n, c, h, w = images.shape
    ph, pw = h + 2 * padding, w + 2 * padding
    padded = images.new_zeros((n, c, ph, pw))
    padded[:, :, padding : padding + h, padding : padding + w] = images
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    # One flat gather (faster than advanced indexing on 4 dims): the window of image i starts at
    # i*c*ph*pw + top*pw + left; inside it, pixel (ch, y, x) sits at ch*ph*pw + y*pw + x.
    dev = images.device
    start = torch.arange(n, device=dev) * (c * ph * pw) + top * pw + left
    window = torch.arange(c, device=dev)[:, None, None] * (ph * pw) + torch.arange(h, device=dev)[:, None] * pw
    window = (window + torch.arange(w, device=dev)).view(-1)
    return padded.view(-1)[start[:, None] + window].view(n, c, h, w)


def random_hflip(images: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1], got {p}")
    flip = (torch.rand(images.shape[0], generator=generator) < p).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class CropFlip:
    """Random crop with zero padding, then horizontal flip: the standard CIFAR augmentation."""

    padding: int = 4
    flip_p: float = 0.5

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return random_hflip(random_crop(images, self.padding, generator), self.flip_p, generator)


def random_resized_crop(
    images: Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Tensor:
    """Crop a random box of each image and resize it back to the image's size (bilinear).

    As torchvision's ``RandomResizedCrop``: the box covers a fraction of the area drawn uniformly
    from ``scale`` with an aspect ratio drawn log-uniformly from ``ratio``; of ``attempts`` draws
    per image the first that fits is used, else the centred box of the largest in-range ratio.
    Runs on the fixed-size batch (not the original files) and keeps its dtype (uint8 rounded).
    """
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {ratio}")
    n, _, h, w = images.shape
    area = torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=generator) * (h * w)
    log_ratio = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_ratio.exp()
    box_w = (area * aspect).sqrt().round()
    box_h = (area / aspect).sqrt().round()
    fits = (box_w >= 1) & (box_h >= 1) & (box_w <= w) & (box_h <= h)
    u_top, u_left = torch.rand(n, attempts, generator=generator), torch.rand(n, attempts, generator=generator)
    first = fits.to(torch.int8).argmax(1, keepdim=True)
    bh, bw = box_h.gather(1, first)[:, 0], box_w.gather(1, first)[:, 0]
    top = (u_top.gather(1, first)[:, 0] * (h - bh + 1)).floor()
    left = (u_left.gather(1, first)[:, 0] * (w - bw + 1)).floor()
    fallback = ~fits.any(1)
    if fallback.any():
        ch, cw = _central_box(h, w, ratio)
        bh, bw = bh.where(~fallback, torch.tensor(ch)), bw.where(~fallback, torch.tensor(cw))
        top, left = top.where(~fallback, torch.tensor((h - ch) // 2)), left.where(~fallback, torch.tensor((w - cw) // 2))
    return resample_boxes(images, top, left, bh, bw)


def _central_box(h: int, w: int, ratio: tuple[float, float]) -> tuple[float, float]:
    """Height and width of torchvision's fallback box: the whole image, clamped to ``ratio``."""
    if w / h < ratio[0]:
        return float(round(w / ratio[0])), float(w)
    if w / h > ratio[1]:
        return float(h), float(round(h * ratio[1]))
    return float(h), float(w)


def resample_boxes(images: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor) -> Tensor:
    """Resize box ``i`` (pixel ``top``/``left``/``height``/``width``) of image ``i`` to the image's size.

    Bilinear, equal to ``F.interpolate(crop, size, mode="bilinear", align_corners=False)`` of each crop.
    """
    n, _, h, w = images.shape
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width / w, (2 * left + width) / w - 1
    theta[:, 1, 1], theta[:, 1, 2] = height / h, (2 * top + height) / h - 1
    theta = theta.to(images.device)
    grid = torch.nn.functional.affine_grid(theta, [n, 1, h, w], align_corners=False)
    # Clamp to the box's outer pixel centres: the box's edge pixels repeat, as when resizing a crop.
    low = torch.stack([(2 * left + 1) / w - 1, (2 * top + 1) / h - 1], 1).to(grid)[:, None, None]
    high = torch.stack([(2 * (left + width) - 1) / w - 1, (2 * (top + height) - 1) / h - 1], 1).to(grid)[:, None, None]
    grid = torch.maximum(torch.minimum(grid, high), low)
    out = torch.nn.functional.grid_sample(images.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False)
    if images.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(images.dtype)


@dataclass(frozen=True)
class ResizedCropFlip:
    """Random resized crop, then horizontal flip: the standard ImageNet training augmentation."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return random_hflip(random_resized_crop(images, generator, self.scale, self.ratio), self.flip_p, generator)
