"""Per-layer sensitivity: prune one layer at a time to several sparsities and measure the accuracy.

Layers whose accuracy holds up can be pruned harder; :func:`allocate_by_sensitivity` turns the
measurements into per-layer sparsities (``UnstructuredConfig.overrides``) under an accuracy budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from torch import Tensor, nn

from prunekit.masks import detach_masks, prunable_parameters
from prunekit.metrics.accuracy import evaluate
from prunekit.progress import track
from prunekit.pruners.allocation import sensitivity_sparsities
from prunekit.pruners.unstructured import UnstructuredConfig, prune_unstructured


@dataclass
class SensitivityResult:
    """Accuracy of the model with only one layer pruned, per layer and sparsity."""

    baseline: float
    sparsities: list[float]
    accuracy: dict[str, list[float]]

    def to_dict(self) -> dict:
        return asdict(self)

    def drop(self, layer: str) -> list[float]:
        """Accuracy lost (baseline − accuracy) at each sparsity."""
        return [self.baseline - a for a in self.accuracy[layer]]


def layer_sensitivity(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    sparsities: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    criterion: str = "magnitude",
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> SensitivityResult:
    """Prune each layer alone (``criterion``, layer scope) at each sparsity and evaluate on ``batches``.

    ``model`` must carry no masks; it is restored after every measurement.
    """
    batches = list(batches)
    names = list(names) if names is not None else prunable_parameters(model)
    baseline = evaluate(model, batches).accuracy
    accuracy: dict[str, list[float]] = {}
    for name in track(names, "sensitivity", enabled=progress):
        accuracy[name] = []
        for sparsity in sparsities:
            prune_unstructured(model, UnstructuredConfig(criterion=criterion, sparsity=sparsity, include=(name,)))
            accuracy[name].append(evaluate(model, batches).accuracy)
            detach_masks(model)
    return SensitivityResult(baseline, list(sparsities), accuracy)


def allocate_by_sensitivity(result: SensitivityResult, max_drop: float = 0.01) -> dict[str, float]:
    """Per layer, the highest measured sparsity whose accuracy drop stays within ``max_drop`` (0 if none)."""
    return sensitivity_sparsities(result.sparsities, {layer: result.drop(layer) for layer in result.accuracy}, max_drop)
