"""Statistics some group criteria need: squared gradients and activation statistics.

Both attach hooks only for as long as they collect; the model is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.structured.graph import DependencyGraph


@dataclass(frozen=True)
class Calibration:
    """Statistics a criterion may need, collected once before a pruning step.

    ``grads``: mean gradient per parameter name (taylor); ``squared_grads``: mean squared gradient
    (hessian); ``inputs``: calibration input batches (activation criteria).
    """

    grads: Mapping[str, torch.Tensor] | None = None
    squared_grads: Mapping[str, torch.Tensor] | None = None
    inputs: Sequence[Any] | None = None


class SquaredGradients:
    """Accumulate ``grad²`` of every parameter over backward passes (the empirical Fisher diagonal).

    >>> with SquaredGradients(model) as sq:
    ...     for x, y in batches:
    ...         loss_fn(model(x), y).backward()
    >>> sq.mean()["conv1.weight"]
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.total: dict[str, torch.Tensor] = {}
        self.count = 0
        self._handles: list[Any] = []

    def __enter__(self) -> SquaredGradients:
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                self._handles.append(p.register_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Any:
        def record(grad: torch.Tensor) -> None:
            sq = grad.detach() ** 2
            if name in self.total:
                self.total[name] += sq
            else:
                self.total[name] = sq.clone()
            if name == self._first:
                self.count += 1

        return record

    @property
    def _first(self) -> str:
        return next(iter(self.total)) if self.total else ""

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def mean(self) -> dict[str, torch.Tensor]:
        """Mean squared gradient per parameter (over the backward passes seen)."""
        n = max(1, self.count)
        return {k: v / n for k, v in self.total.items()}


@dataclass
class ActivationStats:
    """Per-channel statistics of module outputs: mean ``|a|`` and fraction of zeros (APoZ)."""

    abs_sum: dict[tuple[str, int, int], torch.Tensor] = field(default_factory=dict)
    zero_sum: dict[tuple[str, int, int], torch.Tensor] = field(default_factory=dict)
    count: dict[tuple[str, int, int], int] = field(default_factory=dict)

    def mean_abs(self, key: tuple[str, int, int]) -> torch.Tensor:
        return self.abs_sum[key] / max(1, self.count[key])

    def apoz(self, key: tuple[str, int, int]) -> torch.Tensor:
        return self.zero_sum[key] / max(1, self.count[key])


def collect_activation_stats(model: nn.Module, graph: DependencyGraph, batches: Iterable[Any], max_batches: int | None = None) -> ActivationStats:
    """Run calibration ``batches`` (inputs, or ``(inputs, target)`` pairs) and record per-channel statistics."""
    wanted: dict[str, set[tuple[int, int]]] = {}
    for group in graph.prunable_groups():
        for site in graph.activation_sites(group):
            wanted.setdefault(site.module, set()).add((site.index, site.axis))
    stats = ActivationStats()

    def hook(path: str):
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            outs = output if isinstance(output, (tuple, list)) else (output,)
            for index, axis in wanted[path]:
                if index >= len(outs) or not isinstance(outs[index], torch.Tensor):
                    continue
                a = outs[index].detach().movedim(axis, 0)
                a = a.reshape(a.shape[0], -1)
                key = (path, index, axis)
                abs_sum, zeros = a.abs().sum(1), (a == 0).float().sum(1)
                if key in stats.abs_sum:
                    stats.abs_sum[key] += abs_sum
                    stats.zero_sum[key] += zeros
                    stats.count[key] += a.shape[1]
                else:
                    stats.abs_sum[key], stats.zero_sum[key], stats.count[key] = abs_sum, zeros, a.shape[1]

        return record

    modules = dict(model.named_modules())
    handles = [modules[path].register_forward_hook(hook(path)) for path in wanted if path in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return stats
