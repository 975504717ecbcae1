"""Parts: the channel sets of single tensors, which a plan may shrink but never empty.

A tensor's channel axis holds a set of labels (units). Usually that set is a whole group, or
several; a split (``x.split([a, b])``, a shape-computed size) gives a tensor only *some* of a
group's units. Removing all of those leaves the tensor with no channels: a 0-channel conv input,
which no size site need notice. :class:`Parts` indexes every such set once, so a plan can be
checked (:meth:`Parts.emptied`) and a group can say which of its units must keep one survivor each
(:meth:`Parts.of_group`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prunekit.structured.fields import TensorInfo, distinct
from prunekit.structured.groups import Group


class Parts:
    """The label sets of the tensor axes (traced values and the model's tensors) that hold some, not all,
    of a group's units, deduplicated; axes holding whole groups only are left out (a plan keeps a unit of each group)."""

    def __init__(self, located: Sequence[tuple[np.ndarray, Any]], labels: np.ndarray, groups: Sequence[Group]) -> None:
        """Keep the label sets of ``located`` ``(ids, where)`` axes that hold some, not all, of a group's units."""
        self._where: dict[tuple[int, ...], Any] = {}
        self._members: dict[tuple[int, ...], np.ndarray] = {}
        self._of_label: dict[int, list[tuple[int, ...]]] = {}
        self._of_group: dict[int, list[np.ndarray]] = {}
        if not located or not groups:
            return
        n_labels, n_groups = int(labels.max()) + 1, len(groups)
        group_of = np.full(n_labels, -1)
        sizes = np.zeros(n_groups, np.int64)
        for i, g in enumerate(groups):
            group_of[g.labels] = i
            sizes[i] = g.size
        # every (axis, label) pair once, in one pass over all axes: then distinct units per (axis, group)
        raws = [labels[ids].ravel() for ids, _ in located]
        axis = np.repeat(np.arange(len(raws)), [r.size for r in raws])
        pairs = np.sort(axis * n_labels + np.concatenate(raws))
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]  # sorted and deduplicated (faster than np.unique here)
        pair_axis, pair_label = pairs // n_labels, pairs % n_labels
        owner = group_of[pair_label]
        unit = owner >= 0
        per = np.bincount(pair_axis[unit] * n_groups + owner[unit], minlength=len(raws) * n_groups).reshape(len(raws), n_groups)
        partial = ((per > 0) & (per < sizes)).any(axis=1)  # holds some, not all, of a group's units
        for a in np.flatnonzero(partial).tolist():
            members = pair_label[pair_axis == a]
            part = tuple(members.tolist())
            if part not in self._where:
                self._where[part], self._members[part] = located[a][1], members
                for label in part:
                    self._of_label.setdefault(label, []).append(part)

    @classmethod
    def build(cls, infos: dict[Any, Any], tensors: dict[Any, Any], labels: np.ndarray, groups: Sequence[Group]) -> Parts:
        """From the graph's traced ``infos`` (fx node → info), its tensor records and its groups."""
        located = [(f.ids, node) for node, info in infos.items() if isinstance(info, TensorInfo) for f in info.fields]
        located += [(ids, rec) for rec in tensors.values() for ids in rec.dim_ids]
        return cls(located, labels, groups)

    def _describe(self, part: tuple[int, ...]) -> str:
        where = self._where[part]
        if hasattr(where, "meta"):  # an fx node
            return f"{where.meta.get('scope') or '<model>'} ({where.name})"
        return f"{where.module}.{where.name}"

    def emptied(self, removed: np.ndarray) -> str | None:
        """Where a tensor would have no channels left under the ``removed`` label mask (None if nowhere)."""
        for label in np.flatnonzero(removed).tolist():
            for part in self._of_label.get(label, ()):
                if removed[self._members[part]].all():
                    return self._describe(part)
        return None

    def of_group(self, group: Group) -> list[np.ndarray]:
        """Unit indices of ``group`` held by one tensor without the rest of the group: at least one
        of each must stay. Empty for a group whose every tensor holds all of it (the usual case)."""
        if group.index not in self._of_group:
            own = set(group.labels.tolist())
            found: dict[tuple[int, ...], None] = {}
            for label in own:
                for part in self._of_label.get(label, ()):
                    if len(part) < len(own) and own.issuperset(part):
                        found.setdefault(part, None)
            self._of_group[group.index] = [np.flatnonzero(np.isin(group.labels, part)) for part in found]
        return self._of_group[group.index]

    def where_of(self, group: Group, units: np.ndarray) -> str:
        """The tensor holding exactly ``units`` of ``group`` (one of :meth:`of_group`)."""
        return self._describe(tuple(distinct(group.labels[units]).tolist()))
