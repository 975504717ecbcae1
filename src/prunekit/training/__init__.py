"""Training: the train/eval loop, callbacks, optimizers, LR schedules, checkpoints, structured prune → fine-tune
and the stop conditions of iterative pruning."""

from prunekit.training.augment import AugmentConfig, CorruptedBatches, augment_batches
from prunekit.training.callbacks import Callback, JsonlLogger
from prunekit.training.checkpoint import TrainState, load_checkpoint, read_train_state, save_checkpoint
from prunekit.training.config import LRScheduleConfig, OptimizerConfig, TrainConfig
from prunekit.training.loop import Trainer, TrainResult, epoch_seed, fit
from prunekit.training.optim import make_lr_scheduler, make_optimizer
from prunekit.training.sparsity import SparsityLearningConfig, SparsityPenalty, learn_sparsity
from prunekit.training.stopping import StopCheck, StopCondition, StopMeasures
from prunekit.training.structured_finetune import (
    StructuredFinetuneResult, StructuredStepResult, calibration_data, prune_finetune_structured,
)

__all__ = [
    "AugmentConfig", "Callback", "CorruptedBatches", "JsonlLogger", "LRScheduleConfig", "OptimizerConfig", "SparsityLearningConfig", "SparsityPenalty",
    "StopCheck", "StopCondition", "StopMeasures",
    "StructuredFinetuneResult", "StructuredStepResult", "TrainConfig", "TrainResult", "TrainState", "Trainer",
    "augment_batches", "calibration_data", "epoch_seed", "fit", "learn_sparsity", "load_checkpoint", "make_lr_scheduler", "make_optimizer",
    "prune_finetune_structured", "read_train_state", "save_checkpoint",
]
