import pytest
import torch
from torch import nn

from prunekit.metrics import CORRUPTIONS, corruption_accuracy


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_corruptions_keep_shape_and_change_the_input(name):
    x = torch.randn(4, 3, 16, 16)
    out = CORRUPTIONS.get(name)(x, 3, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.allclose(out, x)


def test_severity_orders_the_damage():
    x = torch.randn(8, 1, 16, 16)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    gaps = [float((CORRUPTIONS.get("contrast")(x, s, g()) - x).abs().mean()) for s in (1, 3, 5)]
    assert gaps == sorted(gaps)


def test_blur_of_a_constant_image_is_the_same_constant():
    x = torch.full((2, 3, 8, 8), 0.7)
    assert torch.allclose(CORRUPTIONS.get("blur")(x, 2, torch.Generator()), x)


def test_corruption_accuracy_is_deterministic_and_validated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    batches = [(torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))) for _ in range(3)]
    a = corruption_accuracy(model, batches)
    assert a == corruption_accuracy(model, batches) and set(a) == {"gaussian_noise", "blur", "contrast"}
    with pytest.raises(ValueError, match="severity must be 1..5"):
        corruption_accuracy(model, batches, severity=7)
