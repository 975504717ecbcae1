"""A Lightning callback running a recipe's ``prune:`` section (needs the ``lightning`` extra)::

    trainer = lightning.Trainer(max_epochs=10, callbacks=[PrunekitCallback("recipe.yaml", module="net")])
    trainer.fit(lit_module)                          # resumes with identical masks: trainer.fit(lit_module, ckpt_path=...)

It is a :class:`~prunekit.integrations.manager.RecipeManager` built in ``setup`` (before
``configure_optimizers``, so masks exist before the optimizer and in every checkpoint), stepped
after each optimizer step (``trainer.global_step``) and finished when training ends. Its state rides
in Lightning checkpoints (``state_dict``/``load_state_dict``); the masks are in the module's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from prunekit.integrations.manager import Batches, RecipeManager
from prunekit.integrations.sections import RecipeSource, prune_section

try:
    import lightning.pytorch as pl
except Exception as exc:  # ImportError, or one of its dependencies failing at import time
    raise ImportError(f"prunekit.integrations.lightning needs the optional 'lightning' package (pip install 'prunekit[lightning]'); "
                      f"importing it failed: {exc}") from exc


class PrunekitCallback(pl.Callback):
    """Prune the LightningModule (or its submodule ``module``, e.g. ``"net"``) as the recipe's ``prune:`` section says.

    ``recipe`` is anything :meth:`RecipeManager.from_recipe` takes. ``example_inputs`` defaults to the
    module's ``example_input_array``; ``calibration`` feeds criteria that need data (pass a few
    batches or your train DataLoader). The length of training is ``trainer.estimated_stepping_batches``.
    With ``finish=True`` the pruning is made permanent when training ends (structured: channels are
    removed from the module, in place). Only the first optimizer's state is reset for grown weights (``dst``).
    """

    def __init__(self, recipe: RecipeSource, *, module: str | None = None, example_inputs: Any = None,
                 calibration: Batches | Callable[[], Batches] | None = None, finish: bool = True) -> None:
        self.section = prune_section(recipe)
        self.module = module
        self.example_inputs = example_inputs
        self.calibration = calibration
        self.finish = finish
        self.manager: RecipeManager | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.manager is not None:
            return
        model: nn.Module = pl_module.get_submodule(self.module) if self.module else pl_module
        inputs = self.example_inputs if self.example_inputs is not None else pl_module.example_input_array
        steps = trainer.estimated_stepping_batches
        self.manager = RecipeManager(self.section, model, total_steps=int(steps) if math.isfinite(steps) else None,
                                     example_inputs=inputs, calibration=self.calibration)
        if self._pending is not None:
            self.manager.load_state_dict(self._pending)
            self._pending = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        manager = self._manager()
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        while manager.steps < trainer.global_step:
            manager.step(optimizer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finish:
            self._manager().finish()

    def state_dict(self) -> dict[str, Any]:
        return self.manager.state_dict() if self.manager is not None else dict(self._pending or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.manager is not None:
            self.manager.load_state_dict(state_dict)
        else:
            self._pending = dict(state_dict)

    def _manager(self) -> RecipeManager:
        if self.manager is None:
            raise RuntimeError("PrunekitCallback was not set up: Lightning calls setup(stage='fit') before training")
        return self.manager
