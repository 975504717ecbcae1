"""The full corruption suite: every type at every severity keeps shape and dtype, is seeded,
grows with severity, differs from every other type; the hand-checkable ones by hand; families,
name expansion and the dense-vs-pruned summary."""

import itertools

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn import functional as F

from prunekit.experiment.recipe_base import EvaluateSection
from prunekit.metrics import CORRUPTIONS, corruption_accuracy, corruption_summary, expand_corruptions, families
from prunekit.metrics.corruptions import _dct_matrix, jpeg_table

NAMES = CORRUPTIONS.names()
SEEDED = ["gaussian_noise", "shot_noise", "impulse_noise", "fog", "affine"]  # draw per element or per image


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, channels: int, size: int) -> torch.Tensor:
    """Normalised synthetic images: smooth blobs plus 3-pixel strokes, pixels in [0, 1] before (x − 0.5) / 0.25."""
    g = _g(1)
    base = F.interpolate(torch.rand(n, channels, 4, 4, generator=g), size=(size, size), mode="bilinear")
    strokes = F.max_pool2d((torch.rand(n, 1, size, size, generator=g) > 0.9).float(), 3, 1, 1)
    return ((0.6 * base + 0.4 * strokes).clamp(0, 1) - 0.5) / 0.25


def distortion(name: str, x: torch.Tensor, severity: int) -> float:
    """RMS change relative to the batch's standard deviation."""
    out = CORRUPTIONS.get(name)(x, severity, _g())
    return float(((out - x).pow(2).mean() / x.var()).sqrt())


def test_the_suite_has_eleven_types_in_four_families() -> None:
    assert families() == {"blurring": ("blur", "motion_blur"), "digital": ("affine", "contrast", "jpeg", "pixelate"),
                          "noise": ("gaussian_noise", "impulse_noise", "shot_noise"), "weather": ("brightness", "fog")}
    assert len(NAMES) == 11


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 32), (2, 2, 13, 10)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_type_and_severity_keeps_shape_dtype_and_input(shape, dtype) -> None:
    x = torch.randn(shape, generator=_g(2)).to(dtype)
    before = x.clone()
    for name, severity in itertools.product(NAMES, range(1, 6)):
        out = CORRUPTIONS.get(name)(x, severity, _g())
        assert out.shape == x.shape and out.dtype == dtype, (name, severity)
        assert torch.isfinite(out).all(), (name, severity)
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batch_other_seed_other_noise(name) -> None:
    x = images(4, 3, 32)
    corrupt = CORRUPTIONS.get(name)
    assert torch.equal(corrupt(x, 4, _g(7)), corrupt(x, 4, _g(7)))
    if name in SEEDED:
        assert not torch.equal(corrupt(x, 4, _g(7)), corrupt(x, 4, _g(8)))


#: Weighted sums of each corruption of a fixed batch at severity 5, seed 5, recorded once: a
#: fresh process (or a different global RNG state) must draw exactly these batches again.
RECORDED = {"affine": 149.451092, "blur": 126.65284, "brightness": 452.438471, "contrast": 177.90136, "fog": 450.296917,
            "gaussian_noise": 129.257664, "impulse_noise": 124.685269, "jpeg": 126.554909, "motion_blur": 125.045401,
            "pixelate": 127.264647, "shot_noise": 132.657164}


def test_corrupted_batches_depend_only_on_the_seed() -> None:
    torch.manual_seed(999)  # the global RNG plays no part
    x = torch.linspace(-2, 2, 2 * 3 * 16 * 16, dtype=torch.float64).reshape(2, 3, 16, 16)
    x = (3 * x).sin() + 0.5 * x
    w = torch.linspace(0, 1, x.numel(), dtype=torch.float64).reshape(x.shape)
    sums = {n: float((CORRUPTIONS.get(n)(x, 5, _g(5)) * w).sum()) for n in NAMES}
    assert sums == pytest.approx(RECORDED, abs=1e-5)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_distortion_grows_with_severity(name, size, channels) -> None:
    x = images(32, channels, size)
    gaps = [distortion(name, x, s) for s in range(1, 6)]
    assert gaps == sorted(gaps), gaps
    assert gaps[4] > 1.2 * gaps[0], gaps  # severity 5 clearly harder than 1


