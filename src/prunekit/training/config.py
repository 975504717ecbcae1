"""Typed training settings (shared by the Python API and recipes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prunekit._settings import MAX_COUNT, MAX_EPOCHS, Seed, Settings
from prunekit.training.augment import AugmentConfig


class OptimizerConfig(Settings):
    """Optimizer: SGD (with momentum/Nesterov), Adam or AdamW."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class LRScheduleConfig(Settings):
    """Learning-rate schedule, stepped every iteration.

    ``step``: multiply by ``gamma`` at each epoch in ``milestones``; ``cosine``: cosine annealing
    to ``min_lr``; ``onecycle``: one-cycle with ``pct_start`` warm-up; ``constant``: fixed.
    ``warmup_epochs`` adds a linear warm-up before ``step``/``cosine``.
    """

    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    milestones: tuple[float, ...] = ()
    gamma: float = Field(0.1, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0)
    pct_start: float = Field(0.3, gt=0, lt=1)
    warmup_epochs: float = Field(0.0, ge=0, le=MAX_EPOCHS)


class TrainConfig(Settings):
    """One training (or fine-tuning) run."""

    epochs: float = Field(10, gt=0, le=MAX_EPOCHS, description="may be fractional: training stops after that many epochs' steps")
    max_steps: int | None = Field(None, gt=0, le=10**12, description="stop after this many iterations (overrides epochs when smaller)")
    optimizer: OptimizerConfig = OptimizerConfig()
    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    seed: Seed = 0
    eval_every_epochs: int = Field(1, ge=0, le=MAX_COUNT, description="0 = only at the end")
    checkpoint_every_epochs: int = Field(1, ge=1, le=MAX_COUNT)
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the training step: bf16 on CPU/CUDA, fp16 (with a GradScaler) on CUDA only")
    channels_last: bool = Field(False, description="train in channels-last memory format (model and 4-D inputs)")
    compile: bool = Field(False, description="torch.compile the model's training forward (falls back to eager with a warning if it fails)")
    grad_accumulation: int = Field(
        1, ge=1, le=MAX_COUNT,
        description="optimizer step every k micro-batches (loss scaled by 1/k); steps, epochs' step counts and schedules count optimizer steps")
    augment: AugmentConfig | None = Field(
        None, description="augment the training batches (crops, corruptions as training-time shift); never validation or calibration batches")

    @model_validator(mode="after")
    def _milestones_in_range(self) -> TrainConfig:
        bad = [m for m in self.lr_schedule.milestones if not 0 < m < self.epochs]
        if bad:
            raise ValueError(f"lr_schedule.milestones {bad} must lie strictly between 0 and epochs={self.epochs}")
        return self
