"""The one table of layer kinds: what prunekit knows about each conv/linear module type.

Masks, N:M patterns, the MACs and size counters, compression and the structured cost model all
read :data:`LAYER_TABLE`; the tuples below are views of it. A module's record is found through its
class hierarchy (:func:`kind_of`), so subclasses such as ``nn.LazyConv2d`` share their base's.

MACs of a counted layer, per call: ``positions × weight.numel()`` dense and ``positions × nonzero
weights`` effective, where ``positions`` is the number of places the weight is applied at: the
output positions of a convolution or linear layer, the *input* positions of a transposed
convolution (as ``torch.utils.flop_counter`` counts them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from torch import nn

CompressionKind = Literal["conv", "fc"]
MacsOver = Literal["output", "input"]


@dataclass(frozen=True)
class LayerRecord:
    """What one module type's weight looks like and which parts of prunekit handle it."""

    module_type: type[nn.Module]
    out_axis: int  #: weight axis of output channels
    in_axis: int  #: weight axis of input channels
    grouped_axis: int | None  #: weight axis holding channels per group (times ``module.groups``)
    channel_dim: int  #: axis of the channels in the layer's input and output activations
    prunable: bool  #: its weight is masked by default (:func:`prunekit.masks.prunable_parameters`)
    nm: bool  #: its weight has the ``(out, in, *kernel)`` layout N:M groups are defined on
    macs_over: MacsOver | None  #: activation whose positions count its MACs; ``None``: not counted
    compression: CompressionKind | None  #: codebook settings its weight is quantized with
    weight: str = "weight"  #: attribute holding the weight


def _conv(cls: type[nn.Module]) -> LayerRecord:
    return LayerRecord(cls, 0, 1, 1, 1, prunable=True, nm=True, macs_over="output", compression="conv")


def _conv_transpose(cls: type[nn.Module]) -> LayerRecord:
    return LayerRecord(cls, 1, 0, 1, 1, prunable=True, nm=False, macs_over="input", compression="conv")


#: Module type -> its record, in the order the derived tuples list them.
LAYER_TABLE: Mapping[type[nn.Module], LayerRecord] = MappingProxyType({
    r.module_type: r
    for r in (
        *(_conv(c) for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d)),
        *(_conv_transpose(c) for c in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)),
        LayerRecord(nn.Linear, 0, 1, None, -1, prunable=True, nm=True, macs_over="output", compression="fc"),
    )
})


def _types(keep: Callable[[LayerRecord], bool]) -> tuple[type[nn.Module], ...]:
    return tuple(t for t, r in LAYER_TABLE.items() if keep(r))


#: Types whose weight is masked by default.
PRUNABLE_LAYERS = _types(lambda r: r.prunable)
#: Types whose weight can carry an N:M pattern.
NM_LAYERS = _types(lambda r: r.nm)
#: Types the MACs counter counts per weight (dense and effective).
MACS_LAYERS = _types(lambda r: r.macs_over is not None)
#: Conv/linear types whose weight is laid out ``(out, in/groups, *kernel)`` (no transposed convs).
WEIGHT_LAYERS = _types(lambda r: r.out_axis == 0)
#: Type -> compression kind of its weight.
COMPRESSION_KINDS: Mapping[type[nn.Module], CompressionKind] = MappingProxyType(
    {t: r.compression for t, r in LAYER_TABLE.items() if r.compression is not None}
)


def kind_of(module: nn.Module) -> LayerRecord | None:
    """The record of ``module``'s nearest base type in :data:`LAYER_TABLE`, or ``None``."""
    for cls in type(module).__mro__:
        record = LAYER_TABLE.get(cls)
        if record is not None:
            return record
    return None


def output_channels(module: nn.Module) -> int | None:
    """Output channels (features) of a table layer from its weight's shape; ``None`` for other modules."""
    record = kind_of(module)
    if record is None or getattr(module, record.weight, None) is None:
        return None
    channels = getattr(module, record.weight).shape[record.out_axis]
    return channels * module.groups if record.grouped_axis == record.out_axis else channels