def test_every_type_differs_in_effect_from_every_other() -> None:
    x = images(4, 3, 32)
    outs = {name: CORRUPTIONS.get(name)(x, 3, _g()) for name in NAMES}
    for a, b in itertools.combinations(NAMES, 2):
        assert (outs[a] - outs[b]).abs().mean() > 0.02, (a, b)


def test_brightness_adds_a_tenth_of_the_range_per_severity_and_saturates() -> None:
    x = torch.tensor([0.0, 1.0, 9.0, 10.0]).reshape(1, 1, 2, 2)  # range 0..10
    assert torch.allclose(CORRUPTIONS.get("brightness")(x, 2, _g()), torch.tensor([2.0, 3.0, 10.0, 10.0]).reshape(1, 1, 2, 2))


def test_impulse_noise_sets_values_to_the_images_own_extremes() -> None:
    x = torch.rand(2, 2, 50, 50, generator=_g(3)) * torch.tensor([1.0, 4.0]).reshape(1, 2, 1, 1)
    out = CORRUPTIONS.get("impulse_noise")(x, 5, _g())  # 27% of the values
    changed = out != x
    assert float(changed.float().mean()) == pytest.approx(0.27, abs=0.01)
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    assert torch.all((out == lo.expand_as(x)) | (out == hi.expand_as(x)) | ~changed)


def test_shot_noise_spares_the_darkest_pixels_and_grows_with_brightness() -> None:
    x = torch.zeros(1, 1, 64, 64)
    x[..., 32:] = 1.0
    out = CORRUPTIONS.get("shot_noise")(x, 5, _g())  # λ = 3: std sqrt(1/3) at the brightest
    assert torch.equal(out[..., :32], x[..., :32])
    assert float((out[..., 32:] - 1).std()) == pytest.approx(3 ** -0.5, rel=0.05)


def test_pixelate_replaces_blocks_by_their_mean() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = CORRUPTIONS.get("pixelate")(x, 2, _g())  # 2×2 blocks
    assert torch.equal(out[0, 0], torch.tensor([[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5],
                                               [10.5, 10.5, 12.5, 12.5], [10.5, 10.5, 12.5, 12.5]]))
    y = torch.arange(25.0).reshape(1, 1, 5, 5)
    # the bottom-right 3×3 block is rows and columns 3, 4, 4 (padded with copies): mean of 18, 19, 19, 23, 24, 24, 23, 24, 24
    assert CORRUPTIONS.get("pixelate")(y, 4, _g())[0, 0, 4, 4] == 22.0  # 3×3 blocks
    assert torch.equal(CORRUPTIONS.get("pixelate")(x, 1, _g())[0, 0, 0], torch.tensor([0.5, 0.5, 2.5, 2.5]))  # 1×2 blocks


def test_motion_blur_of_a_point_is_a_line() -> None:
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 16, 16] = 1.0
    out = CORRUPTIONS.get("motion_blur")(x, 3, _g())[0, 0]  # r = ceil(3·32/32) = 3: 7 pixels of 1/7
    assert int((out > 0).sum()) == 7 and torch.allclose(out[out > 0], torch.full((7,), 1 / 7))
    assert float(out.sum()) == pytest.approx(1.0)


def test_fog_adds_a_smooth_nonnegative_haze_up_to_its_amplitude() -> None:
    x = torch.rand(2, 3, 32, 32, generator=_g(4))
    haze = CORRUPTIONS.get("fog")(x, 5, _g()) - x
    span = x.amax(dim=(2, 3), keepdim=True) - x.amin(dim=(2, 3), keepdim=True)
    assert haze.min() >= -1e-6 and torch.all(haze.amax(dim=(2, 3), keepdim=True) <= 0.7 * span + 1e-5)
    steps = (haze[..., 1:] - haze[..., :-1]).abs().max()
    assert steps < 0.2 * haze.max()  # low frequency: neighbours differ by a small part of the haze


