"""Gate rates and exact effective MACs per input of a gated model.

The dense count is :func:`prunekit.metrics.count_macs` of the gated model (gate predictors
included). A gated conv computes ``dense · a_in/C_in · a_out/C_out`` MACs for an input keeping
``a_in`` of its input group's and ``a_out`` of its output group's channels (depthwise convs and
norms scale with their group's ``a/C``); everything else counts dense. A group keeping no channel
counts one, as the skip path carries one channel (scaled by 0) to keep shapes valid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunekit.dynamic.gates import GatedModel
from prunekit.metrics import count_macs


@dataclass
class GateRate:
    """How often one gated group's channels are computed: mean fraction, and min/max over inputs."""

    name: str
    channels: int
    mean: float
    min: float
    max: float


@dataclass
class DynamicStats:
    """Per-group gate rates and effective MACs per input (``macs`` holds one count per input seen)."""

    dense_macs: int
    macs: np.ndarray
    rates: list[GateRate] = field(default_factory=list)

    @property
    def mean_macs(self) -> float:
        return float(self.macs.mean())

    @property
    def reduction(self) -> float:
        """Dense MACs over the mean effective MACs per input."""
        return self.dense_macs / self.mean_macs

    def histogram(self, bins: int = 20) -> tuple[list[int], list[float]]:
        """Counts and bin edges of the MACs per input."""
        counts, edges = np.histogram(self.macs, bins=bins)
        return counts.tolist(), edges.tolist()

    def to_dict(self, bins: int = 20) -> dict[str, Any]:
        counts, edges = self.histogram(bins)
        return {"dense_macs": self.dense_macs, "mean_macs": self.mean_macs, "min_macs": int(self.macs.min()), "max_macs": int(self.macs.max()),
                "macs_reduction": self.reduction, "inputs": int(self.macs.size), "histogram": {"counts": counts, "edges": edges},
                "rates": [asdict(r) for r in self.rates]}


def _layer_macs(gated: GatedModel, example: Tensor) -> tuple[int, dict[str, int]]:
    report = count_macs(gated, example[:1])
    return report.dense, {layer.name.removeprefix("model."): layer.dense for layer in report.layers}


def effective_macs(gated: GatedModel, active: dict[str, Tensor], dense: int, per_layer: dict[str, int]) -> np.ndarray:
    """Exact MACs per input for ``active`` channel counts (``{site: (batch,) ints}``)."""
    counts = {name: a.clamp(min=1).to(torch.float64) for name, a in active.items()}
    batch = next(iter(counts.values())).shape[0]
    total = torch.full((batch,), float(dense), dtype=torch.float64)
    for site in gated.sites:
        frac = counts[site.name] / site.channels
        for layer in site.depthwise:
            total -= per_layer[layer] * (1 - frac)
    factor: dict[str, Tensor] = {}
    for site in gated.sites:
        frac = counts[site.name] / site.channels
        for layer in (site.producer, *site.consumers):
            factor[layer] = factor.get(layer, torch.ones(batch, dtype=torch.float64)) * frac
    for layer, f in factor.items():
        total -= per_layer[layer] * (1 - f)
    return total.round().to(torch.int64).numpy()


@torch.no_grad()
def gate_stats(gated: GatedModel, inputs: Iterable[Any], device: str | torch.device = "cpu") -> DynamicStats:
    """Run ``gated`` (eval mode) on ``inputs`` (tensors or ``(x, y)`` batches); gate rates and MACs per input."""
    was_training = gated.training
    gated.eval().to(device)
    per_input: list[np.ndarray] = []
    fractions: dict[str, list[Tensor]] = {s.name: [] for s in gated.sites}
    dense, per_layer = None, {}
    try:
        for batch in inputs:
            x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device)
            if dense is None:
                dense, per_layer = _layer_macs(gated, x)
            gated(x)
            active = {name: m.sum(1) for name, m in gated.active().items()}
            per_input.append(effective_macs(gated, active, dense, per_layer))
            for site in gated.sites:
                fractions[site.name].append(active[site.name].to(torch.float64) / site.channels)
    finally:
        gated.train(was_training)
    if dense is None:
        raise ValueError("gate_stats needs at least one batch of inputs")
    rates = []
    for site in gated.sites:
        f = torch.cat(fractions[site.name])
        rates.append(GateRate(site.name, site.channels, float(f.mean()), float(f.min()), float(f.max())))
    return DynamicStats(int(dense), np.concatenate(per_input), rates)
