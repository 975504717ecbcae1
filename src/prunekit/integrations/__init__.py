"""Pruning in training loops prunekit does not run: thin adapters over the pruner lifecycle and prunekit's training callbacks.

- :class:`RecipeManager` (:mod:`~prunekit.integrations.manager`): a recipe's ``prune:`` section in your own loop;
- :class:`PrunekitCallback` (:mod:`~prunekit.integrations.lightning`): the same as a Lightning callback (needs the
  ``lightning`` extra; imported on first use);
- :mod:`~prunekit.integrations.keras_style`: TF-MOT's ``prune_low_magnitude`` / ``UpdatePruningStep`` / ``strip_pruning``.
"""

from __future__ import annotations

from prunekit.integrations.manager import LoopState, RecipeManager
from prunekit.integrations.sections import SUPPORTED, prune_section

__all__ = ["SUPPORTED", "LoopState", "PrunekitCallback", "RecipeManager", "prune_section"]


def __getattr__(name: str) -> object:
    if name == "PrunekitCallback":
        from prunekit.integrations.lightning import PrunekitCallback

        return PrunekitCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
