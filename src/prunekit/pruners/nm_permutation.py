"""Channel-permutation search for N:M sparsity (after NVIDIA ASP's channel swaps).

An N:M mask keeps N of every M *consecutive* input channels, so which channels share a group
decides how much magnitude survives. Reordering a layer's input channels changes the groups. To
keep the network's function, the same reordering must be applied to whatever *produces* those
channels: the previous layer's output rows (weight rows, bias) and any per-channel module in
between (BatchNorm statistics and affine parameters).

Why not permute only the mask computation? A mask computed on permuted columns and permuted back
keeps N of every M channels of a *scattered* set, which is not N:M in the layout the hardware
reads; the permutation must live in the weights.

So permutations are applied only where the dependency is provable from a ``torch.fx`` trace:
a chain ``producer → [channel-wise ops] → consumer`` in which the producer is a ``Linear``/``ConvNd``
(groups=1) called once, every intermediate node has exactly one user, and the ops in between act
per channel (element-wise activations, dropout, BatchNorm, and — between convolutions — pooling).
Layers fed by anything else (a residual add, a concat, a flatten, the model input) keep their
order. Models that cannot be traced are left unchanged, with a logged warning.

The search itself (:func:`search_permutation`) is a pure, seeded, work-bounded greedy: for each
group it evaluates every swap of one of its channels with one channel of other groups and applies
the best strictly improving swap, for at most ``max_passes`` passes over the groups. Each applied
swap raises the retained score, so the result never keeps less than the identity order. Set up
the optimizer *after* permuting: its state (momentum) would still be in the old order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.fx import Node, symbolic_trace
from torch.nn import functional as F
from torch.nn.utils import parametrize

from prunekit.layer_kinds import kind_of
from prunekit.masks.maskset import WeightMask
from prunekit.masks.nm import check_nm, nm_skip_reason, retained_score
from prunekit.masks.targets import effective_weight, prunable_parameters

logger = logging.getLogger(__name__)

_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)
_NORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_ELEMENTWISE_FUNCTIONS: frozenset[Callable[..., object]] = frozenset({
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh,
    F.dropout, torch.relu, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
})
_POOL_FUNCTIONS: frozenset[Callable[..., object]] = frozenset({
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
})
_ELEMENTWISE_METHODS = frozenset({"relu", "relu_", "sigmoid", "tanh"})


@dataclass(frozen=True)
class ChannelChain:
    """``producer → per-channel modules → consumer``: the consumer's input channels are the producer's outputs."""

    producer: str
    norms: tuple[str, ...]
    consumer: str


@dataclass
class PermutationResult:
    """What the search did for one consumer layer (scores summed over kept entries)."""

    consumer: str
    producer: str
    retained_before: float
    retained_after: float
    swaps: int

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


# -- dependency discovery -------------------------------------------------------------------------
def find_chains(model: nn.Module) -> list[ChannelChain]:
    """Producer/consumer chains whose channel order can be changed without changing the function.

    Returns ``[]`` (with a logged warning) when ``model`` cannot be traced by ``torch.fx``.
    """
    try:
        graph = symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types on untraceable Python control flow
        logger.warning("cannot trace %s with torch.fx (%s); no channel permutation applied", type(model).__name__, exc)
        return []
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    modules = dict(model.named_modules())
    chains = []
    for node in graph.nodes:
        if node.op == "call_module" and _is_groups1(modules.get(node.target)) and calls[node.target] == 1:
            chain = _walk_back(node, modules, calls)
            if chain is not None:
                chains.append(chain)
    return chains


def _is_groups1(module: nn.Module | None) -> bool:
    record = kind_of(module) if module is not None else None
    return record is not None and record.nm and getattr(module, "groups", 1) == 1


def _kind(module: nn.Module) -> type[nn.Module]:
    record = kind_of(module)
    assert record is not None, "called only where _is_groups1 holds"
    return record.module_type


def _walk_back(consumer: Node, modules: dict[str, nn.Module], calls: dict[str, int]) -> ChannelChain | None:
    kind = _kind(modules[consumer.target])
    is_conv = kind is not nn.Linear
    norms: list[str] = []
    node = consumer.args[0] if consumer.args else None
    while isinstance(node, Node) and len(node.users) == 1:
        if node.op == "call_module":
            module = modules[node.target]
            if _is_groups1(module):
                if _kind(module) is not kind or calls[node.target] != 1:
                    return None
                return ChannelChain(node.target, tuple(reversed(norms)), consumer.target)
            if isinstance(module, _NORM_MODULES) and calls[node.target] == 1:
                norms.append(node.target)
            elif not (isinstance(module, _ELEMENTWISE_MODULES) or (is_conv and isinstance(module, _POOL_MODULES))):
                return None
        elif node.op == "call_function":
            if not (node.target in _ELEMENTWISE_FUNCTIONS or (is_conv and node.target in _POOL_FUNCTIONS)):
                return None
        elif not (node.op == "call_method" and node.target in _ELEMENTWISE_METHODS):
            return None
        node = node.args[0] if node.args else None
    return None


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


def apply_permutation(model: nn.Module, chain: ChannelChain, perm: Tensor) -> None:
    """Reorder the consumer's input channels by ``perm`` and the producer's outputs (and norms) to match."""
    producer, consumer = model.get_submodule(chain.producer), model.get_submodule(chain.consumer)
    _permute_param(consumer, "weight", perm, 1)
    _permute_param(producer, "weight", perm, 0)
    if producer.bias is not None:
        _permute_param(producer, "bias", perm, 0)
    for name in chain.norms:
        norm = model.get_submodule(name)
        for pname in ("weight", "bias"):
            if getattr(norm, pname, None) is not None:
                _permute_param(norm, pname, perm, 0)
        for bname in ("running_mean", "running_var"):
            buf = getattr(norm, bname, None)
            if buf is not None:
                buf.copy_(buf.index_select(0, perm.to(buf.device)))


def permute_for_nm(
    model: nn.Module,
    n: int,
    m: int,
    names: Sequence[str] | None = None,
    score_fn: Callable[[Tensor], Tensor] = torch.abs,
    max_passes: int = 2,
    max_partners: int = 32,
    seed: int = 0,
) -> list[PermutationResult]:
    """Permute channels of every provable chain (see the module docstring) to raise N:M retained scores.

    ``names`` restricts the consumers to those weights (default: every prunable weight); scores are
    ``score_fn(effective weight)``. Mutates ``model`` in place; its function is unchanged.
    """
    check_nm(n, m)
    wanted = set(prunable_parameters(model) if names is None else names)
    results = []
    for chain in find_chains(model):
        weight_name = f"{chain.consumer}.weight"
        if weight_name not in wanted or nm_skip_reason(model, weight_name, m) is not None:
            continue
        scores = score_fn(effective_weight(model, weight_name).detach())
        matrix = scores.movedim(1, -1).reshape(-1, scores.shape[1])
        before = retained_score(scores, n, m)
        perm, swaps = search_permutation(matrix, n, m, max_passes=max_passes, max_partners=max_partners, seed=seed)
        if swaps:
            apply_permutation(model, chain, perm)
        after = retained_score(score_fn(effective_weight(model, weight_name).detach()), n, m)
        results.append(PermutationResult(weight_name, chain.producer, before, after, swaps))
        logger.info("%s: %d channel swaps, N:M retained score %.4g -> %.4g", weight_name, swaps, before, after)
    return results
