"""Speed settings of the training step: autocast + gradient scaling, channels-last layout, torch.compile.

The loop calls these helpers so that it reads the same with every setting: :func:`autocast` around
forward and loss, :func:`backward` / :func:`unscale` / :func:`optimizer_step` around the update
(``unscale`` runs before callbacks' ``after_backward`` and gradient clipping, so both see true
gradients), :func:`to_memory_format` on inputs and :func:`training_forward` for the forward pass.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from prunekit.errors import ConfigError

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`ConfigError` for a precision the device cannot train in (fp16 needs CUDA)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"precision 'fp16' needs a CUDA device, but training runs on {device}: fp16 training needs loss scaling "
            f"(a GradScaler), which prunekit uses on CUDA only; set precision: bf16 (or fp32) for {device.type}, or device: cuda"
        )


def autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """The autocast context of the training forward for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (on CUDA); None for fp32/bf16, whose range needs no loss scaling."""
    check_precision(precision, device)
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def backward(loss: Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()``, through the scaler when there is one (gradients accumulate)."""
    (scaler.scale(loss) if scaler is not None else loss).backward()


def unscale(optimizer: Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Divide the accumulated gradients by the loss scale (once per optimizer step)."""
    if scaler is not None:
        scaler.unscale_(optimizer)


def optimizer_step(optimizer: Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Step the optimizer; with a scaler, skip a step with inf/NaN gradients and update the scale."""
    if scaler is None:
        optimizer.step()
        return
    scaler.step(optimizer)
    scaler.update()


def to_memory_format(x: Tensor, channels_last: bool) -> Tensor:
    """``x`` in channels-last layout when asked and 4-D (N, C, H, W); otherwise unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def set_memory_format(model: nn.Module, channels_last: bool) -> None:
    """Convert the model's 4-D parameters and buffers to channels-last (or back to contiguous), in place."""
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class _CompiledForward:
    """``torch.compile(model)``'s forward; if compiling fails on the first batch, warn and run eager."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.compiled: Callable[[Tensor], Tensor] | None = torch.compile(model)
        self.checked = False

    def __call__(self, x: Tensor) -> Tensor:
        if self.compiled is None:
            return self.model(x)
        if self.checked:
            return self.compiled(x)
        try:
            out = self.compiled(x)
        except Exception as exc:  # dynamo/inductor raise many types; any of them means "cannot compile"
            log.warning("torch.compile of %s failed (%s: %s); training continues without compile",
                        type(self.model).__name__, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self.compiled = None
            return self.model(x)
        self.checked = True
        return out


def training_forward(model: nn.Module, compile: bool) -> Callable[[Tensor], Tensor]:
    """The callable the training step runs: ``model`` itself, or its compiled forward.

    The compiled wrapper shares ``model``'s parameters and buffers, so callbacks, masks, evaluation
    and checkpoints keep working on ``model``. Masks (parametrizations) compile; changing them
    (gradual pruning, RigL) makes torch recompile the graph.
    """
    return _CompiledForward(model) if compile else model
