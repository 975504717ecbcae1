"""Which channel groups of a dependency graph can carry one input-dependent gate, and the layers each touches.

A group is *gateable* when its channels live only inside one chain: one ordinary conv producing
them (``out``), optional norms and depthwise convs carrying them channel by channel, and ordinary
convs consuming them (``in``), every member covering all of the layer's channels in order. Groups
coupled through residual adds (several producers), concatenations, flattens into a linear layer or
channel shuffles are not gateable and are skipped: static pruning is the tool for those.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from prunekit.errors import ConfigError
from prunekit.structured import DependencyGraph, Group

_NORMS = (nn.BatchNorm2d,)
_CHANNEL_ROLES = ("norm_weight", "norm_bias", "stat")


@dataclass(frozen=True)
class GateSite:
    """One gated group: ``producer`` computes its ``channels``; ``norms``/``depthwise`` carry them; ``consumers`` read them."""

    name: str
    channels: int
    producer: str
    norms: tuple[str, ...]
    depthwise: tuple[str, ...]
    consumers: tuple[str, ...]
    #: ``(conv, norm)`` pairs where the norm is the only reader of the conv's output (the skip path folds them).
    folds: tuple[tuple[str, str], ...] = ()

    @property
    def layers(self) -> tuple[str, ...]:
        """Every module whose channels this gate switches, in flow order."""
        return (self.producer, *self.norms, *self.depthwise, *self.consumers)


def _is_plain_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros"


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels and m.padding_mode == "zeros"


def why_not_gateable(model: nn.Module, group: Group) -> str | None:
    """The reason ``group`` cannot carry a gate, or ``None`` when it can."""
    if not group.prunable:
        return f"the graph fixes it ({group.reason})"
    for m in group.members:
        if m.units.size != group.size or not np.array_equal(m.units, np.arange(group.size)):
            return f"{m.fqn} holds its channels in another order or only in part (concat, split, flatten or shuffle)"
    outs = [name for name in group.modules("out")]
    plain = [n for n in outs if _is_plain_conv(model.get_submodule(n))]
    depthwise = [n for n in outs if _is_depthwise(model.get_submodule(n))]
    if len(plain) != 1 or len(plain) + len(depthwise) != len(outs):
        return f"its channels come from {len(outs)} layers ({', '.join(outs)}): coupled through a residual add or a non-conv layer"
    for name in group.modules("in"):
        m = model.get_submodule(name)
        if name not in depthwise and not _is_plain_conv(m):
            return f"its consumer {name} ({type(m).__name__}) is not an ungrouped Conv2d"
    for name in {m.module for m in group.members if m.role in _CHANNEL_ROLES}:
        if not isinstance(model.get_submodule(name), _NORMS):
            return f"{name} ({type(model.get_submodule(name)).__name__}) is not a BatchNorm2d"
    return None


def _sole_readers(graph: DependencyGraph) -> dict[str, str]:
    """``{conv: module}`` for each module call whose output only one module call reads."""
    out = {}
    for node in graph.prop.trace.graph.nodes:
        if node.op == "call_module" and len(node.users) == 1:
            (user,) = node.users
            if user.op == "call_module":
                out[str(node.target)] = str(user.target)
    return out


def _site(group: Group, readers: dict[str, str]) -> GateSite:
    outs = group.modules("out")
    norms = tuple(m for m in group.modules() if any(x.module == m and x.role in _CHANNEL_ROLES for x in group.members))
    producer, depthwise = outs[0], tuple(outs[1:])
    consumers = tuple(n for n in group.modules("in") if n not in depthwise)
    folds = tuple((conv, readers[conv]) for conv in (producer, *depthwise) if readers.get(conv) in norms)
    return GateSite(group.name, group.size, producer, norms, depthwise, consumers, folds)


def find_sites(model: nn.Module, example_inputs: object, groups: Sequence[str] = ("*",)) -> list[GateSite]:
    """Gateable groups of ``model`` whose name (the producing layer) matches one of ``groups`` (fnmatch patterns).

    A pattern that names no gateable group raises :class:`ConfigError` saying why the group it
    names (if any) cannot be gated.
    """
    graph = DependencyGraph.build(model, example_inputs)
    reasons = {g.name: why_not_gateable(model, g) for g in graph.groups}
    by_name = {g.name: g for g in graph.groups}
    sites, chosen = [], set()
    for pattern in groups:
        matched = [n for n in by_name if fnmatch.fnmatchcase(n, pattern) and reasons[n] is None]
        if not matched:
            named = [f"{n}: {reasons[n]}" for n in by_name if fnmatch.fnmatchcase(n, pattern)]
            detail = "; ".join(named) if named else f"gateable groups are {sorted(n for n, r in reasons.items() if r is None)}"
            raise ConfigError(f"dynamic gates: pattern {pattern!r} matches no gateable group ({detail}); pick block-interior groups")
        chosen.update(matched)
    readers = _sole_readers(graph)
    for g in graph.groups:
        if g.name in chosen:
            sites.append(_site(g, readers))
    return sites
