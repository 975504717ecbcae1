"""Dynamic sparse training: RigL (Evci et al. 2020) and SET (Mocanu et al. 2018) as callbacks.

The network is sparse from the start (ERK or uniform layer densities, random masks) and keeps
its sparsity exactly: every ``delta_t`` steps until ``T_end``, each layer drops the ``k``
active weights of smallest magnitude and grows ``k`` inactive ones, with
``k = α/2 · (1 + cos(π t / T_end)) · (number of active weights)``. RigL grows where the dense
gradient (w.r.t. the effective, masked weight — also at pruned positions) is largest; SET grows
at random. Grown weights start at 0 and their optimizer state (momentum, Adam moments) is reset.
A weight dropped and grown back in the same update keeps its value.

The update runs after the optimizer step of iteration ``t`` (as in the RigL code) and uses that
iteration's gradient. The dense gradient is read from the masked weight through a hook on the
mask parametrization, installed only for iterations that end with an update.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from prunekit._settings import MAX_COUNT, Seed, Settings
from prunekit import _parametrize
from prunekit.errors import ConfigError
from prunekit.masks import MaskSet, WeightMask, prunable_parameters, raw_parameter
from prunekit.masks.targets import owner
from prunekit.pruners.allocation import DENSITY_DISTRIBUTIONS, kept_counts, prune_count
from prunekit.training import distributed, rank_sync
from prunekit.training.callbacks import Callback
from prunekit.training.pruning_callbacks import require_masks
from prunekit.training.trainer import Trainer

log = logging.getLogger(__name__)


class DSTConfig(Settings):
    """Settings shared by RigL and SET.

    ``end_step`` (T_end) defaults to ``end_fraction`` of the training steps (RigL: 75%).
    ``distribution`` names an entry of ``DENSITY_DISTRIBUTIONS`` (``erk`` or ``uniform``).
    """


    sparsity: float = Field(ge=0.0, lt=1.0)
    distribution: str = "erk"
    alpha: float = Field(0.3, gt=0.0, le=1.0, description="initial fraction of active weights updated")
    delta_t: int = Field(100, ge=1, le=MAX_COUNT, description="steps between mask updates")
    end_step: int | None = Field(None, ge=1)
    end_fraction: float = Field(0.75, gt=0.0, le=1.0)
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    seed: Seed = 0

    @field_validator("distribution")
    @classmethod
    def _known_distribution(cls, value: str) -> str:
        return DENSITY_DISTRIBUTIONS.check(value)


def initial_masks(model: nn.Module, config: DSTConfig) -> MaskSet:
    """Random masks with the configured layer densities; the total kept count is exactly ``round((1 − s)·N)``."""
    names = prunable_parameters(model, config.include, config.exclude)
    shapes = {n: tuple(raw_parameter(model, n).shape) for n in names}
    numels = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(numels.values())
    densities = DENSITY_DISTRIBUTIONS.get(config.distribution)(shapes, 1.0 - config.sparsity)
    counts = kept_counts(numels, densities, total - prune_count(total, config.sparsity))
    generator = torch.Generator().manual_seed(config.seed)
    masks = {}
    for name in names:
        flat = torch.zeros(numels[name], dtype=torch.bool)
        flat[torch.randperm(numels[name], generator=generator)[: counts[name]]] = True
        masks[name] = flat.view(shapes[name])
    return MaskSet(masks)


def update_fraction(alpha: float, step: int, end_step: int) -> float:
    """RigL's cosine decay ``α/2 · (1 + cos(π t / T_end))`` (0 from ``T_end`` on)."""
    return alpha / 2 * (1 + math.cos(math.pi * step / end_step)) if step < end_step else 0.0


