"""Sparsity learning before structured pruning: train with a penalty that pushes whole channels to zero.

``bn_l1`` is network slimming (Liu et al. 2017: an L1 subgradient on batch-norm scales);
``group_lasso`` adds ``λ·Σ‖θ_unit‖₂`` over the units of every prunable dependency-graph group.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from prunekit._settings import Settings
from prunekit.structured import DependencyGraph
from prunekit.structured.groups import Group
from prunekit.structured.regularizers import apply_bn_l1_grad_, group_lasso_penalty
from prunekit.training.callbacks import Callback
from prunekit.training.config import TrainConfig
from prunekit.training.loop import Batches, TrainResult, fit
from prunekit.training.trainer import Trainer


class SparsityLearningConfig(Settings):
    """A training phase before structured pruning that pushes whole channels toward zero:
    ``bn_l1`` (network slimming: L1 on batch-norm scales) or ``group_lasso`` (L2 norm per channel group)."""

    kind: Literal["bn_l1", "group_lasso"] = "bn_l1"
    lam: float = Field(1e-4, gt=0)
    train: TrainConfig = TrainConfig(epochs=5)


class SparsityPenalty(Callback):
    """Network slimming (L1 subgradient on BN scales) or group lasso (a penalty on channel ``groups``)."""

    def __init__(self, settings: SparsityLearningConfig, groups: Sequence[Group] = ()) -> None:
        self.settings = settings
        self.groups = list(groups)

    def loss_penalty(self, trainer: Trainer) -> torch.Tensor | None:
        if self.settings.kind == "group_lasso":
            return group_lasso_penalty(trainer.model, self.groups, self.settings.lam)
        return None

    def after_backward(self, trainer: Trainer) -> None:
        if self.settings.kind == "bn_l1":
            apply_bn_l1_grad_(trainer.model, self.settings.lam)


def learn_sparsity(
    model: nn.Module,
    train: Batches,
    config: SparsityLearningConfig,
    *,
    example_inputs: Any,
    val: Batches | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` in place with ``config.train`` and its sparsity penalty (resumable from ``checkpoint``).

    ``example_inputs`` trace the dependency graph whose prunable groups ``group_lasso`` penalises.
    """
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    groups = DependencyGraph.build(model, inputs).prunable_groups() if config.kind == "group_lasso" else []
    return fit(model, train, config.train, val=val, callbacks=[SparsityPenalty(config, groups), *callbacks], checkpoint=checkpoint,
               device=device, progress=progress, description=f"sparsity learning ({config.kind})")
