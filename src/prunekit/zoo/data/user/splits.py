"""Which examples of which source form the train, validation and test splits of user data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.zoo.data.loaders import seeded_generator

#: Stream tags of the generators used here (the registered datasets use 1-3).
_STRATIFIED, _SUBSET = 4, 5
#: ``test_fraction`` when a single source is divided and none is given.
DEFAULT_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class SplitPlan:
    """Per split, the source it is drawn from and the indices into that source (sorted; None: all)."""

    train: tuple[str, Tensor | None]
    val: tuple[str, Tensor | None] | None
    test: tuple[str, Tensor | None]


def plan_splits(
    labels: dict[str, Tensor],
    *,
    val_fraction: float,
    test_fraction: float | None,
    seed: int,
    subset: int | None = None,
) -> SplitPlan:
    """Split sources named ``train``/``val``/``test`` (``val`` optional) or one source ``all``.

    A missing ``val`` is carved out of ``train`` by ``val_fraction``, and ``all`` is divided by
    ``val_fraction`` and ``test_fraction`` (default 0.2), both stratified: within each class a
    seeded permutation gives ``round(fraction × class size)`` examples to validation, the next ones
    to test, and the rest to training. ``subset=N`` then keeps N training examples (seeded).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if "all" in labels:
        fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
        if not 0.0 < fraction < 1.0 or val_fraction + fraction >= 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1) and leave training examples with val_fraction={val_fraction}, got {fraction}")
        train, val, test = stratified_split(labels["all"], (val_fraction, fraction), seed)
        plan = SplitPlan(("all", train), ("all", val) if val.numel() else None, ("all", test))
    else:
        if test_fraction is not None:
            raise ConfigError("test_fraction applies to data without a separate test split; this data has one")
        if "val" in labels:
            plan = SplitPlan(("train", None), ("val", None), ("test", None))
        else:
            train, val, _ = stratified_split(labels["train"], (val_fraction, 0.0), seed)
            plan = SplitPlan(("train", train), ("train", val) if val.numel() else None, ("test", None))
    return _keep_subset(plan, labels, subset, seed)


def stratified_split(labels: Tensor, fractions: tuple[float, float], seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sorted ``(train, val, test)`` indices, each class divided by ``fractions`` = (val, test)."""
    generator = seeded_generator(seed, _STRATIFIED)
    parts: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_val, n_test = (math.floor(f * members.numel() + 0.5) for f in fractions)
        if n_val + n_test >= members.numel():
            raise ConfigError(f"class {label} has {members.numel()} example(s): val_fraction={fractions[0]} and "
                              f"test_fraction={fractions[1]} leave none for training; lower them or add examples")
        for part, chosen in zip(parts, (members[n_val + n_test :], members[:n_val], members[n_val : n_val + n_test]), strict=True):
            part.append(chosen)
    return tuple(torch.cat(p).sort().values for p in parts)  # type: ignore[return-value]


def _keep_subset(plan: SplitPlan, labels: dict[str, Tensor], subset: int | None, seed: int) -> SplitPlan:
    if subset is None:
        return plan
    source, indices = plan.train
    pool = torch.arange(labels[source].numel()) if indices is None else indices
    if not 1 <= subset <= pool.numel():
        raise ConfigError(f"subset must be between 1 and the training split's size {pool.numel()}, got {subset}")
    keep = pool[torch.randperm(pool.numel(), generator=seeded_generator(seed, _SUBSET))[:subset]].sort().values
    return SplitPlan((source, keep), plan.val, plan.test)
