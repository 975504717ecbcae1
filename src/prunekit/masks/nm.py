"""N:M sparsity patterns: keep exactly N of every M consecutive weights along the input dimension.

Layout (the one sparse tensor cores and cuSPARSELt use, and NVIDIA ASP prunes for):

* ``Linear`` weight ``(out, in)``: each row is split into groups of M consecutive input features
  ``[0..M-1], [M..2M-1], …``.
* ``Conv{1,2,3}d`` weight ``(out, in/groups, *kernel)``: for every output channel and every kernel
  position ``(out, kh, kw)`` the input channels are split into groups of M consecutive channels,
  i.e. the weight is viewed as ``weight.movedim(1, -1)`` of shape ``(out, *kernel, in)`` and grouped
  along its last dimension (the channels-innermost GEMM layout).

A layer whose input dimension is not a multiple of M is **skipped** (left without a mask, with a
logged warning), never padded: a padded tail group matches no hardware kernel, and skipping the few
such layers (typically the RGB stem convolution) is what ASP does too. Other layer types
(transposed convolutions, whose weight is ``(in, out, *kernel)``) are skipped the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.layer_kinds import NM_LAYERS, kind_of  # NM_LAYERS: re-exported public name
from prunekit.masks.maskset import MaskSet
from prunekit.masks.targets import effective_weight, owner, prunable_parameters

logger = logging.getLogger(__name__)


def check_nm(n: int, m: int) -> None:
    """Raise :class:`ConfigError` unless ``0 < n < m``."""
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
        raise ConfigError(f"N:M sparsity needs integers 0 < N < M, got N={n!r}, M={m!r} (e.g. 2:4, 1:4, 4:8)")


def to_groups(tensor: Tensor, m: int) -> Tensor:
    """View a ``(out, in, *kernel)`` tensor as ``(rows, in // m, m)`` groups (see the module docstring)."""
    if tensor.dim() < 2:
        raise ConfigError(f"N:M groups need a weight with >= 2 dims (out, in, ...), got shape {tuple(tensor.shape)}")
    cols = tensor.shape[1]
    if cols % m:
        raise ConfigError(f"input dimension {cols} of shape {tuple(tensor.shape)} is not a multiple of M={m}")
    return tensor.movedim(1, -1).reshape(-1, cols // m, m)


def from_groups(groups: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`to_groups`: back to the ``(out, in, *kernel)`` ``shape``."""
    shape = tuple(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return groups.reshape(moved).movedim(-1, 1)


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """Bool mask keeping the ``n`` highest-scoring entries of every group of ``m`` (exactly ``n``).

    ``scores`` has a weight's shape ``(out, in, *kernel)``; ties are broken by ``torch.topk``.
    """
    check_nm(n, m)
    groups = to_groups(scores.detach(), m)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=groups.device)
    keep.scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return from_groups(keep, scores.shape)


def retained_score(scores: Tensor, n: int, m: int) -> float:
    """Sum of the scores an N:M mask keeps (the quantity a channel permutation tries to raise)."""
    check_nm(n, m)
    return float(to_groups(scores.detach(), m).topk(n, dim=-1).values.sum())


@dataclass
class NMCheck:
    """Result of :func:`is_valid_nm`; truthy when valid. ``failures`` lists the first offending groups."""

    valid: bool
    n: int
    m: int
    groups: int
    bad_groups: int
    failures: list[tuple[tuple[int, ...], int]] = field(default_factory=list)
    reason: str = ""

    def __bool__(self) -> bool:
        return self.valid

    @property
    def message(self) -> str:
        """One human-readable line describing the result."""
        if self.valid:
            return f"valid {self.n}:{self.m} ({self.groups} groups)"
        if self.reason:
            return f"not {self.n}:{self.m}: {self.reason}"
        where = "; ".join(f"group at index {idx} keeps {kept}" for idx, kept in self.failures)
        return f"not {self.n}:{self.m}: {self.bad_groups} of {self.groups} groups violate it (first: {where})"


def is_valid_nm(mask: Tensor, n: int, m: int, exact: bool = False, max_failures: int = 5) -> NMCheck:
    """Check that every group of ``m`` consecutive input entries keeps at most ``n`` (exactly ``n`` if ``exact``).

    ``mask`` may be a bool mask or a weight (nonzero = kept). Failures are reported by the index,
    in the original ``(out, in, *kernel)`` layout, of the group's first entry.
    """
    check_nm(n, m)
    shape = tuple(mask.shape)
    if mask.dim() < 2 or shape[1] % m:
        cols = shape[1] if mask.dim() >= 2 else None
        reason = f"input dimension {cols} of shape {shape} is not a multiple of M={m}"
        return NMCheck(False, n, m, 0, 0, reason=reason)
    kept = to_groups(mask.detach() != 0, m).sum(-1)
    bad = kept != n if exact else kept > n
    bad_rows, bad_cols = bad.nonzero(as_tuple=True)
    failures = []
    for row, col in zip(bad_rows[:max_failures].tolist(), bad_cols[:max_failures].tolist()):
        failures.append((_group_index(shape, row, col * m), int(kept[row, col])))
    return NMCheck(not bool(bad.any()), n, m, kept.numel(), int(bad.sum()), failures)


def _group_index(shape: tuple[int, ...], row: int, col: int) -> tuple[int, ...]:
    """Index in ``(out, in, *kernel)`` of entry ``col`` of grouped row ``row``."""
    moved = (shape[0], *shape[2:])
    idx = list(torch.unravel_index(torch.tensor(row), moved))
    return (int(idx[0]), col, *(int(i) for i in idx[1:]))


def nm_skip_reason(model: nn.Module, name: str, m: int) -> str | None:
    """Why parameter ``name`` cannot carry an N:M mask with group size ``m`` (``None`` if it can)."""
    module, pname = owner(model, name)
    record = kind_of(module)
    if record is None or not record.nm or pname != record.weight:
        return f"{name}: N:M masks apply to Linear/Conv weights, not {type(module).__name__}.{pname}"
    cols = effective_weight(model, name).shape[1]
    if cols % m:
        return f"{name}: input dimension {cols} is not a multiple of M={m}"
    return None


def nm_maskset(
    model: nn.Module,
    n: int,
    m: int,
    scores: Mapping[str, Tensor] | None = None,
    names: Sequence[str] | None = None,
) -> MaskSet:
    """N:M masks for ``names`` (default: every prunable weight) from ``scores`` (default: |weight|).

    Parameters that cannot take an N:M pattern (see :func:`nm_skip_reason`) are skipped with a
    logged warning; the returned :class:`MaskSet` simply has no entry for them.
    """
    check_nm(n, m)
    names = prunable_parameters(model) if names is None else list(names)
    masks = {}
    for name in names:
        reason = nm_skip_reason(model, name, m)
        if reason is not None:
            logger.warning("skipping %s (stays without an N:M mask)", reason)
            continue
        if scores is None:
            score = effective_weight(model, name).detach().abs()
        elif name in scores:
            score = scores[name]
        else:
            raise ConfigError(f"no score tensor for {name!r}; scores cover {sorted(scores)[:4]}")
        masks[name] = nm_mask(score, n, m)
    return MaskSet(masks)
