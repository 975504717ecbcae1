"""Pruning identified exemplars (PIE, Hooker et al. 2019, "What do compressed deep neural networks
forget?"): the test examples the pruned model gets wrong that the dense model gets right; with several
pruned seeds, those wrong in a strict majority of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor


def _stack(pruned: Tensor | Sequence[Tensor], n: int) -> Tensor:
    """Pruned predictions as (seeds, N); raises :class:`ValueError` on a length or shape mismatch."""
    if isinstance(pruned, Tensor):
        stacked = pruned.reshape(1, -1) if pruned.ndim == 1 else pruned
    else:
        stacked = torch.stack([torch.as_tensor(p) for p in pruned]) if len(pruned) else torch.empty(0, n)
    if stacked.ndim != 2 or stacked.shape[0] == 0 or stacked.shape[1] != n:
        raise ValueError(f"pruned predictions must be (N,) or (seeds, N) with N = {n} labels and at least one seed, "
                         f"got shape {tuple(stacked.shape)}")
    return stacked


def pie_indices(dense: Tensor, pruned: Tensor | Sequence[Tensor], labels: Tensor) -> Tensor:
    """Sorted indices of the examples ``dense`` predicts correctly and the pruned model(s) wrongly.

    ``dense`` and ``labels`` are (N,) class indices; ``pruned`` is (N,) for one pruned model or
    (seeds, N) / a sequence of (N,) for several, where an example counts when more than half of the
    seeds get it wrong (Hooker et al.'s majority rule over pruned seeds). Raises :class:`ValueError`
    when the shapes do not match."""
    if dense.shape != labels.shape or dense.ndim != 1:
        raise ValueError(f"dense predictions and labels must both be (N,), got {tuple(dense.shape)} and {tuple(labels.shape)}")
    stacked = _stack(pruned, labels.numel())
    wrong = (stacked != labels).sum(0)
    return torch.nonzero((dense == labels) & (2 * wrong > stacked.shape[0])).flatten()


def pie_examples(dense: Tensor, pruned: Tensor | Sequence[Tensor], labels: Tensor, class_names: Sequence[str] = ()) -> dict[str, Any]:
    """The PIE set as JSON-able records: ``{"count", "seeds", "examples": [{"index", "label", "dense",
    "pruned": [one prediction per seed], "wrong_seeds"}]}``, with class names beside the indices when given."""
    stacked = _stack(pruned, labels.numel())
    indices = pie_indices(dense, stacked, labels)
    name = (lambda c: class_names[c] if c < len(class_names) else str(c)) if class_names else str  # noqa: E731
    examples = []
    for i in indices.tolist():
        predictions = [int(p) for p in stacked[:, i]]
        label = int(labels[i])
        record = {"index": i, "label": label, "dense": int(dense[i]), "pruned": predictions,
                  "wrong_seeds": sum(p != label for p in predictions)}
        if class_names:
            record |= {"label_name": name(label), "dense_name": name(int(dense[i])), "pruned_names": [name(p) for p in predictions]}
        examples.append(record)
    return {"count": len(examples), "seeds": int(stacked.shape[0]), "examples": examples}


def examples_at(batches: Iterable[tuple[Tensor, Tensor]], indices: Sequence[int]) -> Tensor:
    """The inputs at ``indices`` (positions in the order ``batches`` yields them), stacked, in that order.

    Stops reading once the last wanted index has been passed. Raises :class:`IndexError` if
    ``batches`` holds fewer examples than an index needs."""
    wanted = sorted(set(indices))
    found: dict[int, Tensor] = {}
    start = 0
    for x, _ in batches:
        if not wanted or start > wanted[-1]:
            break
        for i in wanted:
            if start <= i < start + len(x):
                found[i] = x[i - start].detach().cpu()
        start += len(x)
    missing = [i for i in indices if i not in found]
    if missing:
        raise IndexError(f"examples {missing[:5]} are beyond the {start} examples the batches hold")
    return torch.stack([found[i] for i in indices]) if indices else torch.empty(0)
