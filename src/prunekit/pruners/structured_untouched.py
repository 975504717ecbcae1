"""Layers a structured step leaves untouched: groups the criterion cannot score (left whole, named in a warning),
and the check that every layer left untouched is accounted for."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Sequence

import numpy as np

from prunekit.importance.group import GroupCriterion, NothingToScore, ScoringContext
from prunekit.structured.graph import IGNORED, DependencyGraph, PruningWarning
from prunekit.structured.groups import Group


def group_scores(graph: DependencyGraph, criterion: GroupCriterion, ctx: ScoringContext) -> dict[int, np.ndarray]:
    """``{group index: scores}`` of every prunable group. A group the criterion has nothing to score
    in (a model property) is made unprunable and named in a PruningWarning; it never aborts the call."""
    scores = {}
    for g in graph.prunable_groups():
        try:
            scores[g.index] = criterion(g, ctx).detach().cpu().numpy()
        except NothingToScore as exc:
            _skip_unscored(graph, g, str(exc))
    return scores


def _skip_unscored(graph: DependencyGraph, group: Group, reason: str) -> None:
    """Leave ``group`` untouched because the criterion cannot score it, naming its layers in a warning."""
    group.prunable, group.reason = False, reason
    message = f"{group.name}: channels coupled to it are left untouched: {reason} (layers left untouched: {', '.join(group.modules())})"
    graph.warnings.append(message)
    warnings.warn(message, PruningWarning, stacklevel=4)


def unnamed_untouched(graph: DependencyGraph, unchanged: Sequence[str], ignored: Sequence[str] = ()) -> list[str]:
    """Layers of ``unchanged`` (width kept) that no prunable group holds and no warning names: a bug by construction.

    Layers fixed only by the model's inputs/outputs and those matching ``ignored`` patterns are fine.
    """
    chosen = [g for g in graph.groups if g.prunable or g.reason == IGNORED]  # the plan's or the caller's choice
    fine = {m.module for g in chosen for m in g.members} | set(graph.fixed_by_model())
    named = {n for message in graph.warnings for n in _names_in(message)}
    layers = set(graph.layers())
    return [n for n in unchanged if n in layers and n not in fine and n not in named and not any(fnmatch.fnmatchcase(n, p) for p in ignored)]


def _names_in(message: str) -> list[str]:
    """Module names a structured warning names: its subject and its 'layers left untouched' list."""
    subject, _, rest = message.partition(": ")
    _, _, listed = rest.rpartition("(layers left untouched: ")
    return [subject, *(n.strip() for n in listed.rstrip(")").split(","))] if listed else [subject]
