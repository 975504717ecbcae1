"""How much to prune per layer: per-layer overrides, exact counts, ERK and uniform densities."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence

from prunekit._registry import Registry
from prunekit.errors import ConfigError


def prune_count(numel: int, sparsity: float) -> int:
    """Entries to prune for ``sparsity``: ``round(sparsity · numel)``, halves rounded up."""
    return min(numel, math.floor(sparsity * numel + 0.5))


def layer_sparsities(names: Sequence[str], sparsity: float, overrides: Mapping[str, float]) -> dict[str, float]:
    """Sparsity per parameter: ``sparsity``, or the value of the first override pattern that matches.

    Patterns are shell wildcards over parameter names (``"fc3.*"``); one that matches no name in
    ``names`` is an error, so typos do not pass silently.
    """
    for pattern in overrides:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(f"overrides pattern {pattern!r} matches no pruned parameter; pruned parameters: {list(names)}")
    out = {}
    for name in names:
        match = next((p for p in overrides if fnmatch.fnmatchcase(name, p)), None)
        out[name] = sparsity if match is None else overrides[match]
    return out


def overridden(names: Sequence[str], overrides: Mapping[str, float]) -> list[str]:
    """The names that some override pattern matches."""
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in overrides)]


def kept_counts(numels: Mapping[str, int], densities: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer kept counts near ``density · numel`` per layer that sum exactly to ``total``.

    Largest-remainder rounding: each layer gets the floor of its share, then the layers with the
    largest fractional parts (ties: first in order) get one more until ``total`` is reached.
    """
    names = list(numels)
    if not 0 <= total <= sum(numels.values()):
        raise ConfigError(f"cannot keep {total} entries out of {sum(numels.values())}")
    share = {n: densities[n] * numels[n] for n in names}
    counts = {n: min(numels[n], max(0, math.floor(share[n]))) for n in names}
    by_remainder = sorted(names, key=lambda n: (-(share[n] - counts[n]), names.index(n)))
    left = total - sum(counts.values())
    while left > 0:  # one unit per layer per pass, largest remainders first; total <= Σ numel ends it
        for name in by_remainder:
            if left > 0 and counts[name] < numels[name]:
                counts[name] += 1
                left -= 1
    while left < 0:  # floating-point shares may overshoot by a unit
        name = max((n for n in names if counts[n] > 0), key=lambda n: counts[n] - share[n])
        counts[name] -= 1
        left += 1
    return counts


Densities = Callable[[Mapping[str, Sequence[int]], float], dict[str, float]]

#: name → ``(shapes, density) -> {name: density}`` layer-density distributions for sparse training.
DENSITY_DISTRIBUTIONS: Registry[Densities] = Registry("density distribution")


@DENSITY_DISTRIBUTIONS.register("uniform")
def uniform_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """The same density for every layer."""
    return {name: density for name in shapes}


@DENSITY_DISTRIBUTIONS.register("erk")
def erk_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities (Evci et al. 2020): layer density ∝ Σ dims / Π dims.

    A scale ε is solved so that the kept weights add up to ``density`` of the total; a layer whose
    density would exceed 1 is made dense and ε is solved again over the others.
    """
    if not 0 < density <= 1:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    dense: set[str] = set()
    target = density * sum(numel.values())
    while True:
        sparse = [n for n in shapes if n not in dense]
        if not sparse:
            return {n: 1.0 for n in shapes}
        eps = (target - sum(numel[n] for n in dense)) / sum(raw[n] * numel[n] for n in sparse)
        too_dense = [n for n in sparse if eps * raw[n] > 1]
        if not too_dense:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.add(max(too_dense, key=lambda n: raw[n]))
