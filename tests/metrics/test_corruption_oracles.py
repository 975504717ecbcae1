"""The corruptions registry against hand-computed outputs: shape, dtype, range, seeding.

(``test_corruptions.py`` checks that each corruption changes its input and orders by severity;
these pin the exact values each one promises.)
"""

import pytest
import torch
from torch import nn

from prunekit.metrics import CORRUPTIONS, corruption_accuracy


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["gaussian_noise", "blur", "contrast"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_are_kept_and_the_input_untouched(name, dtype) -> None:
    x = torch.rand(3, 2, 12, 10, generator=_g(1)).to(dtype)
    before = x.clone()
    out = CORRUPTIONS.get(name)(x, 2, _g())
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(x, before)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["gaussian_noise", "blur", "contrast"])
def test_same_seed_same_output(name) -> None:
    x = torch.rand(2, 3, 8, 8, generator=_g(1))
    corrupt = CORRUPTIONS.get(name)
    assert torch.equal(corrupt(x, 3, _g(7)), corrupt(x, 3, _g(7)))


def test_noise_depends_on_the_seed_and_has_std_a_tenth_of_the_severity() -> None:
    x = torch.zeros(4, 1, 100, 100)  # 40,000 draws
    a, b = CORRUPTIONS.get("gaussian_noise")(x, 3, _g(0)), CORRUPTIONS.get("gaussian_noise")(x, 3, _g(1))
    assert not torch.equal(a, b)
    assert float(a.std()) == pytest.approx(0.1 * 3, rel=0.03)
    assert abs(float(a.mean())) < 0.01
    # the noise is the generator's standard normal draw, scaled
    assert torch.allclose(a, 0.3 * torch.randn(x.shape, generator=_g(0)))


def test_contrast_by_hand() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).reshape(1, 1, 2, 2)  # mean 1.5
    out = CORRUPTIONS.get("contrast")(x, 2, _g())  # factor 1 − 0.15·2 = 0.7
    expected = torch.tensor([1.5 - 1.5 * 0.7, 1.5 - 0.5 * 0.7, 1.5 + 0.5 * 0.7, 1.5 + 1.5 * 0.7]).reshape(1, 1, 2, 2)
    assert torch.allclose(out, expected)


def test_contrast_uses_each_images_own_mean_and_stays_within_its_range() -> None:
    x = torch.stack([torch.full((1, 2, 2), 1.0), torch.tensor([[[0.0, 4.0], [0.0, 4.0]]])])  # means 1 and 2
    out = CORRUPTIONS.get("contrast")(x, 5, _g())  # factor 0.25
    assert torch.allclose(out[0], torch.full((1, 2, 2), 1.0))
    assert torch.allclose(out[1], torch.tensor([[[1.5, 2.5], [1.5, 2.5]]]))
    y = torch.rand(3, 3, 8, 8, generator=_g(2))
    z = CORRUPTIONS.get("contrast")(y, 3, _g())
    assert z.min() >= y.min() and z.max() <= y.max()


def test_blur_of_a_point_is_a_box_of_the_promised_radius() -> None:
    # 32×32 at severity 3: radius round(3·32/64) = round(1.5) = 2, a 5×5 box of 1/25
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 16, 16] = 1.0
    out = CORRUPTIONS.get("blur")(x, 3, _g())
    expected = torch.zeros(1, 1, 32, 32)
    expected[0, 0, 14:19, 14:19] = 1 / 25
    assert torch.allclose(out, expected)
    # 28×28 (MNIST) at severity 3: radius round(3·28/64) = round(1.3125) = 1, a 3×3 box of 1/9
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 10] = 1.0
    expected = torch.zeros(1, 1, 28, 28)
    expected[0, 0, 9:12, 9:12] = 1 / 9
    assert torch.allclose(CORRUPTIONS.get("blur")(x, 3, _g()), expected)


def test_blur_keeps_channels_apart_and_values_in_range() -> None:
    x = torch.zeros(1, 2, 8, 8)
    x[0, 1, 4, 4] = 1.0  # radius max(1, round(3·8/64)) = 1
    out = CORRUPTIONS.get("blur")(x, 3, _g())
    assert torch.equal(out[0, 0], torch.zeros(8, 8))
    assert float(out[0, 1].sum()) == pytest.approx(1.0)  # an interior point keeps its mass
    y = torch.rand(2, 3, 16, 16, generator=_g(3))
    z = CORRUPTIONS.get("blur")(y, 4, _g())
    assert z.min() >= y.min() - 1e-6 and z.max() <= y.max() + 1e-6  # averages of the input


class Constant(nn.Module):
    """Always predicts class ``k`` (of 3), whatever the input."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 3)
        logits[:, self.k] = 1.0
        return logits


def test_corruption_accuracy_of_a_constant_predictor_is_its_class_frequency() -> None:
    batches = [(torch.rand(4, 1, 8, 8, generator=_g(4)), torch.tensor([0, 0, 1, 0])),
               (torch.rand(4, 1, 8, 8, generator=_g(5)), torch.tensor([2, 0, 1, 1]))]
    assert corruption_accuracy(Constant(0), batches) == {"gaussian_noise": 4 / 8, "blur": 4 / 8, "contrast": 4 / 8}
    assert corruption_accuracy(Constant(1), batches, corruptions=["blur"]) == {"blur": 3 / 8}


def test_every_model_sees_the_same_noise() -> None:
    """A model that reads the noise back: accuracy is a function of the corrupted input, so two
    calls with one seed agree exactly and the batches are corrupted alike for every model."""
    seen: list[torch.Tensor] = []

    class Recorder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.zeros(len(x), 2)

    batches = [(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))] * 2
    corruption_accuracy(Recorder(), batches, corruptions=["gaussian_noise"], seed=3)
    first = list(seen)
    seen.clear()
    corruption_accuracy(Recorder(), batches, corruptions=["gaussian_noise"], seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, seen)) and len(seen) == 2
    assert not torch.equal(first[0], first[1])  # one generator runs on across the batches
    seen.clear()
    corruption_accuracy(Recorder(), batches, corruptions=["gaussian_noise"], seed=4)
    assert not torch.equal(first[0], seen[0])
