"""Channel-permutation search for N:M sparsity (after NVIDIA ASP's channel swaps).

An N:M mask keeps N of every M *consecutive* input channels, so which channels share a group
decides how much magnitude survives. Reordering a layer's input channels changes the groups. To
keep the network's function, the same reordering must be applied to every tensor coupled to those
channels: the producing layer's output rows and bias, BatchNorm statistics and affine parameters,
and so on.

Why not permute only the mask computation? A mask computed on permuted columns and permuted back
keeps N of every M channels of a *scattered* set, which is not N:M in the layout the hardware
reads; the permutation must live in the weights.

Which channels are coupled comes from prunekit's dependency graph
(:class:`~prunekit.structured.DependencyGraph`, traced on ``example_inputs``): a group whose every
member maps its positions one-to-one onto the group's units (width 1: no flatten into a linear
layer, no attention heads) can be reordered by one permutation of its units, applied to each member
along its dim. Its N:M *consumers* are the ``in`` members on a ``Linear``/``ConvNd`` with
``groups=1`` whose weight is selected.

By default only *chains* are permuted: one producer of the consumer's layer type → [BatchNorm] →
one consumer, each called once, nothing else coupled, which keeps the results of earlier releases
bit for bit. ``coupled=True`` also permutes every other such group: residual groups, a producer
feeding several consumers, depthwise convolutions in between, concatenated inputs. A group with
several consumers is searched once over the concatenated score rows of all of them (their summed
retained score), since one order must serve them all; each consumer's N:M groups must then cover
the group's channels in the same order, aligned to M, or the group is left alone.

Models the graph cannot trace, or whose forward branches on tensor values (the trace holds for
the example input only), are left unchanged with a logged warning. The search itself
(:func:`search_permutation`) is a pure, seeded, work-bounded greedy: for each group it evaluates
every swap of one of its channels with one channel of other groups and applies the best strictly
improving swap, for at most ``max_passes`` passes over the groups. Each applied swap raises the
retained score, so the result never keeps less than the identity order. Set up the optimizer
*after* permuting: its state (momentum) would still be in the old order.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError
from prunekit.layer_kinds import LayerRecord, kind_of
from prunekit.masks.maskset import WeightMask, strip
from prunekit.masks.nm import check_nm, nm_skip_reason, retained_score
from prunekit.masks.targets import effective_weight, prunable_parameters
from prunekit.structured.graph import DependencyGraph, PruningWarning
from prunekit.structured.groups import Group, Member

logger = logging.getLogger(__name__)

_BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_NORM_ROLES = frozenset({"norm_weight", "norm_bias", "stat"})


@dataclass(frozen=True)
class ChannelGroup:
    """A dependency-graph group one permutation of its units can reorder, with its N:M consumers."""

    index: int  #: the group's index in the dependency graph
    producer: str  #: the module producing its channels (the graph group's name)
    members: tuple[Member, ...]  #: every tensor dim holding its channels
    consumers: tuple[str, ...]  #: N:M-eligible modules reading its channels, in call order
    coupled: bool  #: more than a single producer → [BatchNorm] → consumer chain (needs ``coupled=True``)


@dataclass
class PermutationResult:
    """What the search did for one consumer layer (scores summed over kept entries).

    Consumers of one group share ``group`` and ``swaps``: their search maximized the summed score.
    A consumer reading several groups (a concat) has one result per group, in search order.
    """

    consumer: str
    producer: str
    retained_before: float
    retained_after: float
    swaps: int
    group: int

    @property
    def gain(self) -> float:
        """Relative increase of the retained score."""
        return self.retained_after / self.retained_before - 1.0 if self.retained_before else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "gain": self.gain}


# -- pure search ----------------------------------------------------------------------------------
class _GroupStats:
    """Per group ``g`` and channel ``a``: what the group keeps once ``a`` is taken out.

    With ``a`` removed, the group keeps ``base[g, a]`` (top-``n`` sum of the other ``m - 1``
    channels, per row) and its weakest kept value is ``floor[g, a]``; putting a channel ``c`` in
    ``a``'s place keeps ``base + relu(c - floor)`` per row. That turns a swap's gain into sums of
    element-wise terms, with no sorting in the inner loop.
    """

    def __init__(self, groups: Tensor, n: int) -> None:
        self.groups, self.n = groups, n  # (G, M, R): group, channel in group, row
        m = groups.shape[1]
        self.base = torch.empty(groups.shape, dtype=groups.dtype)
        self.floor = torch.empty(groups.shape, dtype=groups.dtype)
        self.kept = torch.empty(groups.shape[0], dtype=groups.dtype)
        self._others = [[j for j in range(m) if j != a] for a in range(m)]
        self.update(torch.arange(groups.shape[0]))

    def update(self, which: Tensor) -> None:
        """Recompute the statistics of groups ``which`` after their channels changed."""
        block = self.groups[which]  # (K, M, R)
        self.kept[which] = block.topk(self.n, dim=1).values.sum((1, 2))
        for a, others in enumerate(self._others):
            top = block[:, others].topk(self.n, dim=1).values  # (K, n, R)
            self.base[which, a] = top.sum(1)
            self.floor[which, a] = top[:, -1]

    def swap_gains(self, g1: int, partners: Tensor) -> Tensor:
        """Gain in kept score of swapping channel ``a`` of ``g1`` with channel ``b`` of each partner: ``(P, M, M)``."""
        x, y = self.groups[g1], self.groups[partners]  # (M, R), (P, M, R)
        into_x = (y[:, None, :, :] - self.floor[g1][None, :, None, :]).clamp_min(0).sum(-1)  # [p, a, b]
        into_y = (x[None, :, None, :] - self.floor[partners][:, None, :, :]).clamp_min(0).sum(-1)  # [p, a, b]
        base_x = self.base[g1].sum(-1)[None, :, None]
        base_y = self.base[partners].sum(-1)[:, None, :]
        return base_x + into_x + base_y + into_y - self.kept[g1] - self.kept[partners][:, None, None]


def search_permutation(
    scores: Tensor,
    n: int,
    m: int,
    max_passes: int = 2,
    max_partners: int = 32,
    seed: int = 0,
) -> tuple[Tensor, int]:
    """A column order of the ``(rows, channels)`` score matrix that raises the N:M retained score.

    Greedy channel swaps between groups of ``m`` consecutive columns: every pass visits each group
    and compares all swaps of one of its channels with one channel of up to ``max_partners`` other
    groups (a seeded random sample when there are more), applying the best strictly improving
    one. Returns ``(perm, swaps)`` where ``scores[:, perm]`` is the improved layout.
    """
    check_nm(n, m)
    if scores.dim() != 2 or scores.shape[1] % m:
        raise ValueError(f"scores must be (rows, channels) with channels divisible by {m}, got {tuple(scores.shape)}")
    rows, cols = scores.shape
    num_groups = cols // m
    groups = scores.detach().to(torch.float64).abs().t().reshape(num_groups, m, rows).clone()
    stats = _GroupStats(groups, n)
    perm = torch.arange(cols).reshape(num_groups, m)
    generator = torch.Generator().manual_seed(seed)
    tolerance = 1e-9 * float(groups.sum()) + 1e-30
    chunk = max(1, (1 << 22) // (m * m * rows))
    swaps = 0
    for _ in range(max_passes):
        improved = False
        for g1 in range(num_groups):
            others = torch.cat([torch.arange(g1), torch.arange(g1 + 1, num_groups)])
            if len(others) > max_partners:
                others = others[torch.randperm(len(others), generator=generator)[:max_partners]]
            best_gain, best = tolerance, None
            for start in range(0, len(others), chunk):
                part = others[start:start + chunk]
                gains = stats.swap_gains(g1, part)
                value, flat = gains.reshape(-1).max(0)
                if float(value) > best_gain:
                    p, rest = divmod(int(flat), m * m)
                    best_gain, best = float(value), (int(part[p]), *divmod(rest, m))
            if best is not None:
                g2, a, b = best
                groups[[g1, g2], [a, b]] = groups[[g2, g1], [b, a]]
                perm[[g1, g2], [a, b]] = perm[[g2, g1], [b, a]]
                stats.update(torch.tensor([g1, g2]))
                swaps += 1
                improved = True
        if not improved:
            break
    return perm.reshape(-1), swaps


# -- groups from the dependency graph ------------------------------------------------------------
def missing_example_inputs(call: str) -> ConfigError:
    """The error for a permutation asked for without the example inputs the graph is traced on."""
    return ConfigError(
        "N:M channel permutation traces the model's channel coupling and needs example inputs: "
        f"pass example_inputs=<a batch the model accepts> (a tensor, or a tuple of forward's positional arguments), e.g. {call}"
    )


def find_groups(model: nn.Module, example_inputs: Any, coupled: bool = False) -> list[ChannelGroup]:
    """Groups of coupled channels whose order can be changed without changing the function.

    Only chains (see the module docstring) unless ``coupled``; ordered by their first consumer's
    call. Returns ``[]`` (with a logged warning) when the graph cannot be trusted for ``model``.
    """
    graph = _graph(model, example_inputs)
    if graph is None:
        return []
    first_call: dict[str, int] = {}
    for i, call in enumerate(graph.prop.leaf_calls):
        first_call.setdefault(call.path, i)
    calls = Counter(call.path for call in graph.prop.leaf_calls)
    modules = dict(model.named_modules())
    found = []
    for group in graph.groups:
        if not group.prunable or not all(_one_to_one(member, group.size) for member in group.members):
            continue
        consumers = sorted({mem.module for mem in group.members if mem.role == "in" and _is_consumer(modules, mem)}, key=first_call.__getitem__)
        if not consumers:
            continue
        chain = _is_chain(group, modules, calls)
        if chain or coupled:
            found.append(ChannelGroup(group.index, group.name, tuple(group.members), tuple(consumers), not chain))
    return sorted(found, key=lambda g: first_call[g.consumers[0]])


def _graph(model: nn.Module, example_inputs: Any) -> DependencyGraph | None:
    """The model's dependency graph (traced on a mask-free copy if masks are attached), or ``None``."""
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    traced = strip(copy.deepcopy(model)) if any(parametrize.is_parametrized(m) for m in model.modules()) else model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PruningWarning)  # about structured pruning, not permutation
            graph = DependencyGraph.build(traced, inputs)
    except Exception as exc:  # tracing user code fails in many ways
        logger.warning("cannot trace %s into a dependency graph (%s); no channel permutation applied", type(model).__name__, exc)
        return None
    if any(isinstance(guard.value, Tensor) for guard in graph.prop.trace.guards):
        logger.warning("%s branches on tensor values, so one trace does not prove its channel coupling; no channel permutation applied",
                       type(model).__name__)
        return None
    return graph