class DynamicSparseTraining(Callback):
    """Drop-and-grow mask updates; subclasses choose where to grow (:meth:`grow_scores`).

    Call :meth:`prepare` on the model before ``fit`` (it attaches the initial sparse masks), then
    pass the callback to ``fit``.
    """

    needs_dense_grad = False

    def __init__(self, config: DSTConfig) -> None:
        self.config = config
        self.names: list[str] = []
        self.end_step = 0
        self.updates = 0
        self._grads: dict[str, Tensor] = {}
        self._hooks: list[RemovableHandle] = []

    def prepare(self, model: nn.Module) -> nn.Module:
        """Attach the initial sparse masks unless every target has one; call it before ``fit``."""
        self.names = prunable_parameters(model, self.config.include, self.config.exclude)
        attached = MaskSet.from_model(model)
        if not all(n in attached for n in self.names):
            initial_masks(model, self.config).attach(model)
        return model

    def grow_scores(self, name: str, weight: Tensor, step: int) -> Tensor:
        """Scores of the candidate positions to grow (higher = grow first)."""
        raise NotImplementedError

    # -- Callback hooks --------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        self.names = prunable_parameters(trainer.model, self.config.include, self.config.exclude)
        require_masks(trainer.model, self.names, f"{type(self).__name__}.prepare(model)")
        self.end_step = self.config.end_step or max(1, math.floor(self.config.end_fraction * trainer.total_steps))
        self._arm(trainer.model, trainer.state.step + 1)

    def after_backward(self, trainer: Trainer) -> None:
        if trainer.scaler is not None and self._grads:  # fp16: the captured gradients carry the loss scale
            inverse = 1.0 / trainer.scaler.get_scale()
            self._grads = {name: grad * inverse for name, grad in self._grads.items()}

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        if self._is_update(step):
            self.update(trainer.model, trainer.optimizer, step)
        self._arm(trainer.model, step + 1)

    def on_train_end(self, trainer: Trainer) -> None:
        self._disarm()

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]

    # -- the update ------------------------------------------------------------------------------
    def update(self, model: nn.Module, optimizer: Optimizer | None, step: int) -> MaskSet:
        """Drop and grow in every layer at ``step``; return the new masks (already attached)."""
        fraction = update_fraction(self.config.alpha, step, self.end_step)
        distributed.all_reduce_mean(self._grads[name] for name in sorted(self._grads))  # the dense gradient of all ranks' batches
        current = MaskSet.from_model(model)
        new_masks = {}
        for name in self.names:
            weight = raw_parameter(model, name)
            mask = current[name].to(weight.device)
            new_masks[name] = self._drop_and_grow(name, weight, mask, fraction, step, optimizer)
        self.updates += 1
        masks = MaskSet(new_masks)
        masks.attach(model)
        rank_sync.sync_masks(model)  # identical already (same weights and gradients); rank 0's make it certain
        log.debug("step %d: drop/grow fraction %.4f, sparsity %.4f", step, fraction, masks.sparsity())
        return masks

    def _drop_and_grow(self, name: str, weight: nn.Parameter, mask: Tensor, fraction: float, step: int, optimizer: Optimizer | None) -> Tensor:
        active = int(mask.sum())
        k = min(round(fraction * active), mask.numel() - active)
        if k == 0:
            return mask
        flat_mask = mask.flatten()
        magnitude = torch.where(flat_mask, weight.detach().abs().flatten(), torch.tensor(float("inf"), device=mask.device))
        kept = flat_mask.clone()
        kept[torch.argsort(magnitude, stable=True)[:k]] = False
        grow = torch.where(kept, torch.tensor(float("-inf"), device=mask.device), self.grow_scores(name, weight, step).flatten().float())
        new = kept.clone()
        new[torch.argsort(grow, descending=True, stable=True)[:k]] = True
        born = (new & ~flat_mask).view_as(mask)
        with torch.no_grad():
            weight.masked_fill_(born, 0.0)
        if optimizer is not None:
            _reset_optimizer_state(optimizer, weight, born)
        return new.view_as(mask)

    def _is_update(self, step: int) -> bool:
        return step % self.config.delta_t == 0 and step < self.end_step

    def _arm(self, model: nn.Module, next_step: int) -> None:
        """Capture dense gradients during iteration ``next_step`` if it ends with an update."""
        self._disarm()
        if not (self.needs_dense_grad and self._is_update(next_step)):
            return
        for name in self.names:
            self._hooks.append(_mask_module(model, name).register_forward_hook(self._capture(name)))

    def _disarm(self) -> None:
        self._grads = {}
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def _capture(self, name: str) -> Callable[[nn.Module, Any, Tensor], None]:
        """Forward hook on a mask parametrization: adds the gradient of its output (the masked weight) to ``_grads``."""

        def store(grad: Tensor) -> None:
            self._grads[name] = self._grads[name] + grad.detach() if name in self._grads else grad.detach()

        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if output.requires_grad:
                output.register_hook(store)

        return hook


class RigL(DynamicSparseTraining):
    """RigL: grow where ``|∂L/∂(masked weight)|`` is largest."""

    needs_dense_grad = True

    def grow_scores(self, name: str, weight: Tensor, step: int) -> Tensor:
        if name not in self._grads:
            raise ConfigError(f"RigL found no dense gradient for {name!r} at step {step}; is the parameter used in forward?")
        return self._grads[name].abs()


class SET(DynamicSparseTraining):
    """SET: grow at random positions (seeded by ``config.seed``, the step and the layer, so resumes repeat it)."""

    def grow_scores(self, name: str, weight: Tensor, step: int) -> Tensor:
        generator = torch.Generator().manual_seed((self.config.seed * 1_000_003 + step) * 1_009 + self.names.index(name))
        return torch.rand(weight.shape, generator=generator).to(weight.device)


def _mask_module(model: nn.Module, name: str) -> WeightMask:
    mask = _parametrize.find(*owner(model, name), WeightMask)
    if mask is None:
        raise ConfigError(f"parameter {name!r} has no mask attached")
    return mask


def _reset_optimizer_state(optimizer: Optimizer, param: Tensor, positions: Tensor) -> None:
    """Zero per-entry optimizer state (momentum, Adam moments) of ``param`` at ``positions``."""
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, Tensor) and value.shape == param.shape:
            value.masked_fill_(positions, 0)
