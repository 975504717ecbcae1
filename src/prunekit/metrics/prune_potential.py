"""Prune potential (Liebenwein et al. 2021, "Lost in Pruning"): how far a model can be pruned on a
distribution before its accuracy there leaves a δ band around the dense model's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: A sweep point: (prune ratio or compression, accuracy per distribution, e.g. {"test": 0.98, "fog": 0.7}).
SweepPoint = tuple[float, Mapping[str, float]]


def prune_potential(sweep: Sequence[SweepPoint], dense: Mapping[str, float], delta: float = 0.005) -> dict[str, float | None]:
    """Per distribution in ``dense``: the largest swept ratio whose accuracy is at least ``dense − delta``.

    The paper's definition, the maximal prune ratio with commensurate accuracy, taken literally: the
    largest *qualifying* ratio, even when a smaller ratio in a non-monotone sweep falls outside the
    band. Accuracies are fractions (``delta=0.005`` is 0.5 points); the ratio is whatever the sweep
    uses (fraction pruned, compression ×, MACs reduction), larger meaning more pruned. ``None``: no
    swept point qualifies. Raises :class:`ValueError` if a point lacks a distribution of ``dense``
    or ``delta`` is negative."""
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    out: dict[str, float | None] = {}
    for name, reference in dense.items():
        qualifying = []
        for ratio, accuracy in sweep:
            if name not in accuracy:
                raise ValueError(f"sweep point at ratio {ratio} has no accuracy for {name!r} (it has {sorted(accuracy)})")
            if accuracy[name] >= reference - delta - 1e-12:
                qualifying.append(ratio)
        out[name] = max(qualifying) if qualifying else None
    return out
