"""evaluate / per_class_accuracy / agreement on tiny fixed tensors with answers known by hand.

The model is a lookup table: input ``i`` (an integer index) returns the fixed logits row ``i``,
so its predictions and cross-entropy are chosen by the test. With logits ``[ln 3, 0]`` the
softmax is ``[3/4, 1/4]``: cross-entropy ``ln(4/3)`` for label 0 and ``ln 4`` for label 1.
"""

import math

import pytest
import torch
from torch import nn

from prunekit.metrics import agreement, evaluate, per_class_accuracy


class FixedLogits(nn.Module):
    def __init__(self, rows: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("table", torch.tensor(rows))
        self.modes: list[bool] = []

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.table[index]


LN3 = math.log(3.0)


def test_accuracy_loss_and_per_class_on_a_lookup_model() -> None:
    # predictions: 0, 1, 0, 2 (argmax of each row); labels: 0, 0, 1, 2
    model = FixedLogits([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    result = evaluate(model, [(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 2]))])
    assert result.count == 4
    assert result.accuracy == 2 / 4  # examples 0 and 3
    assert result.per_class_accuracy == [1 / 2, 0 / 1, 1 / 1]
    assert result.predictions.tolist() == [0, 1, 0, 2]
    assert result.labels.tolist() == [0, 0, 1, 2]
    # cross-entropy: log(e^5 + 2) − 5 when right, log(e^5 + 2) − 0 when wrong
    lse = math.log(math.exp(5.0) + 2.0)
    assert result.loss == pytest.approx(((lse - 5) + lse + lse + (lse - 5)) / 4)


def test_loss_is_a_mean_over_examples_not_over_batches() -> None:
    model = FixedLogits([[LN3, 0.0]])  # softmax [3/4, 1/4] for every input
    batches = [
        (torch.tensor([0]), torch.tensor([1])),  # one example: ln 4
        (torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0])),  # three examples: ln(4/3) each
    ]
    result = evaluate(model, batches)
    assert result.loss == pytest.approx((math.log(4) + 3 * math.log(4 / 3)) / 4)  # not (ln 4 + ln 4/3) / 2
    assert result.accuracy == 3 / 4
    assert result.count == 4


def test_num_classes_adds_absent_classes_as_nan() -> None:
    model = FixedLogits([[1.0, 0.0, 0.0, 0.0, 0.0]])
    result = evaluate(model, [(torch.tensor([0, 0]), torch.tensor([0, 0]))], num_classes=5)
    assert result.per_class_accuracy[0] == 1.0
    assert len(result.per_class_accuracy) == 5 and all(math.isnan(v) for v in result.per_class_accuracy[1:])
    # without num_classes: as many classes as the largest label or prediction says
    assert evaluate(model, [(torch.tensor([0, 0]), torch.tensor([0, 0]))]).per_class_accuracy == [1.0]
    assert result.to_dict()["accuracy"] == 1.0 and result.to_dict()["count"] == 2
    assert set(result.to_dict()) == {"accuracy", "loss", "count", "per_class_accuracy"}


def test_evaluate_runs_in_eval_mode_and_gives_the_mode_back() -> None:
    model = FixedLogits([[1.0, 0.0]]).train()
    evaluate(model, [(torch.tensor([0]), torch.tensor([0])), (torch.tensor([0]), torch.tensor([0]))])
    assert model.modes == [False, False]
    assert model.training


def test_evaluate_without_batches_is_refused() -> None:
    with pytest.raises(ValueError, match="no batches"):
        evaluate(FixedLogits([[1.0]]), [])


def test_per_class_accuracy_by_hand() -> None:
    predictions = torch.tensor([0, 0, 1, 1, 2, 0])
    labels = torch.tensor([0, 1, 1, 1, 2, 2])
    # class 0: 1 of 1 right; class 1: 2 of 3 (one taken for 0); class 2: 1 of 2; class 3 absent
    result = per_class_accuracy(predictions, labels, 4)
    assert result[:3] == [1.0, pytest.approx(2 / 3), 0.5]
    assert math.isnan(result[3])


def test_agreement_by_hand_and_shape_check() -> None:
    assert agreement(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 0])) == 2 / 4
    assert agreement(torch.tensor([4, 4]), torch.tensor([4, 4])) == 1.0
    assert agreement(torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0])) == 0.0
    with pytest.raises(ValueError, match=r"prediction shapes differ: \(3,\) vs \(2,\)"):
        agreement(torch.tensor([1, 2, 3]), torch.tensor([1, 2]))


def test_agreement_of_two_evaluations_matches_the_predictions() -> None:
    a = FixedLogits([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # predicts 0, 1, 0
    b = FixedLogits([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # predicts 0, 0, 1
    batch = [(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))]
    ea, eb = evaluate(a, batch), evaluate(b, batch)
    assert (ea.accuracy, eb.accuracy) == (pytest.approx(2 / 3), pytest.approx(2 / 3))  # float32 means
    assert agreement(ea.predictions, eb.predictions) == pytest.approx(1 / 3)  # same accuracy, different mistakes
