"""MaskSet: ``{parameter fqn: bool tensor}``, attached through ``torch.nn.utils.parametrize``.

An attached mask makes ``module.weight`` compute ``original * mask``; ``state_dict``, ``deepcopy``
and optimizers keep working (the optimizer holds ``original``, whose masked entries get zero
gradient). ``strip`` makes masks permanent and leaves a plain model whose state dict loads into a
fresh model with ``load_state_dict``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit._io import load_safetensors, safetensors_metadata, save_safetensors
from prunekit.errors import CheckpointError, ConfigError
from prunekit import _parametrize
from prunekit.masks.targets import owner, prunable_parameters, raw_parameter

FORMAT = "prunekit.maskset/1"


class WeightMask(nn.Module):
    """Parametrization ``w ↦ w * mask`` with the mask stored as a bool buffer."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask


class MaskSet(Mapping[str, Tensor]):
    """Boolean keep-masks (True = keep) keyed by parameter fully-qualified name."""

    def __init__(self, masks: Mapping[str, Tensor]) -> None:
        self._masks: dict[str, Tensor] = {}
        for name, mask in masks.items():
            if not isinstance(mask, Tensor):
                raise ConfigError(f"mask for {name!r} must be a tensor, got {type(mask).__name__}")
            self._masks[name] = mask.detach().to("cpu", torch.bool)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def ones(cls, model: nn.Module, names: list[str] | None = None) -> MaskSet:
        """All-keep masks for ``names`` (default: every prunable weight of ``model``)."""
        names = prunable_parameters(model) if names is None else names
        return cls({n: torch.ones_like(raw_parameter(model, n), dtype=torch.bool, device="cpu") for n in names})

    @classmethod
    def from_model(cls, model: nn.Module) -> MaskSet:
        """Masks currently attached to ``model`` (empty if none)."""
        masks = {}
        for mod_name, module in model.named_modules():
            if not parametrize.is_parametrized(module):
                continue
            for pname, plist in module.parametrizations.items():  # type: ignore[attr-defined]
                for p in plist:
                    if isinstance(p, WeightMask):
                        masks[f"{mod_name}.{pname}" if mod_name else pname] = p.mask.clone()
        return cls(masks)

    @classmethod
    def from_nonzeros(cls, model: nn.Module, names: list[str] | None = None) -> MaskSet:
        """Masks that keep exactly the nonzero entries of the current weights."""
        from prunekit.masks.targets import effective_weight

        names = prunable_parameters(model) if names is None else names
        return cls({n: effective_weight(model, n).detach() != 0 for n in names})

    # -- mapping protocol ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return f"MaskSet({len(self)} masks, sparsity={self.sparsity():.4f})"

    # -- statistics ---------------------------------------------------------------------------
    def numel(self) -> int:
        """Number of masked entries in total."""
        return sum(m.numel() for m in self._masks.values())

    def kept(self) -> int:
        """Number of kept (True) entries."""
        return sum(int(m.sum()) for m in self._masks.values())

    def sparsity(self) -> float:
        """Fraction of entries pruned, over all masks."""
        return 1.0 - self.kept() / max(1, self.numel())

    def layer_sparsity(self) -> dict[str, float]:
        """Fraction pruned per parameter."""
        return {n: 1.0 - float(m.float().mean()) for n, m in self._masks.items()}

    # -- combination --------------------------------------------------------------------------
    def __and__(self, other: MaskSet) -> MaskSet:
        """Entries kept by both; a name present in only one keeps that one's mask."""
        out = {}
        for name in dict.fromkeys([*self, *other]):
            if name in self and name in other:
                out[name] = self[name] & other[name]
            else:
                out[name] = (self if name in self else other)[name]
        return MaskSet(out)

    def equal(self, other: MaskSet) -> bool:
        """Same names and identical masks."""
        return set(self) == set(other) and all(torch.equal(self[n], other[n]) for n in self)

    # -- model mutation -----------------------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """Raise :class:`ConfigError` unless every mask matches a parameter of the same shape."""
        for name, mask in self._masks.items():
            param = raw_parameter(model, name)
            if tuple(param.shape) != tuple(mask.shape):
                raise ConfigError(f"mask {name!r} has shape {tuple(mask.shape)} but the parameter has {tuple(param.shape)}")

    def attach(self, model: nn.Module) -> nn.Module:
        """Attach (or update in place) a :class:`WeightMask` parametrization on each named parameter."""
        self.check_model(model)
        for name, mask in self._masks.items():
            module, pname = owner(model, name)
            existing = _parametrize.find(module, pname, WeightMask)
            target = raw_parameter(model, name)
            if existing is not None:
                existing.mask.copy_(mask.to(existing.mask.device))
            else:
                _parametrize.register(module, pname, WeightMask(mask.to(target.device)))
        return model

    def apply_(self, model: nn.Module) -> nn.Module:
        """Zero the pruned entries of the raw parameters in place (attached or not)."""
        self.check_model(model)
        with torch.no_grad():
            for name, mask in self._masks.items():
                param = raw_parameter(model, name)
                param.mul_(mask.to(param.device, param.dtype))
        return model

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Plain ``{name: bool tensor}`` copy."""
        return {n: m.clone() for n, m in self._masks.items()}

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        """Atomically save as safetensors (uint8 tensors, format tag and optional JSON metadata)."""
        meta = {"format": FORMAT, "metadata": json.dumps(dict(metadata or {}), sort_keys=True)}
        save_safetensors(path, {n: m.to(torch.uint8) for n, m in self._masks.items()}, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MaskSet:
        """Load masks saved by :meth:`save` (no pickle involved)."""
        tensors = load_safetensors(path)
        fmt = safetensors_metadata(path).get("format")
        if fmt != FORMAT:
            raise CheckpointError(f"{path} is not a prunekit mask file (format tag {fmt!r}, expected {FORMAT!r})")
        return cls({n: t.to(torch.bool) for n, t in tensors.items()})


def detach_masks(model: nn.Module) -> MaskSet:
    """Remove every mask from ``model`` *without* applying it (raw weights come back); return the masks."""
    masks = MaskSet.from_model(model)
    for name in masks:
        module, pname = owner(model, name)
        _remove_mask(module, pname, apply=False)
    return masks


def strip(model: nn.Module) -> nn.Module:
    """Make every attached mask permanent: weights become ``original * mask``; parametrizations go.

    Other parametrizations on the same parameter are kept.
    """
    for name in MaskSet.from_model(model):
        module, pname = owner(model, name)
        _remove_mask(module, pname, apply=True)
    return model


def _remove_mask(module: nn.Module, pname: str, apply: bool) -> None:
    plist = module.parametrizations[pname]  # type: ignore[index]
    mask_mod = next(p for p in plist if isinstance(p, WeightMask))
    others = [p for p in plist if not isinstance(p, WeightMask)]
    original = plist.original
    if apply:
        with torch.no_grad():
            original.mul_(mask_mod.mask.to(original.dtype))
    _parametrize.remove(module, pname, leave_parametrized=False)
    for p in others:
        _parametrize.register(module, pname, p)
