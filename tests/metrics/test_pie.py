"""PIE examples (Hooker et al. 2019): dense right, pruned wrong; the majority rule over pruned seeds."""

import pytest
import torch

from prunekit.metrics.pie import examples_at, pie_examples, pie_indices

LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
DENSE = torch.tensor([0, 1, 2, 0, 0, 1, 2, 3])  # wrong only at 3


def test_single_seed_exact_indices() -> None:
    pruned = torch.tensor([0, 2, 2, 1, 3, 1, 2, 0])  # wrong at 1, 3, 4, 7; 3 is wrong for dense too
    assert pie_indices(DENSE, pruned, LABELS).tolist() == [1, 4, 7]


def test_majority_of_seeds() -> None:
    seeds = torch.tensor([[1, 1, 2, 3, 1, 0, 2, 3],   # wrong at 0, 4, 5
                          [1, 1, 0, 3, 0, 0, 2, 3],   # wrong at 0, 2, 5
                          [0, 1, 0, 3, 1, 1, 2, 3]])  # wrong at 2, 4
    # 0: 2 of 3, 2: 2 of 3, 4: 2 of 3, 5: 2 of 3 -> all in; none wrong in only one seed
    assert pie_indices(DENSE, seeds, LABELS).tolist() == [0, 2, 4, 5]
    # with four seeds, 2 of 4 is not a majority: only the example wrong in 3 of 4 stays
    four = torch.cat([seeds, torch.tensor([[1, 1, 2, 3, 0, 1, 2, 3]])])  # wrong at 0
    assert pie_indices(DENSE, four, LABELS).tolist() == [0]
    assert pie_indices(DENSE, list(four), LABELS).tolist() == [0]  # a sequence of (N,) is the same


def test_records_and_class_names() -> None:
    pruned = torch.tensor([[0, 2, 2, 3, 0, 1, 2, 3], [0, 3, 2, 3, 0, 1, 2, 3]])
    out = pie_examples(DENSE, pruned, LABELS, class_names=["a", "b", "c", "d"])
    assert out == {"count": 1, "seeds": 2, "examples": [
        {"index": 1, "label": 1, "dense": 1, "pruned": [2, 3], "wrong_seeds": 2,
         "label_name": "b", "dense_name": "b", "pruned_names": ["c", "d"]}]}


def test_none_and_shape_errors() -> None:
    assert pie_examples(DENSE, DENSE, LABELS) == {"count": 0, "seeds": 1, "examples": []}
    with pytest.raises(ValueError, match=r"\(N,\) or \(seeds, N\) with N = 8"):
        pie_indices(DENSE, torch.zeros(2, 5, dtype=torch.long), LABELS)
    with pytest.raises(ValueError, match="both be"):
        pie_indices(DENSE[:4], DENSE, LABELS)


def test_examples_at_gathers_across_batches() -> None:
    x = torch.arange(10.0).view(10, 1)
    batches = [(x[i : i + 3], torch.zeros(len(x[i : i + 3]))) for i in range(0, 10, 3)]
    assert examples_at(batches, [7, 2, 3]).flatten().tolist() == [7.0, 2.0, 3.0]
    with pytest.raises(IndexError, match=r"examples \[12\] are beyond the 10 examples"):
        examples_at(batches, [1, 12])
