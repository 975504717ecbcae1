"""The skip path: inference that does not compute skipped channels.

Each gated conv gathers the filters of the active channels and runs a smaller conv; norms and
depthwise convs of the group work on those channels only, and each consumer takes only the
active input channels (scaled by their gate values). The result equals the masked dense
computation of :class:`~prunekit.dynamic.GatedModel` up to float rounding.

``batch="union"`` computes, for a batch, the union of the channels any of its inputs keeps (one
smaller conv per layer; exact, as each input's other channels are scaled by 0);
``batch="loop"`` runs the inputs one at a time, so each computes only its own channels.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.dynamic.gates import ChannelGate, GatedModel
from prunekit.errors import ConfigError

BatchMode = Literal["union", "loop"]


class _Active:
    """The channels one gated group computes for the current batch: indices and per-input gate values."""

    idx: Tensor
    scale: Tensor


def _single(s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """One input's kept channels (top-k with saliency > 0) and their gate values, without building the dense gate row."""
    if k < s.shape[1]:
        vals, idx = s.topk(k, dim=1)
        vals, idx = vals[0], idx[0]
    else:
        vals, idx = s[0], torch.arange(s.shape[1], device=s.device)
    keep = vals > 0
    if not bool(keep.all()):
        if not bool(keep.any()):  # nothing kept: carry one channel scaled by 0 so shapes stay valid
            return idx[:1], torch.zeros(1, 1, dtype=s.dtype, device=s.device)
        vals, idx = vals[keep], idx[keep]
    return idx, vals[None]


def _union(g: Tensor) -> tuple[Tensor, Tensor]:
    """The channels any input of the batch keeps, and every input's gate values on them (0 where it skips one)."""
    idx = (g > 0).any(0).nonzero().squeeze(1)
    if idx.numel() == 0:
        idx = torch.zeros(1, dtype=torch.long, device=g.device)
    return idx, g.index_select(1, idx)


class _SkipConv(nn.Module):
    """A Conv2d reading only the active channels of the group it consumes and/or computing only those of the group it produces."""

    def __init__(self, conv: nn.Conv2d, consumes: _Active | None, produces: _Active | None, gate: ChannelGate | None) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.consumes, self.produces, self.gate = consumes, produces, gate

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.weight, self.bias
        if self.consumes is not None:
            w, scale = w.index_select(1, self.consumes.idx), self.consumes.scale
            if scale.shape[0] == 1 and self.produces is None and w.numel() < x.numel():  # one input: scale the smaller gathered filters
                w = w * scale.view(1, -1, 1, 1)
            else:
                x = x * scale[:, :, None, None]
        if self.produces is not None and self.gate is not None:
            fc = self.gate.fc.weight if self.consumes is None else self.gate.fc.weight.index_select(1, self.consumes.idx)
            s = torch.relu(F.linear(x.mean(dim=(2, 3)), fc, self.gate.fc.bias))
            idx, scale = _single(s, self.gate.keep()) if s.shape[0] == 1 else _union(self.gate.select(s))
            self.produces.idx, self.produces.scale = idx, scale
            w = w.index_select(0, idx)
            b = None if b is None else b.index_select(0, idx)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation)


def _affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm2d as ``x · a + c`` per channel."""
    var, mean = bn.running_var, bn.running_mean
    if var is None or mean is None:
        raise ConfigError("dynamic skip path: BatchNorm2d without running statistics cannot be folded; use track_running_stats=True")
    a = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight.detach()
    return a, -mean * a + (0 if bn.bias is None else bn.bias.detach())


def _fold(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` into the output channels of a skip conv that it alone reads."""
    a, c = _affine(bn)
    conv.weight = conv.weight * a.view(-1, *[1] * (conv.weight.dim() - 1))
    conv.bias = c if conv.bias is None else conv.bias * a + c


class _SkipNorm(nn.Module):
    """An eval-mode BatchNorm2d folded to ``x · a + c`` on the active channels."""

    def __init__(self, bn: nn.BatchNorm2d, active: _Active) -> None:
        super().__init__()
        self.a, self.c = _affine(bn)
        self.active = active

    def forward(self, x: Tensor) -> Tensor:
        idx = self.active.idx
        return x * self.a.index_select(0, idx)[None, :, None, None] + self.c.index_select(0, idx)[None, :, None, None]


class _SkipDepthwise(nn.Module):
    """A depthwise Conv2d on the active channels only."""

    def __init__(self, conv: nn.Conv2d, active: _Active) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.active = active

    def forward(self, x: Tensor) -> Tensor:
        idx = self.active.idx
        b = None if self.bias is None else self.bias.index_select(0, idx)
        return F.conv2d(x, self.weight.index_select(0, idx), b, self.stride, self.padding, self.dilation, groups=idx.numel())


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


class SkipPathModel(nn.Module):
    """Inference-only model computing only each input's active channels (see the module docstring)."""

    def __init__(self, gated: GatedModel, batch: BatchMode = "union") -> None:
        super().__init__()
        if batch not in ("union", "loop"):
            raise ConfigError(f"dynamic skip path: batch must be 'union' or 'loop', got {batch!r}")
        work = copy.deepcopy(gated).eval()
        model = work.model
        active = {site.name: _Active() for site in work.sites}
        produced = {site.producer: site.name for site in work.sites}
        consumed = {c: site.name for site in work.sites for c in site.consumers}
        norms = {n: model.get_submodule(n) for site in work.sites for n in site.norms}
        folded = {norm for site in work.sites for _, norm in site.folds}
        for site in work.sites:
            for n in site.norms:
                _replace(model, n, nn.Identity() if n in folded else _SkipNorm(norms[n], active[site.name]))
            for n in site.depthwise:
                _replace(model, n, _SkipDepthwise(model.get_submodule(n), active[site.name]))
        for layer in dict.fromkeys([*produced, *consumed]):
            out, inp = produced.get(layer), consumed.get(layer)
            conv = model.get_submodule(layer)
            _replace(model, layer, _SkipConv(conv, active[inp] if inp else None, active[out] if out else None, work.gate(out) if out else None))
        for site in work.sites:  # a norm that alone reads a conv's output folds into it (one kernel less per layer)
            for conv, norm in site.folds:
                _fold(model.get_submodule(conv), norms[norm])
        self.model, self.batch = model, batch
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            raise RuntimeError("the skip path is for inference only; train the GatedModel and rebuild with skip_path()")
        if self.batch == "loop" and x.shape[0] > 1:
            return torch.cat([self.model(xi) for xi in x.split(1)])
        return self.model(x)


def skip_path(gated: GatedModel, batch: BatchMode = "union") -> SkipPathModel:
    """An inference model that skips the channels ``gated``'s gates switch off (a copy; ``gated`` is untouched)."""
    return SkipPathModel(gated, batch)
