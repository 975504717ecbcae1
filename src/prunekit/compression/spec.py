"""What to compress and how: :class:`CompressionConfig` and the weights it quantizes."""

from __future__ import annotations


import fnmatch
from collections.abc import Iterator
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from torch import nn

from prunekit._deprecation import renamed
from prunekit._settings import MAX_COUNT, Seed, Settings
from prunekit.errors import ConfigError
from prunekit.layer_kinds import COMPRESSION_KINDS, CompressionKind, kind_of

LayerKind = CompressionKind
#: Module type -> layer kind of its quantized weight (a read-only view of the layer-kind table).
LAYER_KINDS = COMPRESSION_KINDS

MAX_BITS = 16  # codebook indices are stored as uint16


class CompressionConfig(Settings):
    """Settings for weight sharing and packing (Deep Compression defaults: conv 8 bits, fc 5 bits).

    ``overrides`` maps shell-style patterns over parameter names (``"features.0.weight"``,
    ``"classifier.*"``) to bits; patterns are tried in order and the first match wins.
    ``exclude`` patterns leave weights unquantized (stored raw with the other tensors).
    """


    conv_bits: int = Field(8, ge=1, le=MAX_BITS, description="codebook bits (k = 2**bits) for conv weights")
    fc_bits: int = Field(5, ge=1, le=MAX_BITS, description="codebook bits for linear weights")
    overrides: dict[str, int] = Field(default_factory=dict, description="parameter-name pattern -> bits")
    exclude: tuple[str, ...] = Field((), description="parameter-name patterns left unquantized")
    conv_index_bits: int = Field(8, ge=1, le=16, description="relative-index bits for conv weights")
    fc_index_bits: int = Field(5, ge=1, le=16, description="relative-index bits for linear weights")
    init: Literal["linear", "density", "random"] = "linear"
    seed: Seed = 0
    max_iter: int = Field(300, ge=1, le=MAX_COUNT, description="k-means iteration cap (per Lloyd run)")
    reseed_empty: bool = Field(True, description="re-seed clusters k-means leaves empty (else drop them)")
    huffman: bool = True
    index_coding: Literal["fillers", "compact"] = Field(
        "fillers",
        description="relative indices as in the paper (filler entries for long gaps), or compact: rows/columns without "
        "nonzeros flagged and skipped, long gaps as escape symbols of the gap stream (no filler weight symbols)",
    )
    codebook_dtype: Literal["float32", "float16"] = Field(
        "float32", description="stored centroid precision; float16 rounds the shared weights (lossy; measure the accuracy)"
    )
    extras_precision: Literal["exact", "float16"] = Field(
        "exact", description="unquantized float tensors: stored in their own dtype, or as float16 (lossy)"
    )

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, bits in value.items():
            if not 1 <= int(bits) <= MAX_BITS:
                raise ValueError(f"bits for {pattern!r} must lie in [1, {MAX_BITS}], got {bits}")
        return value

    @classmethod
    def parse(cls, data: dict | CompressionConfig | None) -> CompressionConfig:
        """Build a spec from a dict (or pass one through), as :class:`ConfigError` on bad values."""
        if data is None:
            return cls()
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid compression spec: {exc}") from exc

    def bits_for(self, name: str, kind: LayerKind) -> int:
        """Codebook bits for parameter ``name`` of layer kind ``kind``."""
        for pattern, bits in self.overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                return int(bits)
        return self.conv_bits if kind == "conv" else self.fc_bits

    def index_bits_for(self, kind: LayerKind) -> int:
        """Relative-index bits for layer kind ``kind``."""
        return self.conv_index_bits if kind == "conv" else self.fc_index_bits

    def excludes(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.exclude)


def layer_kind(module: nn.Module) -> LayerKind | None:
    """The compression kind of ``module`` (its nearest base type in the layer-kind table), or ``None``."""
    record = kind_of(module)
    return record.compression if record is not None else None


def iter_targets(model: nn.Module, spec: CompressionConfig) -> Iterator[tuple[str, nn.Module, LayerKind]]:
    """``(parameter name, module, kind)`` for every weight the spec quantizes, in module order.

    Patterns in ``overrides`` and ``exclude`` that match no candidate weight raise
    :class:`ConfigError`, so typos do not pass silently.
    """
    found: list[tuple[str, nn.Module, LayerKind]] = []
    for mod_name, module in model.named_modules():
        record = kind_of(module)
        if record is None or record.compression is None or getattr(module, record.weight, None) is None:
            continue
        found.append((f"{mod_name}.{record.weight}" if mod_name else record.weight, module, record.compression))
    names = [n for n, _, _ in found]
    for pattern in [*spec.overrides, *spec.exclude]:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(
                f"compression pattern {pattern!r} matches no conv/linear weight; weights look like {names[:4]}"
            )
    for item in found:
        if not spec.excludes(item[0]):
            yield item


__getattr__ = renamed(__name__, {"CompressionSpec": ("CompressionConfig", lambda: CompressionConfig)})
