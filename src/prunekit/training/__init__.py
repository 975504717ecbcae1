"""Training: the train/eval loop, callbacks, optimizers, LR schedules and checkpoints."""

from prunekit.training.callbacks import Callback, JsonlLogger
from prunekit.training.checkpoint import TrainState, load_checkpoint, read_train_state, save_checkpoint
from prunekit.training.config import LRScheduleConfig, OptimizerConfig, TrainConfig
from prunekit.training.loop import Trainer, TrainResult, epoch_seed, fit
from prunekit.training.optim import make_lr_scheduler, make_optimizer

__all__ = [
    "Callback", "JsonlLogger", "LRScheduleConfig", "OptimizerConfig", "TrainConfig", "TrainResult", "TrainState",
    "Trainer", "epoch_seed", "fit", "load_checkpoint", "make_lr_scheduler", "make_optimizer", "read_train_state",
    "save_checkpoint",
]
