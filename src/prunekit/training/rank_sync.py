"""Rank agreement on pruned state under ``torchrun``: masks and pruned architectures.

Every rank prunes from its own calibration batch; these make every rank keep rank ``src``'s result.
They live apart from :mod:`prunekit.training.distributed` so that plain (dense) training does not
import the mask and structured-surgery code. No-ops in a single process.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from prunekit.masks import WeightMask
from prunekit.structured.spec import architecture_spec, rebuild
from prunekit.training import distributed

log = logging.getLogger(__name__)


def sync_masks(model: nn.Module, src: int = 0) -> None:
    """Make the masks attached to ``model`` rank ``src``'s, in place (mask buffers of every parametrization)."""
    if not distributed.is_distributed():
        return
    with torch.no_grad():
        distributed.broadcast_tensors(m.mask for _, m in sorted((n, m) for n, m in model.named_modules() if isinstance(m, WeightMask)))


def sync_architecture(model: nn.Module, src: int = 0) -> nn.Module:
    """After structured surgery: give every rank rank ``src``'s architecture (shrinking in place where
    this rank's plan differed) and weights, so every rank trains the same pruned model."""
    if not distributed.is_distributed():
        return model
    spec = distributed.broadcast_object(architecture_spec(model), src)
    if spec != architecture_spec(model):
        log.warning("rank %d pruned to another architecture than rank %d; using rank %d's", distributed.rank(), src, src)
        rebuild(model, spec)
    distributed.broadcast_state(model, src)
    return model
