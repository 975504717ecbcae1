"""What callbacks see of a training run: :class:`Trainer` (model, optimizer, scheduler, state, config).

It sits below both the loop and the callbacks, so that each imports it and neither imports the other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from prunekit.training.checkpoint import TrainState
from prunekit.training.config import TrainConfig
from prunekit.training.optim import make_lr_scheduler, make_optimizer
from prunekit.training.precision import make_grad_scaler


class Trainer:
    """Holds what callbacks may need: model, optimizer, scheduler, progress, config.

    ``steps_per_epoch`` and ``state.step`` count optimizer steps (``config.grad_accumulation``
    micro-batches each); ``scaler`` is the fp16 GradScaler (None for fp32/bf16).
    """

    def __init__(self, model: nn.Module, config: TrainConfig, steps_per_epoch: int, device: torch.device) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = math.ceil(config.epochs * steps_per_epoch)
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer = make_optimizer(model.parameters(), config.optimizer)
        self.scheduler = make_lr_scheduler(self.optimizer, config.lr_schedule, steps_per_epoch, self.total_steps)
        self.scaler = make_grad_scaler(config.precision, device)
        self.state = TrainState()
        self.last_batch: tuple[Tensor, Tensor] | None = None

    @property
    def num_epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)
