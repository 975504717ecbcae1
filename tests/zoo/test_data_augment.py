"""Crop and flip augmentation: shapes, exact properties, reproducibility."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.zoo.data.augment import CropFlip, random_crop, random_hflip


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 256, (n, c, h, w), generator=gen(seed), dtype=torch.uint8)


def test_shape_and_dtype_kept():
    x = images()
    out = CropFlip()(x, gen())
    assert out.shape == x.shape and out.dtype == torch.uint8


def test_no_padding_and_certain_flip_is_a_flip():
    x = images()
    assert torch.equal(CropFlip(padding=0, flip_p=1.0)(x, gen()), x.flip(-1))
    assert torch.equal(CropFlip(padding=0, flip_p=0.0)(x, gen()), x)


def test_flip_is_per_image_all_or_nothing():
    x = images(n=64)
    out = random_hflip(x, 0.5, gen(3))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert torch.all(flipped ^ kept)
    assert 10 < int(flipped.sum()) < 54  # both outcomes occur


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), padding=st.integers(1, 4), seed=st.integers(0, 999))
def test_crop_is_a_window_of_the_zero_padded_image(n, c, h, w, padding, seed):
    x = images(n, c, h, w, seed)
    out = random_crop(x, padding, gen(seed))
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    for o, p in zip(out, padded):
        windows = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1) if torch.equal(o, p[:, dy : dy + h, dx : dx + w])]
        assert windows, "crop is not a window of the padded image"


def test_crop_offsets_cover_the_range():
    x = images(n=256, h=8, w=8)
    out = random_crop(x, 2, gen())
    # pixel values are >= 1, so zero rows/cols reveal the padding that entered the window
    top_pad = (out[:, 0, 0, :] == 0).all(dim=1).sum()
    untouched = sum(torch.equal(o, i) for o, i in zip(out, x))
    assert top_pad > 0 and untouched > 0


def test_same_seed_same_output_different_seed_different():
    x = images(n=32)
    assert torch.equal(CropFlip()(x, gen(5)), CropFlip()(x, gen(5)))
    assert not torch.equal(CropFlip()(x, gen(5)), CropFlip()(x, gen(6)))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="padding"):
        random_crop(images(), -1, gen())
    with pytest.raises(ValueError, match="probability"):
        random_hflip(images(), 1.5, gen())
