"""What a pipeline step sees: the recipe, the run directory, the data, and model factories."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit._io import append_jsonl
from prunekit.experiment.artifacts import load_model, model_description
from prunekit.experiment.recipe import Recipe
from prunekit.experiment.rundir import RunDir
from prunekit.metrics import Evaluation, FirstExamples, evaluate
from prunekit.training import JsonlLogger
from prunekit.training.distributed import is_main_process
from prunekit.zoo import DataBundle, create_model


@dataclass
class MethodResult:
    """A pruning method's outcome: the final model and what the report shows about it."""

    model: nn.Module
    curve: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] | None = None


@dataclass
class RunContext:
    """Shared state of one run's steps."""

    recipe: Recipe
    run: RunDir
    data: DataBundle
    progress: bool = True
    #: Fingerprints of the files and code the recipe reads (:func:`~prunekit.experiment.inputs.input_fingerprints`), once computed.
    inputs: dict[str, str] | None = None

    @property
    def device(self) -> torch.device:
        return torch.device(self.recipe.device)

    @property
    def description(self) -> dict[str, Any]:
        spec = self.recipe.model
        return model_description(spec.name, self.data.num_classes, self.data.input_shape, spec.kwargs)

    def new_model(self, seed: int | None = None) -> nn.Module:
        """A freshly initialised model (seeded by the recipe unless ``seed`` is given)."""
        torch.manual_seed(self.recipe.seed if seed is None else seed)
        spec = self.recipe.model
        return create_model(spec.name, self.data.num_classes, self.data.input_shape, **spec.kwargs).to(self.device)

    def dense_model(self) -> nn.Module:
        """A fresh copy of the trained dense model (the dense step must be done)."""
        model, _ = load_model(self.run.path / "checkpoints" / "dense")
        return model.to(self.device)

    def example_input(self) -> torch.Tensor:
        x, _ = next(iter(self.data.test))
        return x[:8].to(self.device)

    def test_batches(self) -> FirstExamples:
        """The test batches every accuracy check of the run uses: ``evaluate.subset`` / ``evaluate.max_batches``
        limit them (the first examples, in the test set's fixed order)."""
        ev = self.recipe.evaluate
        return FirstExamples(self.data.test, examples=ev.subset, max_batches=ev.max_batches)

    def test(self, model: nn.Module, description: str | None = None) -> Evaluation:
        """``model``'s accuracy on :meth:`test_batches`, on the run's device; with a ``description``, a
        progress bar when the run shows progress."""
        return evaluate(model, self.test_batches(), self.data.num_classes, device=self.device,
                        progress=self.progress and description is not None, description=description or "")

    def logger(self, phase: str, **tags: Any) -> JsonlLogger:
        """A callback writing each epoch's record to ``metrics.jsonl``."""
        return JsonlLogger(self.run.metrics, {"kind": "epoch", "phase": phase, **tags})

    def log(self, **record: Any) -> None:
        if is_main_process():
            append_jsonl(self.run.metrics, record)
