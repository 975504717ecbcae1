"""Trained quantization: fine-tune shared centroids through ``torch.nn.utils.parametrize``.

Each quantized weight becomes ``W = codebook[index]`` at its nonzeros and exact ``0`` elsewhere.
The codebook is the layer's only trainable tensor (the original weight is frozen while attached),
and the backward of the gather scatter-adds, so ``codebook.grad[c]`` is the sum of the weight
gradients over the members of cluster ``c`` — Deep Compression's Eq. 3. Any optimizer and training
loop then fine-tunes the centroids without knowing about weight sharing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit import _parametrize

from prunekit.compression.quantize import QuantizationResult, QuantizedLayer, as_stored, resolve_parameter, share_weights
from prunekit.compression.spec import CompressionConfig
from prunekit.errors import StructureError


class SharedWeight(nn.Module):
    """Parametrization ``weight = codebook[index]`` where the mask is set, else exactly ``0``."""

    def __init__(
        self, layer: QuantizedLayer, device: torch.device | str | None = None, spec: CompressionConfig | None = None
    ) -> None:
        super().__init__()
        self.name = layer.name
        self.spec = spec if spec is not None else CompressionConfig()
        self.original_requires_grad = True  # restored on strip
        self.shape = tuple(layer.shape)
        self.codebook = nn.Parameter(layer.codebook.detach().to(device, torch.float32).clone())
        self.register_buffer("indices", layer.indices.long().to(device))
        self.register_buffer("positions", layer.positions().to(device))
        self._template = layer

    def forward(self, original: Tensor) -> Tensor:
        values = self.codebook.index_select(0, self.indices).to(original.dtype)
        out = torch.zeros(original.numel(), dtype=original.dtype, device=original.device)
        return out.index_copy(0, self.positions, values).reshape(self.shape)

    def layer(self) -> QuantizedLayer:
        """The record with the current (possibly fine-tuned) codebook."""
        return self._template.with_codebook(self.codebook)


@dataclass
class WeightSharingHandle:
    """What :func:`attach_weight_sharing` attached: parameter name -> :class:`SharedWeight`."""

    model: nn.Module
    shared: dict[str, SharedWeight]
    spec: CompressionConfig

    def codebooks(self) -> Iterator[nn.Parameter]:
        """The trainable codebooks (e.g. to build an optimizer over centroids only)."""
        return (s.codebook for s in self.shared.values())

    def result(self) -> QuantizationResult:
        """Current records (fine-tuned codebooks), without detaching anything."""
        return QuantizationResult({n: s.layer() for n, s in self.shared.items()}, self.spec)

    def strip(self) -> QuantizationResult:
        """Same as :func:`strip_weight_sharing` on this handle's model."""
        return strip_weight_sharing(self.model)


def attach_weight_sharing(
    model: nn.Module, spec: CompressionConfig | QuantizationResult | Mapping | None = None
) -> WeightSharingHandle:
    """Replace each selected weight by a :class:`SharedWeight` parametrization.

    ``spec`` is a :class:`CompressionConfig` (k-means runs now on the current weights) or a
    :class:`QuantizationResult` from :func:`share_weights`. The original weights are frozen
    (``requires_grad=False``) until :func:`strip_weight_sharing`.
    """
    if isinstance(spec, QuantizationResult):
        result = spec
    else:
        result = share_weights(model, CompressionConfig.parse(spec), apply=False)  # type: ignore[arg-type]
    shared: dict[str, SharedWeight] = {}
    for name, layer in result.layers.items():
        module, pname = resolve_parameter(model, name)
        if _parametrize.find(module, pname, SharedWeight) is not None:
            raise StructureError(f"{name} already has weight sharing attached; strip it first")
        weight = getattr(module, pname)
        if tuple(weight.shape) != tuple(layer.shape):
            raise StructureError(f"{name}: model has shape {tuple(weight.shape)}, record has {tuple(layer.shape)}")
        param = SharedWeight(layer, device=weight.device, spec=result.spec)
        _parametrize.register(module, pname, param)
        original = module.parametrizations[pname].original  # type: ignore[index]
        param.original_requires_grad = bool(original.requires_grad)
        original.requires_grad_(False)
        shared[name] = param
    return WeightSharingHandle(model, shared, result.spec)


def strip_weight_sharing(model: nn.Module) -> QuantizationResult:
    """Make weight sharing permanent: plain weights equal to ``codebook[index]`` (exact zeros elsewhere).

    Removes every parametrization on each shared weight (a mask attached below it is implied by
    the shared values, whose zeros are exact). Returns the final records.
    """
    layers: dict[str, QuantizedLayer] = {}
    spec: CompressionConfig | None = None
    for mod_name, module in list(model.named_modules()):
        if not parametrize.is_parametrized(module):
            continue
        for pname in list(module.parametrizations):  # type: ignore[attr-defined]
            shared = _parametrize.find(module, pname, SharedWeight)
            if shared is None:
                continue
            name = f"{mod_name}.{pname}" if mod_name else pname
            layers[name] = as_stored(shared.layer(), shared.spec.codebook_dtype)
            spec = spec or shared.spec
            _parametrize.remove(module, pname, leave_parametrized=True)
            if shared.spec.codebook_dtype != "float32":  # the weight must equal the rounded centroids
                with torch.no_grad():
                    getattr(module, pname).copy_(layers[name].dense())
            getattr(module, pname).requires_grad_(shared.original_requires_grad)
    return QuantizationResult(layers, spec or CompressionConfig())
