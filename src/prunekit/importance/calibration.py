"""Statistics some criteria need: gradients, squared gradients, calibration inputs, activations.

:func:`collect_calibration` gathers what a group criterion declares in its ``needs``;
:func:`collect_gradients` gathers the gradients of *effective* (masked) weights that unstructured
gradient criteria score. Like the hook-based collectors below, they leave the model as it was
(``.grad``, train/eval mode; ``collect_gradients`` also buffers and the RNG).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError
from prunekit.masks import effective_weight
from prunekit.structured.graph import DependencyGraph

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: What :func:`collect_calibration` can collect (the values of a criterion's ``needs``).
CALIBRATION_NEEDS = frozenset({"grads", "squared_grads", "inputs"})


@dataclass(frozen=True)
class Calibration:
    """Statistics a criterion may need, collected once before a pruning step.

    ``grads``: mean gradient per parameter name (taylor); ``squared_grads``: mean squared gradient
    (hessian); ``inputs``: calibration input batches (activation criteria).
    """

    grads: Mapping[str, torch.Tensor] | None = None
    squared_grads: Mapping[str, torch.Tensor] | None = None
    inputs: Sequence[Any] | None = None


def collect_calibration(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    needs: Collection[str],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> Calibration:
    """The statistics named in ``needs`` over ``(inputs, labels)`` ``batches``, in eval mode.

    ``grads``: the mean gradient of ``loss_fn``, accumulated as ``Σ ∂(loss_i / n)`` in batch order
    (bitwise what ``(loss_i / n).backward()`` leaves in ``.grad``); ``squared_grads``: the mean
    ``grad²`` (as :class:`SquaredGradients`); ``inputs``: the input batches. Parameters that get
    no gradient are left out. ``.grad`` fields and the train/eval mode are left as they were.
    """
    unknown = sorted(set(needs) - CALIBRATION_NEEDS)
    if unknown:
        raise ConfigError(f"unknown calibration needs {unknown}; allowed: {', '.join(sorted(CALIBRATION_NEEDS))}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    pairs = [(x.to(device), y.to(device)) for x, y in batches]
    if needs and not pairs:
        raise ConfigError("collect_calibration got no batches; pass a few (inputs, labels) batches")
    grads = squared = None
    if "grads" in needs or "squared_grads" in needs:
        grads, squared = _gradients(model, pairs, "grads" in needs, "squared_grads" in needs, loss_fn)
    return Calibration(grads=grads, squared_grads=squared, inputs=[x for x, _ in pairs] if "inputs" in needs else None)


def _gradients(model: nn.Module, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], mean: bool, square: bool,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]:
    """Mean gradients and/or mean squared gradients per parameter name, through ``torch.autograd.grad``."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    names, params = [name for name, _ in named], [p for _, p in named]
    grads: dict[str, torch.Tensor] = {}
    squared: dict[str, torch.Tensor] = {}
    if not params:
        return (grads if mean else None), (squared if square else None)
    was_training = model.training
    model.eval()
    try:
        for x, y in pairs:
            loss = loss_fn(model(x), y)
            if mean:
                _accumulate(grads, names, torch.autograd.grad(loss / len(pairs), params, retain_graph=square, allow_unused=True))
            if square:
                _accumulate(squared, names, [g if g is None else g**2 for g in torch.autograd.grad(loss, params, allow_unused=True)])
    finally:
        model.train(was_training)
    return (grads if mean else None), ({k: v / len(pairs) for k, v in squared.items()} if square else None)


def _accumulate(total: dict[str, torch.Tensor], names: Sequence[str], values: Sequence[torch.Tensor | None]) -> None:
    for name, value in zip(names, values):
        if value is not None:
            total[name] = total[name] + value if name in total else value.detach()


def collect_gradients(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    names: Sequence[str],
    n_batches: int = 1,
    loss_fn: LossFn = F.cross_entropy,
) -> dict[str, torch.Tensor]:
    """Mean gradient of the loss w.r.t. each named *effective* weight over the first ``n_batches``.

    For a masked parameter this is the dense gradient (also at pruned positions). The model's
    ``.grad`` fields, buffers (BatchNorm statistics) and the global RNG are left as they were.
    """
    if n_batches < 1:
        raise ConfigError(f"n_batches must be >= 1, got {n_batches}")
    device = next(model.parameters()).device
    saved_buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    totals: dict[str, torch.Tensor] = {}
    seen = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for x, y in batches:
            if seen == n_batches:
                break
            with parametrize.cached():
                weights = [effective_weight(model, n) for n in names]
                loss = loss_fn(model(x.to(device)), y.to(device))
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
            for name, weight, grad in zip(names, weights, grads):
                grad = torch.zeros_like(weight) if grad is None else grad.detach()
                totals[name] = totals[name] + grad if name in totals else grad
            seen += 1
    with torch.no_grad():
        for key, buf in model.named_buffers():
            buf.copy_(saved_buffers[key])
    if seen == 0:
        raise ConfigError("collect_gradients got no batches; pass an iterable of (inputs, labels)")
    return {name: g / seen for name, g in totals.items()}


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
