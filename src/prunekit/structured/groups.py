"""Groups of coupled channels: the units a pruner removes and every tensor slice each unit owns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

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
        units = torch.as_tensor(self.units, device=per_position.device)
        mask = units >= 0
        out = torch.zeros(n_units, dtype=per_position.dtype, device=per_position.device)
        return out.index_add_(0, units[mask], per_position[mask])

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
    """Form groups from tensor dims: labels in ``unit_mask`` sharing the same set of member dims."""
    member_meta: list[tuple[str, str, int, str, np.ndarray]] = []
    pair_labels, pair_members = [], []
    for module, name, dim_ids, roles in records:
        for dim, ids in enumerate(dim_ids):
            lab = labels[ids]
            u = np.unique(lab[unit_mask[lab]])
            if u.size == 0:
                continue
            pair_labels.append(u)
            pair_members.append(np.full(u.size, len(member_meta), np.int64))
            member_meta.append((module, name, dim, roles[dim], lab))
    if not pair_labels:
        return []
    pl, pm = np.concatenate(pair_labels), np.concatenate(pair_members)
    order = np.lexsort((pm, pl))
    pl, pm = pl[order], pm[order]
    starts = np.flatnonzero(np.r_[True, pl[1:] != pl[:-1]])
    signatures: dict[tuple[int, ...], list[int]] = {}
    for s, e in zip(starts, np.r_[starts[1:], pl.size]):
        signatures.setdefault(tuple(pm[s:e].tolist()), []).append(int(pl[s]))
    groups: list[Group] = []
    unit_of = np.full(labels.max() + 1, -1, np.int64)
    for sig, group_labels in sorted(signatures.items(), key=lambda kv: min(kv[0])):
        members_idx = sorted(sig, key=lambda i: (ROLE_ORDER.get(member_meta[i][3], 9), i))
        first_lab = member_meta[members_idx[0]][4]
        uniq, first_pos = np.unique(first_lab, return_index=True)
        pos_of = dict(zip(uniq.tolist(), first_pos.tolist()))
        ordered = np.array(sorted(group_labels, key=lambda lab: pos_of.get(lab, 0)), dtype=np.int64)
        unit_of[ordered] = np.arange(ordered.size)
        members = [Member(member_meta[i][0], member_meta[i][1], member_meta[i][2], member_meta[i][3], unit_of[member_meta[i][4]].copy()) for i in members_idx]
        unit_of[ordered] = -1
        groups.append(Group(len(groups), ordered, members))
    return groups
