"""Groups of coupled channels: the units a pruner removes and every tensor slice each unit owns."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunekit.structured.fields import distinct

ROLE_ORDER = {"out": 0, "in": 1, "norm_weight": 2, "bias": 3, "norm_bias": 4, "param": 5, "stat": 6}


@dataclass(frozen=True, eq=False)
class Member:
    """One dim of one parameter/buffer in a group; ``units[pos]`` is the unit owning that position (-1: none)."""

    module: str
    name: str
    dim: int
    role: str
    units: np.ndarray

    @property
    def fqn(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name

    def tensor(self, model: nn.Module) -> torch.Tensor:
        owner = model.get_submodule(self.module) if self.module else model
        return getattr(owner, self.name)

    def per_position(self, values: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
        """Collapse every axis but ``dim`` of ``values`` (shaped like the tensor): one value per position."""
        others = [d for d in range(values.dim()) if d != self.dim]  # reduced in place: no copy of a moved axis
        if reduce not in ("sum", "mean", "max"):
            raise ValueError(f"unknown reduce {reduce!r}")
        if not others:
            return values.clone()
        if reduce == "max":
            return values.amax(others)
        return values.sum(others) if reduce == "sum" else values.mean(others)

    def unit_sum(self, per_position: torch.Tensor, n_units: int) -> torch.Tensor:
        """Sum per-position values into per-unit values (positions of other groups are ignored)."""
        if self._one_unit_per_position and n_units == self.units.size:
            return per_position
        positions, units = self._owned
        out = torch.zeros(n_units, dtype=per_position.dtype, device=per_position.device)
        return out.index_add_(0, units.to(per_position.device), per_position[positions.to(per_position.device)])

    @functools.cached_property
    def _one_unit_per_position(self) -> bool:
        """Whether position ``p`` is unit ``p`` (the member's whole dim is the group, in order)."""
        return bool(np.array_equal(self.units, np.arange(self.units.size)))

    @functools.cached_property
    def _owned(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions owned by a unit of the group, their units) as index tensors."""
        positions = np.flatnonzero(self.units >= 0)
        return torch.from_numpy(positions), torch.from_numpy(self.units[positions].astype(np.int64))

    def unit_vectors(self, tensor: torch.Tensor, n_units: int) -> list[torch.Tensor]:
        """For each unit, the flattened slice of ``tensor`` it owns along ``dim``."""
        moved = tensor.movedim(self.dim, 0)
        return [moved[torch.as_tensor(np.flatnonzero(self.units == u))].reshape(-1) for u in range(n_units)]


@dataclass(eq=False)
class Group:
    """Coupled channels: ``size`` units; removing unit ``u`` removes its positions in every member."""

    index: int
    labels: np.ndarray
    members: list[Member]
    prunable: bool = True
    reason: str = ""

    @property
    def size(self) -> int:
        return int(self.labels.size)

    @property
    def name(self) -> str:
        """The module producing the group's channels (first ``out`` member), else the first member's."""
        for m in self.members:
            if m.role == "out":
                return m.module
        return self.members[0].module if self.members else f"group{self.index}"

    def modules(self, role: str | None = None) -> list[str]:
        """Modules with a member (of ``role`` if given), in member order, without repeats."""
        seen: dict[str, None] = {}
        for m in self.members:
            if role is None or m.role == role:
                seen.setdefault(m.module, None)
        return list(seen)

    def width(self) -> int:
        """Positions one unit owns in the group's first member (1 for plain channels, ``head_dim·3`` for qkv heads)."""
        first = self.members[0]
        counts = np.bincount(first.units[first.units >= 0], minlength=self.size)
        return int(counts.max()) if counts.size else 1

    def __repr__(self) -> str:
        state = "prunable" if self.prunable else f"fixed ({self.reason})"
        return f"Group({self.index}, {self.name!r}, units={self.size}, members={len(self.members)}, {state})"


def build_groups(records: Iterable[tuple[str, str, list[np.ndarray], list[str]]], labels: np.ndarray, unit_mask: np.ndarray) -> list[Group]:
    """Form groups from tensor dims: labels in ``unit_mask`` sharing the same set of member dims.

    Groups come in the order of their first member dim; a group's units in the order their labels first
    appear along its leading member (by role), labels it lacks first.
    """
    dims = [(module, name, dim, roles[dim], labels[ids]) for module, name, dim_ids, roles in records for dim, ids in enumerate(dim_ids)]
    if not dims:
        return []
    lab = np.concatenate([d[4].ravel() for d in dims])
    dim_of = np.repeat(np.arange(len(dims), dtype=np.int64), [d[4].size for d in dims])
    keep = unit_mask[lab]
    span = np.int64(labels.max()) + 1
    pairs = distinct(lab[keep] * len(dims) + dim_of[keep])  # each (unit label, dim) once, by label then dim
    if not pairs.size:
        return []
    pl, pd = pairs // len(dims), pairs % len(dims)
    used = np.flatnonzero(np.bincount(pd, minlength=len(dims)))  # member dims, numbered in record order
    number = np.zeros(len(dims), np.int64)
    number[used] = np.arange(used.size)
    pm = number[pd]
    member_meta = [dims[int(j)] for j in used]
    starts = np.flatnonzero(np.r_[True, pl[1:] != pl[:-1]])  # pl is sorted: one segment per unit label
    unit_labels, counts = pl[starts], np.diff(np.r_[starts, pl.size])
    signature = _signatures(pm, starts, counts)
    _, reps = np.unique(signature, return_index=True)  # each group's first unit label
    reps = reps[np.lexsort((reps, pm[starts[reps]]))]  # groups by smallest member dim, then first label
    groups: list[Group] = []
    unit_of = np.full(span, -1, np.int64)
    for rep in reps.tolist():
        group_labels = unit_labels[signature == signature[rep]]
        members_idx = sorted(pm[starts[rep]:starts[rep] + counts[rep]].tolist(), key=lambda i: (ROLE_ORDER.get(member_meta[i][3], 9), i))
        first_lab = member_meta[members_idx[0]][4].ravel()
        seen, first_pos = np.unique(first_lab, return_index=True)
        at = np.minimum(np.searchsorted(seen, group_labels), seen.size - 1)
        position = np.where(seen[at] == group_labels, first_pos[at], 0)
        ordered = group_labels[np.argsort(position, kind="stable")]
        unit_of[ordered] = np.arange(ordered.size)
        members = [Member(*member_meta[i][:4], unit_of[member_meta[i][4]]) for i in members_idx]
        unit_of[ordered] = -1
        groups.append(Group(len(groups), ordered, members))
    return groups


def _signatures(members: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per segment ``members[starts[k]:starts[k] + counts[k]]`` (sorted ids), a number shared exactly by equal segments."""
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 2**62, size=(2, int(members.max()) + 1), dtype=np.int64)
    with np.errstate(over="ignore"):
        hashes = np.stack([np.add.reduceat(w[members], starts) for w in weights] + [counts.astype(np.int64)], axis=1)
    _, signature = np.unique(hashes, axis=0, return_inverse=True)
    signature = signature.ravel()
    # exact check: every segment equals its signature's first segment, position by position
    first = np.full(int(signature.max()) + 1, -1, np.int64)
    first[signature[::-1]] = np.arange(signature.size)[::-1]
    offsets = np.arange(members.size) - np.repeat(starts, counts)
    if not np.array_equal(members, members[np.repeat(starts[first[signature]], counts) + offsets]):
        raise AssertionError("group signatures collided; please report this model")
    return signature
