"""Random resized crop: exact resampling, the fallback box, reproducibility."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunekit.zoo.data.augment import ResizedCropFlip, random_resized_crop, resample_boxes


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 6, h: int = 10, w: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), generator=gen(5), dtype=torch.uint8)


def test_boxes_resample_like_interpolating_each_crop():
    x = images(4).float()
    boxes = [(2, 1, 5, 6), (0, 0, 10, 8), (1, 3, 4, 5), (3, 2, 7, 3)]  # top, left, height, width
    out = resample_boxes(x, *(torch.tensor([float(b[k]) for b in boxes]) for k in range(4)))
    expected = torch.cat([F.interpolate(x[i : i + 1, :, t : t + h, l : l + w], size=(10, 8), mode="bilinear", align_corners=False)
                          for i, (t, l, h, w) in enumerate(boxes)])
    assert torch.allclose(out, expected, atol=1e-3)
    assert torch.allclose(out[1], x[1], atol=1e-4)  # the whole image: unchanged


def test_full_scale_square_crop_is_the_identity_and_keeps_uint8():
    x = images(h=8, w=8)
    out = random_resized_crop(x, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert out.dtype == torch.uint8 and torch.equal(out, x)
    assert torch.equal(ResizedCropFlip(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)(x, gen()), x.flip(-1))


def test_no_fitting_draw_falls_back_to_the_central_box():
    x = images(h=8, w=8).float()
    out = random_resized_crop(x, gen(), scale=(1.0, 1.0), ratio=(2.0, 2.0))  # a 2:1 box of the whole area never fits
    expected = F.interpolate(x[:, :, 2:6, :], size=(8, 8), mode="bilinear", align_corners=False)  # 4 rows × 8 columns, centred
    assert torch.allclose(out, expected, atol=1e-3)


def test_seeded_and_varied():
    x = images(32)
    a, b = ResizedCropFlip()(x, gen(1)), ResizedCropFlip()(x, gen(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, ResizedCropFlip()(x, gen(2)))
    assert sum(not torch.equal(a[i], x[i]) for i in range(32)) > 28


def test_bad_ranges():
    with pytest.raises(ValueError, match="crop scale must satisfy"):
        random_resized_crop(images(), gen(), scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="crop ratio must satisfy"):
        random_resized_crop(images(), gen(), ratio=(2.0, 1.0))