def _one_to_one(member: Member, size: int) -> bool:
    """Every unit owns exactly one position of the member (positions of other groups aside)."""
    owned = member.units[member.units >= 0]
    return owned.size == size and bool((np.bincount(owned, minlength=size) == 1).all())


def _nm_record(module: nn.Module | None) -> LayerRecord | None:
    """The layer record of ``module`` if its weight can carry an N:M pattern (``groups=1``), else ``None``."""
    record = kind_of(module) if module is not None else None
    return record if record is not None and record.nm and getattr(module, "groups", 1) == 1 else None


def _is_consumer(modules: dict[str, nn.Module], member: Member) -> bool:
    """``member`` is the input-channel dim of an N:M-eligible layer's weight."""
    record = _nm_record(modules.get(member.module))
    return record is not None and member.name == record.weight and member.dim == record.in_axis


def _is_chain(group: Group, modules: dict[str, nn.Module], calls: Counter[str]) -> bool:
    """One producer → [BatchNorm] → one consumer of the producer's layer type, each called once, nothing else coupled."""
    outs = [mem for mem in group.members if mem.role == "out"]
    ins = [mem for mem in group.members if mem.role == "in"]
    if len(outs) != 1 or len(ins) != 1 or not _is_consumer(modules, ins[0]):
        return False
    producer, consumer = outs[0].module, ins[0].module
    if _nm_record(modules.get(producer)) is not _nm_record(modules[consumer]) or calls[producer] != 1 or calls[consumer] != 1:
        return False
    if not all((mem.units >= 0).all() for mem in group.members):
        return False
    for mem in group.members:
        bias = mem.role == "bias" and mem.module == producer
        norm = mem.role in _NORM_ROLES and isinstance(modules.get(mem.module), _BATCH_NORMS) and calls[mem.module] == 1
        if not (mem is outs[0] or mem is ins[0] or bias or norm):
            return False
    return True


