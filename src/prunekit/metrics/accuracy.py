"""Accuracy, per-class accuracy, and agreement of predictions between two models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.metrics._inputs import eval_mode
from prunekit.metrics.batches import model_device
from prunekit.progress import track


@dataclass
class Evaluation:
    """Results of running a classifier over a labelled dataset."""

    accuracy: float
    loss: float
    count: int
    per_class_accuracy: list[float]
    predictions: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "loss": self.loss, "count": self.count, "per_class_accuracy": self.per_class_accuracy}


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    description: str = "evaluating",
) -> Evaluation:
    """Top-1 accuracy, mean cross-entropy and per-class accuracy of ``model`` over ``batches``.

    Batches go to ``device`` (default: the model's); predictions, loss and counts stay there until
    the end, so a GPU evaluation does not wait for the CPU per batch. ``progress`` shows a bar."""
    device = model_device(model) if device is None else torch.device(device)
    preds, labels = [], []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    with eval_mode(model):
        for x, y in track(batches, description, enabled=progress):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            preds.append(logits.argmax(1))
            labels.append(y)
    if not preds:
        raise ValueError("evaluate() got no batches")
    p, t = torch.cat(preds), torch.cat(labels)
    k = num_classes or int(torch.maximum(p.max(), t.max())) + 1
    return Evaluation(
        accuracy=float((p == t).double().mean()),
        loss=float(loss_sum) / len(t),
        count=len(t),
        per_class_accuracy=per_class_accuracy(p, t, k),
        predictions=p.cpu(),
        labels=t.cpu(),
    )


def per_class_accuracy(predictions: Tensor, labels: Tensor, num_classes: int) -> list[float]:
    """Accuracy within each true class (NaN for a class absent from ``labels``)."""
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes).double()
    total = torch.bincount(labels, minlength=num_classes).double()
    return (correct / total).tolist()  # 0/0 is NaN: a class absent from ``labels``


def agreement(predictions_a: Tensor, predictions_b: Tensor) -> float:
    """Fraction of examples on which two models predict the same class."""
    if predictions_a.shape != predictions_b.shape:
        raise ValueError(f"prediction shapes differ: {tuple(predictions_a.shape)} vs {tuple(predictions_b.shape)}")
    return float((predictions_a == predictions_b).float().mean())
