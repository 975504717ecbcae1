"""Feature Boosting and Suppression style gates (Gao et al. 2019) on channel groups, computed densely with masks.

For each gated group a small predictor reads the global average of the producing conv's input,
``s = relu(W · gap(x) + b)`` (one non-negative saliency per channel), keeps the ``ceil(density · C)``
largest and zeroes the rest. The group's channels are multiplied by those gate values where
they enter the consumers, after the producer's norm and activation (and any depthwise conv of
the chain), so every layer of the group sees the same channel mask per input and skipped
channels are exactly zero. A channel whose saliency is 0 is skipped even inside the top-k, so
the number of computed channels varies per input.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.dynamic.sites import GateSite, find_sites
from prunekit.errors import ConfigError


def _check_density(density: float) -> float:
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"dynamic gates: density must be in (0, 1], got {density}; 0.5 computes half of each gated group's channels")
    return float(density)


class ChannelGate(nn.Module):
    """Saliency predictor of one group: ``gap(x) → linear → relu → keep top-k``."""

    def __init__(self, in_channels: int, channels: int, density: float) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, channels)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.constant_(self.fc.bias, 1.0)  # starts near "every channel at saliency 1": the dense model's outputs
        self.density = _check_density(density)

    @property
    def channels(self) -> int:
        return self.fc.out_features

    def keep(self) -> int:
        """Channels kept per input at most: ``ceil(density · C)``."""
        return max(1, math.ceil(self.density * self.channels))

    def saliency(self, x: Tensor) -> Tensor:
        """Per-input channel saliencies ``(batch, C)`` before winner-take-all."""
        return torch.relu(self.fc(x.mean(dim=(2, 3))))

    def select(self, s: Tensor) -> Tensor:
        """Gate values: ``s`` where it is among the top-k of its row, else 0."""
        k = self.keep()
        if k >= s.shape[1]:
            return s
        idx = s.topk(k, dim=1).indices
        return torch.zeros_like(s).scatter(1, idx, s.gather(1, idx))


class _SiteHook:
    """Forward pre-hook of one layer: scale its input by the gates of the groups it consumes, then
    predict the gates of the groups it produces. An object, not a closure, so ``deepcopy`` of the
    gated model rebinds it to the copy."""

    def __init__(self, owner: GatedModel, consumes: list[str], produces: list[str]) -> None:
        self.owner, self.consumes, self.produces = owner, consumes, produces

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        for name in self.consumes:
            x = x * self.owner.last_gates[name][:, :, None, None]
        for name in self.produces:
            gate = self.owner.gate(name)
            s = gate.saliency(x)
            self.owner.last_saliency[name] = s
            self.owner.last_gates[name] = gate.select(s)
        return (x, *args[1:])


class GatedModel(nn.Module):
    """``model`` with one :class:`ChannelGate` per :class:`GateSite`; ``forward`` applies them (masked dense compute).

    After each forward, ``last_saliency[name]`` holds the saliencies (with grad, for the budget
    loss) and ``last_gates[name]`` the gate values of every gated group.
    """

    def __init__(self, model: nn.Module, sites: Sequence[GateSite], density: float) -> None:
        super().__init__()
        self.model = model
        self.sites = list(sites)
        self.gates = nn.ModuleDict()
        self._key = {site.name: site.name.replace(".", "__") for site in self.sites}
        for site in self.sites:
            producer = model.get_submodule(site.producer)
            self.gates[self._key[site.name]] = ChannelGate(producer.in_channels, site.channels, density)
        self.last_saliency: dict[str, Tensor] = {}
        self.last_gates: dict[str, Tensor] = {}
        self._handles = [model.get_submodule(layer).register_forward_pre_hook(self._hook(layer)) for layer in self._hooked_layers()]

    def description(self) -> dict[str, Any]:
        """JSON-able sites and density: with the bare model, :meth:`from_description` rebuilds the gates (then load the state dict)."""
        return {"sites": [asdict(s) for s in self.sites], "density": next(iter(self.gates.values())).density}

    @classmethod
    def from_description(cls, model: nn.Module, description: dict[str, Any]) -> GatedModel:
        """Untrained gates on ``model`` at the sites of :meth:`description`."""
        def tuples(v: Any) -> Any:
            return tuple(tuples(x) for x in v) if isinstance(v, list) else v

        sites = [GateSite(**{k: tuples(v) for k, v in s.items()}) for s in description["sites"]]
        return cls(model, sites, description["density"])

    def gate(self, name: str) -> ChannelGate:
        """The gate of site ``name``."""
        return self.gates[self._key[name]]  # type: ignore[return-value]

    def set_density(self, density: float) -> None:
        """Change every gate's density (e.g. along a schedule)."""
        for gate in self.gates.values():
            gate.density = _check_density(density)  # type: ignore[union-attr]

    def _hooked_layers(self) -> list[str]:
        layers: dict[str, None] = {}
        for site in self.sites:
            layers.setdefault(site.producer, None)
            for c in site.consumers:
                layers.setdefault(c, None)
        return list(layers)

    def _hook(self, layer: str) -> _SiteHook:
        return _SiteHook(self, [s.name for s in self.sites if layer in s.consumers], [s.name for s in self.sites if s.producer == layer])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.last_saliency, self.last_gates = {}, {}
        return self.model(*args, **kwargs)

    def budget_loss(self) -> Tensor:
        """FBS's sparsity loss: the mean L1 norm of the last forward's saliencies (mean over groups of per-channel means)."""
        if not self.last_saliency:
            raise RuntimeError("budget_loss() needs a forward pass first")
        return torch.stack([s.abs().mean() for s in self.last_saliency.values()]).mean()

    def active(self) -> dict[str, Tensor]:
        """Boolean ``(batch, C)`` masks of the channels the last forward computed, per group."""
        return {name: g > 0 for name, g in self.last_gates.items()}

    def remove(self) -> nn.Module:
        """Detach the gates; returns the bare model (weights shared)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        return self.model


def add_gates(model: nn.Module, example_inputs: Any, density: float = 0.5, groups: Sequence[str] = ("*",),
              copy_model: bool = True) -> GatedModel:
    """Gate every gateable channel group of ``model`` matching ``groups`` (patterns on the producing layer's name).

    ``example_inputs`` traces the dependency graph (:func:`prunekit.dynamic.find_sites`); residual-coupled
    groups are skipped. ``copy_model=False`` hooks ``model`` itself instead of a deep copy.

    >>> gated = add_gates(resnet20, torch.randn(1, 3, 32, 32), density=0.5)
    >>> logits = gated(images)
    """
    _check_density(density)
    sites = find_sites(model, example_inputs, groups)
    if not sites:
        raise ConfigError("dynamic gates: the model has no gateable channel group (each needs one conv → norm/activation → conv chain)")
    return GatedModel(copy.deepcopy(model) if copy_model else model, sites, density)