def _consumer_columns(group: ChannelGroup, consumers: Sequence[str], m: int) -> tuple[list[int], np.ndarray] | None:
    """Where the group's channels start in each consumer's input and their unit order, or ``None`` if not N:M aligned."""
    offsets, order = [], None
    for name in consumers:
        member = next(mem for mem in group.members if mem.module == name and mem.role == "in")
        owned = np.flatnonzero(member.units >= 0)
        start = int(owned[0])
        if start % m or owned.size % m or not np.array_equal(owned, np.arange(start, start + owned.size)):
            return None
        units = member.units[owned]
        if order is not None and not np.array_equal(units, order):
            return None
        offsets.append(start)
        order = units
    assert order is not None, "a group has at least one consumer"
    return offsets, order


# -- applying a permutation -----------------------------------------------------------------------
def _permute_param(module: nn.Module, pname: str, perm: Tensor, dim: int) -> None:
    """Reorder ``module.<pname>`` along ``dim`` in place, with its attached masks, if any."""
    if parametrize.is_parametrized(module, pname):
        plist = module.parametrizations[pname]  # type: ignore[index]
        tensors = [plist.original] + [p.mask for p in plist if isinstance(p, WeightMask)]
    else:
        tensors = [getattr(module, pname)]
    with torch.no_grad():
        for tensor in tensors:
            tensor.copy_(tensor.index_select(dim, perm.to(tensor.device)))


