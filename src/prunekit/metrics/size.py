"""Parameter counts, nonzeros, compression ratio and size on disk."""

from __future__ import annotations

import lzma
from dataclasses import asdict, dataclass

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.nn.utils import parametrize

from prunekit.layer_kinds import PRUNABLE_LAYERS


def _hidden(fqn: str) -> bool:
    """Whether ``fqn`` lies inside a ``parametrizations`` container (raw originals, mask buffers),
    also when the parametrized module is the model itself (``parametrizations.weight.original``)."""
    return "parametrizations" in fqn.split(".")


def effective_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{fqn: tensor}`` of the values the model computes with (masks and other parametrizations applied).

    Names are the logical ones (``fc1.weight``), not ``parametrizations.weight.original``.
    """
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for pname, param in module.named_parameters(recurse=False):
                out[prefix + pname] = param.detach()
            if parametrize.is_parametrized(module):
                for pname in module.parametrizations:  # type: ignore[attr-defined]
                    out[prefix + pname] = getattr(module, pname).detach()
    # drop the raw originals that parametrizations hide
    return {k: v for k, v in out.items() if not _hidden(k)}


@dataclass
class SizeReport:
    """Counts over all parameters and over prunable (conv/linear) weights."""

    params: int
    nonzero_params: int
    prunable_params: int
    nonzero_prunable_params: int

    @property
    def compression_ratio(self) -> float:
        """total / nonzero parameters (all parameters, biases and norms included)."""
        return self.params / max(1, self.nonzero_params)

    @property
    def sparsity(self) -> float:
        """Fraction of prunable weights that are zero (0.0 when the model has none)."""
        if self.prunable_params == 0:
            return 0.0
        return 1.0 - self.nonzero_prunable_params / self.prunable_params

    def to_dict(self) -> dict:
        return {**asdict(self), "compression_ratio": self.compression_ratio, "sparsity": self.sparsity}


def _is_prunable(model: nn.Module, fqn: str) -> bool:
    module_name, _, pname = fqn.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return pname == "weight" and isinstance(module, PRUNABLE_LAYERS)


def count_parameters(model: nn.Module) -> SizeReport:
    """Total and nonzero parameter counts (effective values: masks applied)."""
    params = effective_parameters(model)
    total = sum(p.numel() for p in params.values())
    nonzero = sum(int((p != 0).sum()) for p in params.values())
    prunable = {k: p for k, p in params.items() if _is_prunable(model, k)}
    return SizeReport(
        params=total,
        nonzero_params=nonzero,
        prunable_params=sum(p.numel() for p in prunable.values()),
        nonzero_prunable_params=sum(int((p != 0).sum()) for p in prunable.values()),
    )


@dataclass
class DiskSize:
    """Bytes of the model's effective state on disk: raw safetensors and LZMA-compressed."""

    raw_bytes: int
    compressed_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def size_on_disk(model: nn.Module) -> DiskSize:
    """Size of the effective state dict (float values, buffers included) as safetensors, raw and xz-compressed.

    The compressed size shows what sparsity gains with a generic compressor; Deep Compression's
    packed format (``prunekit.compression``) does far better.
    """
    state = {k: v.contiguous().clone() for k, v in effective_parameters(model).items()}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for bname, buf in module.named_buffers(recurse=False):
            if not _hidden(prefix + bname) and buf is not None:
                state[prefix + bname] = buf.detach().contiguous().clone()
    raw = safetensors_bytes(state)
    return DiskSize(raw_bytes=len(raw), compressed_bytes=len(lzma.compress(raw, preset=9)))

