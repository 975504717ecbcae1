"""Optimizers and per-iteration learning-rate schedules from config objects."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from prunekit.training.config import LRScheduleConfig, OptimizerConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> Optimizer:
    """SGD / Adam / AdamW over ``params`` (pass ``model.parameters()``; masks keep working)."""
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


class _Multiplier:
    """LR multiplier per iteration for constant/step/cosine schedules (picklable, JSON-free state)."""

    def __init__(self, cfg: LRScheduleConfig, steps_per_epoch: int, total_steps: int, base_lr: float) -> None:
        self.cfg, self.spe, self.total, self.base_lr = cfg, steps_per_epoch, total_steps, base_lr

    def __call__(self, step: int) -> float:
        warm = int(self.cfg.warmup_epochs * self.spe)
        if step < warm:
            return (step + 1) / warm
        if self.cfg.name == "step":
            passed = sum(1 for m in self.cfg.milestones if step >= m * self.spe)
            return self.cfg.gamma**passed
        if self.cfg.name == "cosine":
            span = max(1, self.total - warm)
            floor = self.cfg.min_lr / self.base_lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / span)))
        return 1.0


def make_lr_scheduler(optimizer: Optimizer, cfg: LRScheduleConfig, steps_per_epoch: int, total_steps: int) -> LRScheduler:
    """A scheduler stepped once per iteration over ``total_steps`` iterations."""
    base_lr = optimizer.param_groups[0]["lr"]
    if cfg.name == "onecycle":
        return OneCycleLR(optimizer, max_lr=base_lr, total_steps=max(2, total_steps), pct_start=cfg.pct_start)
    return LambdaLR(optimizer, _Multiplier(cfg, steps_per_epoch, total_steps, base_lr))