def test_jpeg_building_blocks() -> None:
    d = _dct_matrix().double()
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64))
    assert jpeg_table(50)[0, 0] == 16 and jpeg_table(10)[0, 0] == 80 and jpeg_table(100).eq(1).all()
    flat = torch.full((1, 1, 16, 16), 0.3)  # constant image: its DC survives quantisation
    assert torch.allclose(CORRUPTIONS.get("jpeg")(flat, 5, _g()), flat)


def test_affine_keeps_a_constant_image() -> None:
    flat = torch.full((2, 1, 16, 16), -0.4)
    assert torch.allclose(CORRUPTIONS.get("affine")(flat, 5, _g()), flat)


def test_expand_corruptions() -> None:
    assert expand_corruptions(["all"]) == tuple(NAMES)
    # names as given, families expanded in place, repeats dropped; "blur" is the box blur, "blurring" its family
    assert expand_corruptions(["blur", "weather", "noise", "fog"]) == ("blur", "brightness", "fog", "gaussian_noise", "impulse_noise", "shot_noise")
    assert expand_corruptions(["blurring"]) == ("blur", "motion_blur")
    with pytest.raises(ValueError, match=r"unknown corruption 'fgo'; did you mean 'fog'\?; allowed: 'all', families 'blurring'"):
        expand_corruptions(["fgo"])


def test_recipe_setting_accepts_all_and_families_and_keeps_the_cheap_default() -> None:
    assert EvaluateSection().corruptions == ("gaussian_noise", "blur", "contrast")
    assert EvaluateSection(corruptions=["all"]).corruptions == tuple(NAMES)
    assert EvaluateSection(corruptions=["weather"]).corruptions == ("brightness", "fog")
    with pytest.raises(ValidationError, match="unknown corruption 'snow'"):
        EvaluateSection(corruptions=["snow"])


class Constant(nn.Module):
    """Always predicts class ``k`` (of 3)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.full((len(x),), self.k), 3).float()


def test_mean_corruption_accuracy_and_relative_drop_on_fake_models() -> None:
    batches = [(torch.rand(4, 1, 8, 8, generator=_g(4)), torch.tensor([0, 0, 1, 0])),
               (torch.rand(4, 1, 8, 8, generator=_g(5)), torch.tensor([2, 0, 1, 1]))]
    names = ["gaussian_noise", "fog", "pixelate"]
    dense, pruned = corruption_accuracy(Constant(0), batches, names), corruption_accuracy(Constant(1), batches, names)
    assert corruption_accuracy(Constant(0), batches, ["weather"]) == {"brightness": 0.5, "fog": 0.5}  # a family by name
    summary = corruption_summary(dense, pruned)
    assert summary["mean"] == {"dense": 0.5, "pruned": 0.375, "relative_drop": 0.25}
    assert summary["families"] == {"digital": {"dense": 0.5, "pruned": 0.375, "relative_drop": 0.25},
                                   "noise": {"dense": 0.5, "pruned": 0.375, "relative_drop": 0.25},
                                   "weather": {"dense": 0.5, "pruned": 0.375, "relative_drop": 0.25}}
    mixed = corruption_summary({"blur": 0.8, "motion_blur": 0.6, "fog": 0.0}, {"blur": 0.6, "motion_blur": 0.6, "fog": 0.1})
    assert mixed["families"]["blurring"] == pytest.approx({"dense": 0.7, "pruned": 0.6, "relative_drop": 0.1 / 0.7})
    assert mixed["families"]["weather"] == {"dense": 0.0, "pruned": 0.1, "relative_drop": 0.0}
    with pytest.raises(ValueError, match="same, non-empty corruptions"):
        corruption_summary({"blur": 0.5}, {"fog": 0.5})
