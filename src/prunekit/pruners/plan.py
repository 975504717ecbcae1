"""The plan: which units of which channel groups a structured pruning step removes.

One immutable value is used everywhere a plan is meant: allocation produces it, the objective
costs it, surgery applies it. Counts (how many units per group) become a plan through the
candidates' scores (the lowest-scored units go); a plan becomes the label mask the dependency
graph and the cost model read through :meth:`Plan.removed_mask`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
import numpy as np
import torch
from torch import nn

from prunekit.masks import MaskSet
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.surgery import remove_units


@dataclass(frozen=True)
class Plan:
    """``{group index: sorted unit indices removed}``; groups losing nothing are left out."""

    removals: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean = {int(g): tuple(sorted(int(u) for u in units)) for g, units in self.removals.items()}
        object.__setattr__(self, "removals", MappingProxyType({g: u for g, u in sorted(clean.items()) if u}))

    @classmethod
    def of(cls, selection: Mapping[int, Iterable[int]]) -> Plan:
        """A plan from ``{group index: unit indices}``."""
        return cls({g: tuple(units) for g, units in selection.items()})

    @classmethod
    def from_counts(cls, scores: Mapping[int, np.ndarray], counts: Mapping[int, int]) -> Plan:
        """Remove the ``counts[group]`` lowest-scored units of each group (``scores``: higher = keep)."""
        return cls({g: tuple(lowest_units(scores[g], k)) for g, k in counts.items() if k > 0})

    @property
    def counts(self) -> dict[int, int]:
        return {g: len(u) for g, u in self.removals.items()}

    @property
    def groups_pruned(self) -> int:
        return len(self.removals)

    @property
    def units_removed(self) -> int:
        return sum(len(u) for u in self.removals.values())

    def removed_mask(self, graph: DependencyGraph) -> np.ndarray:
        """Boolean mask over the graph's labels (what the cost model and validation read)."""
        return graph.removed_mask(dict(self.removals))

    def apply(self, graph: DependencyGraph) -> nn.Module:
        """Remove the planned units from ``graph.model`` in place (validated first) and return it."""
        return remove_units(graph, dict(self.removals))

    def masks(self, graph: DependencyGraph) -> MaskSet:
        """Keep-masks zeroing the planned units in every parameter of their groups, instead of removing them.

        The masked model computes what :meth:`apply` would leave (as the structured property tests
        check), except where a LayerNorm normalises over the group's channels. Buffers (batch-norm
        statistics) are not masked: the zeroed scales and shifts already cut the units out.
        """
        keep: dict[str, torch.Tensor] = {}
        for index, units in self.removals.items():
            group = graph.groups[index]
            chosen = np.zeros(group.size, dtype=bool)
            chosen[list(units)] = True
            for member in group.members:
                tensor = member.tensor(graph.model)
                if not isinstance(tensor, nn.Parameter):
                    continue
                positions = np.flatnonzero((member.units >= 0) & chosen[np.clip(member.units, 0, None)])
                mask = keep.setdefault(member.fqn, torch.ones(tensor.shape, dtype=torch.bool))
                mask.index_fill_(member.dim, torch.as_tensor(positions, dtype=torch.long), False)
        return MaskSet(keep)

    def __bool__(self) -> bool:
        return bool(self.removals)


def lowest_units(scores: np.ndarray, remove: int) -> list[int]:
    """Indices of the ``remove`` lowest ``scores`` (ties: lower index first)."""
    return np.argsort(scores, kind="stable")[:remove].tolist()
