"""Sparsity learning before structured pruning: penalties that push whole channels toward zero.

* :func:`bn_l1_penalty`: network slimming (Liu et al. 2017), ``λ·Σ|γ|`` over norm-layer scales.
* :func:`apply_bn_l1_grad_`: the same as a subgradient step added to ``.grad`` after ``backward``.
* :func:`group_lasso_penalty`: ``λ·Σ_groups Σ_units ‖θ_unit‖₂`` over every parameter slice a unit
  owns in a dependency-graph group, so that whole coupled channels vanish together.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.structured.groups import Group

NORM_TYPES: tuple[type[nn.Module], ...] = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _scales(model: nn.Module, types: tuple[type[nn.Module], ...]) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, types) and getattr(m, "weight", None) is not None]


def bn_l1_penalty(model: nn.Module, lam: float, types: tuple[type[nn.Module], ...] = (_BatchNorm,)) -> torch.Tensor:
    """``lam · Σ |γ|`` over the scales of ``types`` norm layers (batch norm by default); add it to the loss."""
    scales = _scales(model, types)
    if not scales:
        return torch.zeros(())
    return lam * torch.stack([w.abs().sum() for w in scales]).sum()


@torch.no_grad()
def apply_bn_l1_grad_(model: nn.Module, lam: float, types: tuple[type[nn.Module], ...] = (_BatchNorm,)) -> None:
    """Add the L1 subgradient ``lam · sign(γ)`` to the norm scales' gradients (call after ``backward``)."""
    for w in _scales(model, types):
        if w.grad is None:
            w.grad = lam * torch.sign(w)
        else:
            w.grad.add_(torch.sign(w), alpha=lam)


def group_lasso_penalty(model: nn.Module, groups: Iterable[Group], lam: float) -> torch.Tensor:
    """``lam · Σ_groups Σ_units ‖θ_unit‖₂``: each unit's norm over every tensor slice it owns.

    ``groups`` come from :class:`~prunekit.structured.DependencyGraph` (e.g. its prunable groups);
    the penalty is differentiable, add it to the loss.
    """
    terms = []
    for group in groups:
        total = None
        for member in group.members:
            if member.role == "stat":
                continue
            tensor = member.tensor(model)
            if not tensor.requires_grad:
                continue
            per_pos = member.per_position(tensor**2)
            units = torch.as_tensor(member.units, device=per_pos.device)
            mask = units >= 0
            sums = torch.zeros(group.size, dtype=per_pos.dtype, device=per_pos.device).index_add(0, units[mask], per_pos[mask])
            total = sums if total is None else total + sums
        if total is not None:
            terms.append(total.clamp_min(1e-12).sqrt().sum())
    if not terms:
        return torch.zeros(())
    return lam * torch.stack(terms).sum()
