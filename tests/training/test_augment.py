"""TrainConfig.augment: only the batches fit trains on are augmented, seeded per epoch, off by default."""

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.training import AugmentConfig, CorruptedBatches, TrainConfig, augment_batches, fit
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import BatchLoader

from tests.training.helpers import Batches


class Recorder(nn.Module):
    """A linear classifier on (N, 1, 8, 8) inputs that keeps every input it sees, and in which mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 3)
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x.detach().clone()))
        return self.fc(x.flatten(1))


def images(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_off_by_default() -> None:
    assert TrainConfig().augment is None
    batches = Batches(*images(), batch_size=8)
    assert augment_batches(batches, None) is batches


def test_only_training_batches_are_augmented() -> None:
    x, y = images()
    train, val = Batches(x, y, batch_size=8), Batches(x, y, batch_size=8, shuffle=False)
    augment = AugmentConfig(corruptions=("gaussian_noise", "contrast"), p=1.0)
    model = Recorder()
    fit(model, train, TrainConfig(epochs=1, seed=5, augment=augment), val=val, progress=False)
    expected = CorruptedBatches(Batches(x, y, batch_size=8), augment.corruptions, augment.severities, 1.0, seed=5)
    expected.set_epoch(0)
    trained = [seen for training, seen in model.seen if training]
    evaluated = [seen for training, seen in model.seen if not training]
    assert [t.shape for t in trained] == [(8, 1, 8, 8)] * 3
    for got, (want, _) in zip(trained, expected, strict=True):
        assert torch.equal(got, want)
    assert all(d is not None for d in expected.drawn)
    clean = [xb for xb, _ in Batches(x, y, batch_size=8, shuffle=False)]
    assert all(torch.equal(a, b) for a, b in zip(evaluated, clean, strict=True))  # validation saw clean inputs


def test_draws_are_seeded_per_epoch() -> None:
    x, y = images(40)

    def epoch(e: int, seed: int = 0) -> tuple[list, list]:
        batches = CorruptedBatches(Batches(x, y, batch_size=8, shuffle=False), ["all"], p=0.5, seed=seed)
        batches.set_epoch(e)
        return [xb for xb, _ in batches], batches.drawn

    first, drawn = epoch(1)
    again, drawn_again = epoch(1)
    assert drawn == drawn_again and all(torch.equal(a, b) for a, b in zip(first, again))
    assert epoch(2)[1] != drawn and epoch(1, seed=1)[1] != drawn  # another epoch or seed draws otherwise
    clean = [xb for xb, _ in Batches(x, y, batch_size=8, shuffle=False)]
    for (xb, d), c in zip(zip(first, drawn), clean):
        assert torch.equal(xb, c) == (d is None)  # a batch drawn clean is passed on unchanged


def test_crop_needs_a_batch_loader_and_leaves_it_unchanged() -> None:
    raw = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    loader = BatchLoader(ArrayDataset(raw, torch.zeros(16), mean=[0.5], std=[0.25]), batch_size=8)
    cropped = augment_batches(loader, AugmentConfig(crop="crop_flip", padding=2))
    assert loader.augment is None and cropped.augment is not None
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(cropped, loader))
    with pytest.raises(ConfigError, match="augment.crop='crop_flip' crops raw images and needs the zoo's BatchLoader"):
        augment_batches(Batches(*images(), batch_size=8), AugmentConfig(crop="crop_flip"))
    with pytest.raises(ValueError, match="severities must be a non-empty list of 1..5"):
        AugmentConfig(corruptions=("blur",), severities=(0, 2))
