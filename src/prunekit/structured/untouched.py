"""Layers structured pruning leaves untouched, each with the best reason the graph knows.

A *layer* is a module with a tensor dim of role ``out`` or ``in``. It is untouched when none of
those positions is in a prunable group. Where every such position is fixed only by the model's
inputs and outputs (the stem's input channels, the logits) that is ordinary and not reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prunekit.structured.fields import BLOCK, IdSpace, distinct
from prunekit.structured.groups import Group
from prunekit.structured.propagate import TensorRecord


@dataclass(frozen=True)
class UntouchedLayer:
    """Layer ``name`` keeps all its channels because of ``reason``, found at ``where`` (the warning's subject)."""

    name: str
    reason: str
    where: str


def layer_positions(tensors: dict[tuple[str, str], TensorRecord]) -> dict[str, np.ndarray]:
    """``{layer: ids of its out/in positions}`` (dims of size 1 can never shrink and are left out)."""
    out: dict[str, list[np.ndarray]] = {}
    for key, rec in tensors.items():
        if key != (rec.module, rec.name):
            continue  # a tied alias
        for dim, role in enumerate(rec.roles):
            if role in ("out", "in") and rec.shape[dim] > 1:
                out.setdefault(rec.module, []).append(rec.dim_ids[dim])
    return {name: np.concatenate(arrays) for name, arrays in out.items()}


def find_untouched(ids: IdSpace, tensors: dict[tuple[str, str], TensorRecord], labels: np.ndarray, groups: Sequence[Group],
                   ordinary: list[str] | None = None) -> list[UntouchedLayer]:
    """Every untouched layer whose fixedness is not ordinary, with its reason (see the module docstring).

    Layers fixed only by the model's inputs/outputs are appended to ``ordinary`` when given.
    """
    prunable = np.zeros(int(labels.max()) + 1, bool)
    for g in groups:
        if g.prunable:
            prunable[g.labels] = True
    base = ids.components(explicit=False, propagated_only=True)
    group_of = {int(lab): g for g in groups for lab in g.labels.tolist()}
    block_of: dict[int, int] = {}  # base component -> first explicit block record reaching it
    for k, rec in enumerate(ids.blocks):
        for comp in distinct(base[rec.ids]).tolist():
            block_of.setdefault(comp, k)
    found = []
    for name, pos in layer_positions(tensors).items():
        if prunable[labels[pos]].any():
            continue
        comps = distinct(base[pos])
        comps = comps[comps != base[BLOCK]]
        if comps.size == 0:  # fixed by the model's inputs/outputs only
            if ordinary is not None:
                ordinary.append(name)
            continue
        found.append(_reason(name, ids, distinct(labels[pos]), labels, comps, block_of, group_of))
    return found


def _reason(name: str, ids: IdSpace, lab: np.ndarray, labels: np.ndarray, comps: np.ndarray, block_of: dict[int, int],
            group_of: dict[int, Group]) -> UntouchedLayer:
    """An explicit block first, then a refused size, then a merge into one unit, else a generic reason."""
    hits = sorted(block_of[c] for c in comps.tolist() if c in block_of)
    if hits:
        rec = ids.blocks[hits[0]]
        return UntouchedLayer(name, rec.reason, rec.where or "<model>")
    if (lab == labels[BLOCK]).all():  # only the merges that keep multi-axis removals rectangular fixed it
        return UntouchedLayer(name, "its channels share a layout over several axes with fixed channels (a reshape merged them "
                                    "so that removals stay rectangular)", name)
    groups = [group_of[x] for x in lab.tolist() if x in group_of]
    for g in groups:
        if g.size >= 2 and g.reason:
            return UntouchedLayer(name, g.reason, g.name)
    for g in groups:
        if g.size < 2:
            wheres = merge_sites(ids, labels, int(g.labels[0]))
            by = f" by {', '.join(wheres)}" if wheres else ""
            return UntouchedLayer(name, f"all its channels are coupled into a single unit{by}", name)
    return UntouchedLayer(name, "its channels are coupled to the model's fixed inputs or outputs through the graph (no specific reason found)", name)


def merge_sites(ids: IdSpace, labels: np.ndarray, label: int, limit: int = 3) -> list[str]:
    """Where channels of component ``label`` were merged into shared units (first ``limit`` op scopes)."""
    out: list[str] = []
    for arr, where in ids.merges:
        if arr.size > 1 and (labels[arr] == label).any() and (where or "<model>") not in out:
            out.append(where or "<model>")
            if len(out) == limit:
                break
    return out
