"""Accuracy, per-class accuracy, and agreement of predictions between two models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.metrics._inputs import eval_mode


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


def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_classes: int | None = None, device: str | torch.device = "cpu") -> Evaluation:
    """Top-1 accuracy, mean cross-entropy and per-class accuracy of ``model`` over ``batches``."""
    preds, labels, loss_sum = [], [], 0.0
    with eval_mode(model):
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            preds.append(logits.argmax(1).cpu())
            labels.append(y.cpu())
    if not preds:
        raise ValueError("evaluate() got no batches")
    p, t = torch.cat(preds), torch.cat(labels)
    k = num_classes or int(max(p.max(), t.max())) + 1
    return Evaluation(
        accuracy=float((p == t).float().mean()),
        loss=loss_sum / len(t),
        count=len(t),
        per_class_accuracy=per_class_accuracy(p, t, k),
        predictions=p,
        labels=t,
    )


def per_class_accuracy(predictions: Tensor, labels: Tensor, num_classes: int) -> list[float]:
    """Accuracy within each true class (NaN for a class absent from ``labels``)."""
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes).float()
    total = torch.bincount(labels, minlength=num_classes).float()
    return [float(c / n) if n > 0 else float("nan") for c, n in zip(correct, total)]


def agreement(predictions_a: Tensor, predictions_b: Tensor) -> float:
    """Fraction of examples on which two models predict the same class."""
    if predictions_a.shape != predictions_b.shape:
        raise ValueError(f"prediction shapes differ: {tuple(predictions_a.shape)} vs {tuple(predictions_b.shape)}")
    return float((predictions_a == predictions_b).float().mean())
