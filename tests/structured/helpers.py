"""Test helpers: the 'zeroed channels' reference that pruning must reproduce exactly."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.structured import DependencyGraph, Group


class MaskedLayerNorm(nn.Module):
    """LayerNorm over the last axis using only kept positions (what a pruned LayerNorm computes)."""

    def __init__(self, ln: nn.LayerNorm, keep: torch.Tensor) -> None:
        super().__init__()
        self.ln, self.keep = ln, keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        w = self.ln.weight[self.keep] if self.ln.weight is not None else None
        b = self.ln.bias[self.keep] if self.ln.bias is not None else None
        out[..., self.keep] = F.layer_norm(x[..., self.keep], (int(self.keep.sum()),), w, b, self.ln.eps)
        return out


def zeroed(model: nn.Module, group: Group, units: Sequence[int]) -> nn.Module:
    """A copy of ``model`` where the group's units are zeroed in every member (consumers included).

    Zeroing producers, norm parameters and every consumer's input slice cuts the units out of the
    computation; only normalisations over the channel axis still see them, so LayerNorms of the
    group are replaced by :class:`MaskedLayerNorm`. The pruned model must match this exactly.
    """
    ref = copy.deepcopy(model)
    chosen = torch.zeros(group.size, dtype=torch.bool)
    chosen[list(units)] = True
    masked: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for m in group.members:
            t = m.tensor(ref)
            owner = torch.as_tensor(m.units)
            pos = torch.nonzero((owner >= 0) & chosen[owner.clamp_min(0)]).flatten()
            t.index_fill_(m.dim, pos, 0.0)
            module = ref.get_submodule(m.module) if m.module else ref
            if isinstance(module, nn.LayerNorm) and m.name == "weight" and len(module.normalized_shape) == 1:
                keep = torch.ones(t.shape[0], dtype=torch.bool)
                keep[pos] = False
                masked[m.module] = keep
    for path, keep in masked.items():
        parent_name, _, child = path.rpartition(".")
        parent = ref.get_submodule(parent_name) if parent_name else ref
        setattr(parent, child, MaskedLayerNorm(getattr(parent, child), keep))
    return ref


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def graph_of(model: nn.Module, x: torch.Tensor, **options: Any) -> DependencyGraph:
    from prunekit.structured import GraphConfig

    return DependencyGraph.build(model, x, GraphConfig(strict=True, **options))
