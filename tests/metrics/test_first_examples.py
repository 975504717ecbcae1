"""Shortened evaluation (FirstExamples), evaluation on the model's device, progress bars on and off."""

import pytest
import torch
from torch import nn

from prunekit.metrics import FirstExamples, corruption_accuracy, evaluate, model_device
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import BatchLoader


class CountingBatches:
    """Ten batches of 4 examples (labels 0..39 mod 3); counts the batches handed out."""

    def __init__(self) -> None:
        self.consumed = 0

    def __len__(self) -> int:
        return 10

    def __iter__(self):
        for b in range(10):
            self.consumed += 1
            index = torch.arange(4 * b, 4 * b + 4)
            yield torch.nn.functional.one_hot(index % 3, 3).float().unsqueeze(-1).unsqueeze(-1), index % 3


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x.flatten(1) * self.scale


def test_subset_yields_exactly_the_first_examples_and_cuts_the_last_batch():
    source = CountingBatches()
    limited = FirstExamples(source, examples=10)
    labels = torch.cat([y for _, y in limited])
    assert labels.tolist() == [i % 3 for i in range(10)]
    assert source.consumed == 3  # 4 + 4 + 2 of the third batch; the fourth is never asked for
    assert [len(y) for _, y in limited] == [4, 4, 2]  # re-iterable, same examples again


def test_max_batches_limits_the_batches_consumed():
    source = CountingBatches()
    limited = FirstExamples(source, max_batches=2)
    result = evaluate(Flat(), limited, num_classes=3)
    assert result.count == 8 and source.consumed == 2
    assert len(limited) == 2


def test_subset_of_a_loader_counts_batches_and_total_examples():
    images = torch.zeros(50, 1, 2, 2, dtype=torch.uint8)
    dataset = ArrayDataset(images, torch.arange(50) % 5, mean=(0.0,), std=(1.0,), name="t", split="test")
    loader = BatchLoader(dataset, batch_size=16)
    limited = FirstExamples(loader, examples=20)
    assert len(limited) == 2 and limited.total_examples == 50
    assert sum(len(y) for _, y in limited) == 20
    assert len(FirstExamples(loader, examples=20, max_batches=1)) == 1
    with pytest.raises(ValueError, match="examples must be >= 1"):
        FirstExamples(loader, examples=0)


class Stop(Exception):
    pass


class SeesDevice(nn.Module):
    """A model kept on the meta device that records where its input arrived, then stops the evaluation."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros((), device="meta"))
        self.seen: list[torch.device] = []

    def forward(self, x):
        self.seen.append(x.device)
        raise Stop


def test_evaluate_moves_batches_to_the_models_device_by_default():
    model = SeesDevice()
    assert model_device(model) == torch.device("meta") and model_device(nn.ReLU()) == torch.device("cpu")
    with pytest.raises(Stop):
        evaluate(model, [(torch.ones(2, 3), torch.tensor([0, 1]))])
    with pytest.raises(Stop):
        evaluate(model, [(torch.ones(2, 3), torch.tensor([0, 1]))], device="cpu")
    assert model.seen == [torch.device("meta"), torch.device("cpu")]


def test_progress_bars_are_silent_when_disabled_and_one_per_corruption_when_enabled(capsys):
    batches = [(torch.randn(4, 3, 4, 4), torch.tensor([0, 1, 2, 0]))]
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    evaluate(model, batches, 3, progress=False, description="test: dense")
    corruption_accuracy(model, batches, ("blur", "contrast"), progress=False, label="corrupted: dense")
    assert capsys.readouterr().err == ""
    evaluate(model, batches, 3, progress=True, description="test: dense")
    corruption_accuracy(model, batches, ("blur", "contrast"), progress=True, label="corrupted: [/bold] dense")
    err = capsys.readouterr().err
    assert "test: dense" in err and "1/1" in err
    assert "corrupted: [/bold] dense blur" in err and "corrupted: [/bold] dense contrast" in err  # plain text, not markup
