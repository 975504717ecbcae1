"""Iterative structured pruning inside a training run that keeps its optimizer: channels are masked, then removed.

Removing channels mid-training would replace parameters the user's optimizer holds, so each step
of a :class:`~prunekit.pruners.structured.StructuredPruner` schedule here only *zeroes* the units
its plan removes (:meth:`~prunekit.pruners.plan.Plan.masks`, attached as parametrizations);
:meth:`StructuredMasking.finish` folds the masks and removes the units for real. Units masked once
stay masked (they rank below every other unit in later plans).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn

from prunekit._parametrize import plain_copy
from prunekit.errors import StructureError
from prunekit.importance.calibration import collect_calibration
from prunekit.masks import strip
from prunekit.pruners.plan import Plan
from prunekit.pruners.structured import StructuredPruner
from prunekit.training.callbacks import Callback
from prunekit.training.pruning_callbacks import attach_missing_masks
from prunekit.training.trainer import Trainer

log = logging.getLogger(__name__)

#: Largest relative difference allowed between the masked model's outputs and the pruned model's at finish.
FINISH_TOLERANCE = 1e-4

Batches = Iterable[tuple[Tensor, Tensor]]


class StructuredMasking(Callback):
    """Run ``pruner``'s schedule as channel masks at ``at_steps`` (completed iterations); remove the channels in :meth:`finish`.

    ``calibration`` (``(inputs, labels)`` batches, or a function returning them) feeds criteria that
    need statistics (taylor, hessian): the first ``calibration_batches`` of it at every step.
    """

    def __init__(self, pruner: StructuredPruner, example_inputs: Any, at_steps: Sequence[int], *,
                 calibration: Batches | Callable[[], Batches] | None = None, calibration_batches: int = 8) -> None:
        if len(at_steps) != len(pruner.schedule()):
            raise ValueError(f"{len(pruner.schedule())} pruning steps need as many training steps, got {list(at_steps)}")
        self.pruner = pruner
        self.inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        self.at_steps = list(at_steps)
        self.calibration = calibration
        self.calibration_batches = calibration_batches
        self.model: nn.Module | None = None
        self.done = 0
        self.removed: dict[int, tuple[int, ...]] = {}

    def prepare(self, model: nn.Module) -> nn.Module:
        """Measure targets against ``model`` and attach all-keep masks to every parameter of its prunable groups
        (before the optimizer is built, so checkpoints resume into the same parameters)."""
        plain = plain_copy(model)
        inputs = self._inputs(model)
        self.pruner.prepare(plain, inputs)
        graph = self.pruner.graph(plain, inputs)
        names = [m.fqn for g in graph.prunable_groups() for m in g.members if isinstance(m.tensor(plain), nn.Parameter)]
        attach_missing_masks(model, list(dict.fromkeys(names)))
        self.model = model
        return model

    # -- Callback hooks --------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        self.model = trainer.model
        self._run_due(trainer.state.step)

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self._run_due(step)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "removed": {str(g): list(u) for g, u in self.removed.items()}, "pruner": self.pruner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = int(state["done"])
        self.removed = {int(g): tuple(u) for g, u in state["removed"].items()}
        self.pruner.load_state_dict(state["pruner"])

    # -- the steps -------------------------------------------------------------------------------
    def _run_due(self, step: int) -> None:
        schedule = self.pruner.schedule()
        while self.done < len(schedule) and self.at_steps[self.done] <= step:
            self._mask(schedule[self.done])
            self.done += 1

    def _mask(self, fraction: float) -> None:
        assert self.model is not None
        plain = plain_copy(self.model)
        needs = self.pruner.criterion.needs
        calibration = collect_calibration(plain, self._batches(), needs) if needs else None
        graph, plan = self.pruner.plan(plain, self._inputs(plain), fraction, calibration, removed=self.removed)
        cumulative = Plan({g: tuple(set(plan.removals.get(g, ())) | set(self.removed.get(g, ()))) for g in {*plan.removals, *self.removed}})
        masks = cumulative.masks(graph)
        masks.attach(self.model)
        self.removed = dict(cumulative.removals)
        log.info("structured step at fraction %.3f: %d units of %d groups masked", fraction, cumulative.units_removed, cumulative.groups_pruned)

    def _inputs(self, model: nn.Module) -> tuple[Any, ...]:
        """The example inputs on ``model``'s device (Lightning moves the model after ``setup``)."""
        device = next((p.device for p in model.parameters()), None)
        return tuple(x.to(device) if isinstance(x, Tensor) and device is not None else x for x in self.inputs)

    def _batches(self) -> list[tuple[Tensor, Tensor]]:
        source = self.calibration() if callable(self.calibration) else self.calibration
        if source is None:
            raise StructureError(f"criterion {type(self.pruner.criterion).__name__} needs calibration batches: pass calibration= "
                                 "(a few (inputs, labels) batches, e.g. your training DataLoader)")
        return list(islice(iter(source), self.calibration_batches))

    def finish(self, model: nn.Module) -> nn.Module:
        """Fold the masks into the weights and remove the masked units for real (in place); return ``model``.

        Warns if the pruned model's outputs on the example inputs differ from the masked model's.
        """
        inputs = self._inputs(model)
        was = model.training
        model.eval()
        with torch.no_grad():
            masked = model(*inputs)
        strip(model)
        if self.removed:
            graph = self.pruner.graph(model, inputs)
            stale = [g for g in self.removed if g >= len(graph.groups) or max(self.removed[g]) >= graph.groups[g].size]
            if stale:
                raise StructureError(f"the model's channel groups changed since pruning began (groups {stale[:3]}); "
                                     "finish() needs the model the masks were planned on")
            Plan(self.removed).apply(graph)
        with torch.no_grad():
            pruned = model(*inputs)
        model.train(was)
        if isinstance(masked, Tensor) and isinstance(pruned, Tensor):
            error = float((masked - pruned).abs().max() / masked.abs().max().clamp_min(1e-12))
            if error > FINISH_TOLERANCE:
                log.warning("the pruned model's outputs differ from the masked model's by %.3g (relative); a LayerNorm over "
                            "pruned channels normalises over the zeroed ones too while masked", error)
        return model