def apply_permutation(model: nn.Module, group: ChannelGroup, perm: Tensor) -> None:
    """Reorder every member of ``group`` in ``model``: the channel of unit ``perm[u]`` takes unit ``u``'s place."""
    for member in group.members:
        units = torch.as_tensor(member.units)
        owned = torch.nonzero(units >= 0).squeeze(1)
        position = torch.empty(len(perm), dtype=torch.long)
        position[units[owned]] = owned
        index = torch.arange(len(units))
        index[owned] = position[perm[units[owned]]]
        _permute_param(model.get_submodule(member.module), member.name, index, member.dim)


def permute_for_nm(
    model: nn.Module,
    n: int,
    m: int,
    example_inputs: Any = None,
    *,
    names: Sequence[str] | None = None,
    score_fn: Callable[[Tensor], Tensor] = torch.abs,
    coupled: bool = False,
    max_passes: int = 2,
    max_partners: int = 32,
    seed: int = 0,
) -> list[PermutationResult]:
    """Permute channels of every permutable group (see the module docstring) to raise N:M retained scores.

    ``example_inputs`` (a tensor or a tuple of ``forward``'s arguments) is what the dependency
    graph is traced on. ``names`` restricts the consumers to those weights (default: every prunable
    weight); scores are ``score_fn(effective weight)``. ``coupled`` permutes groups beyond plain
    chains. Mutates ``model`` in place; its function is unchanged.
    """
    check_nm(n, m)
    if example_inputs is None:
        raise missing_example_inputs("permute_for_nm(model, 2, 4, torch.randn(1, 3, 32, 32))")
    wanted = set(prunable_parameters(model) if names is None else names)
    results = []
    for group in find_groups(model, example_inputs, coupled=coupled):
        consumers = [c for c in group.consumers if f"{c}.weight" in wanted and nm_skip_reason(model, f"{c}.weight", m) is None]
        columns = _consumer_columns(group, consumers, m) if consumers else None
        if columns is None:
            continue
        offsets, order = columns
        weights = [f"{c}.weight" for c in consumers]
        scores = [score_fn(effective_weight(model, w).detach()) for w in weights]
        before = [retained_score(s, n, m) for s in scores]
        matrix = torch.cat([s.movedim(1, -1).reshape(-1, s.shape[1])[:, start:start + len(order)] for s, start in zip(scores, offsets)])
        perm, swaps = search_permutation(matrix, n, m, max_passes=max_passes, max_partners=max_partners, seed=seed)
        if swaps:
            unit_perm = torch.empty(len(order), dtype=torch.long)
            unit_perm[torch.as_tensor(order)] = torch.as_tensor(order)[perm]
            apply_permutation(model, group, unit_perm)
        for weight, old in zip(weights, before):
            after = retained_score(score_fn(effective_weight(model, weight).detach()), n, m)
            results.append(PermutationResult(weight, group.producer, old, after, swaps, group.index))
            logger.info("%s: %d channel swaps, N:M retained score %.4g -> %.4g", weight, swaps, old, after)
    return results
