"""Byte accounting of a compressed model, stage by stage (Deep Compression, Tables 2-5).

Per quantized layer, with ``E`` = entries (nonzeros + filler entries at the layer's index bits):

- **dense**: ``numel * 32`` bits (float32, every element).
- **pruned** (P): ``E * (32 + index_bits)``: a float32 value and a relative index per entry.
- **quantized** (P+Q): ``E * weight_width + E * index_bits + codebook``: fixed-width
  codebook indices (``weight_width = ceil(log2(n_clusters + has_fillers))``: a layer that needs
  filler entries reserves one extra symbol), fixed-width relative indices, the codebook.
- **huffman** (P+Q+H): the stored streams (exact bit counts, no padding): Huffman-coded indices
  and gaps (with ``index_coding: compact``: gaps with escapes instead of filler entries, plus the
  row/column support flags) + the codebook + the stored code-length tables (one byte per symbol).

The codebook counts at its stored size (4 bytes per centroid, 2 with ``codebook_dtype: float16``).

Unquantized tensors (biases, BatchNorm, excluded weights) are counted at their stored size in every
compressed stage, and at 4 bytes per element (their own size if not floating point) as dense.
``file_bytes`` is the real file; it adds byte padding of each stream, the prefix, the JSON
header and the trailer (``file_overhead_bytes``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerAccount:
    """Sizes of one quantized layer at each stage; ``*_bits`` are bits, ``*_bytes`` bytes."""

    name: str
    kind: str
    shape: tuple[int, ...]
    numel: int
    nnz: int
    bits: int
    n_clusters: int
    index_bits: int
    n_entries: int
    n_fillers: int
    weight_width: int
    weight_bits_huffman: int
    position_bits_huffman: int
    code_table_bytes: int
    stored_bytes: int
    codebook_bytes: int  # as stored (float32, or float16 with ``codebook_dtype: float16``)
    support_bytes: int = 0  # row/column flags of ``index_coding: compact``

    @property
    def density(self) -> float:
        return self.nnz / self.numel if self.numel else 0.0

    @property
    def dense_bits(self) -> int:
        return 32 * self.numel

    @property
    def pruned_bits(self) -> int:
        return self.n_entries * (32 + self.index_bits)

    @property
    def weight_bits_fixed(self) -> int:
        return self.n_entries * self.weight_width

    @property
    def position_bits_fixed(self) -> int:
        return self.n_entries * self.index_bits

    @property
    def quantized_bits(self) -> int:
        return self.weight_bits_fixed + self.position_bits_fixed + 8 * self.codebook_bytes

    @property
    def huffman_bits(self) -> int:
        return self.weight_bits_huffman + self.position_bits_huffman + 8 * (self.codebook_bytes + self.code_table_bytes + self.support_bytes)

    def ratios(self) -> dict[str, float]:
        """Dense size over each stage's size."""
        return {
            "pruned": _ratio(self.dense_bits, self.pruned_bits),
            "quantized": _ratio(self.dense_bits, self.quantized_bits),
            "huffman": _ratio(self.dense_bits, self.huffman_bits),
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        for key in ("density", "dense_bits", "pruned_bits", "weight_bits_fixed", "position_bits_fixed", "quantized_bits", "huffman_bits"):
            out[key] = getattr(self, key)
        out["ratios"] = self.ratios()
        return _finite(out)


@dataclass(frozen=True)
class CompressionReport:
    """What :func:`compress_model` wrote, and what each Deep Compression stage would weigh."""

    path: str
    layers: list[LayerAccount]
    extras_dense_bytes: int
    extras_stored_bytes: int
    n_extras: int
    file_bytes: int
    file_overhead_bytes: int
    huffman: bool
    format_version: int
    notes: list[str] = field(default_factory=list)

    def stage_bytes(self, include_extras: bool = True) -> dict[str, float]:
        """Total bytes per stage (dense, pruned, quantized, huffman), optionally with extras."""
        dense = sum(a.dense_bits for a in self.layers) / 8
        stages = {
            "dense": dense,
            "pruned": sum(a.pruned_bits for a in self.layers) / 8,
            "quantized": sum(a.quantized_bits for a in self.layers) / 8,
            "huffman": sum(a.huffman_bits for a in self.layers) / 8,
        }
        if include_extras:
            stages = {k: v + (self.extras_dense_bytes if k == "dense" else self.extras_stored_bytes) for k, v in stages.items()}
        return stages

    def ratios(self, include_extras: bool = True) -> dict[str, float]:
        """Dense size over each stage (and over the real file when ``include_extras``)."""
        stages = self.stage_bytes(include_extras)
        out = {k: _ratio(stages["dense"], v) for k, v in stages.items() if k != "dense"}
        if include_extras:
            out["file"] = _ratio(stages["dense"], self.file_bytes)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (per-layer records, stage totals, ratios; infinite ratios as ``None``)."""
        out = {
            "path": self.path,
            "format_version": self.format_version,
            "huffman": self.huffman,
            "file_bytes": self.file_bytes,
            "file_overhead_bytes": self.file_overhead_bytes,
            "extras": {"count": self.n_extras, "dense_bytes": self.extras_dense_bytes, "stored_bytes": self.extras_stored_bytes},
            "layers": [a.to_dict() for a in self.layers],
            "weights_only": {"bytes": self.stage_bytes(False), "ratios": self.ratios(False)},
            "total": {"bytes": self.stage_bytes(True), "ratios": self.ratios(True)},
            "notes": list(self.notes),
        }
        return _finite(out)

    def to_markdown(self) -> str:
        """A Markdown table: one row per layer, then weight totals, all-tensor totals and the file."""
        head = (
            "| layer | shape | density | bits | idx bits | dense KB | P KB | P+Q KB | P+Q+H KB | P | P+Q | P+Q+H |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )
        rows = [head]
        for a in self.layers:
            r = a.ratios()
            rows.append(
                f"| {a.name} | {'x'.join(map(str, a.shape))} | {a.density:.1%} | {a.bits} | {a.index_bits} | "
                f"{_kb(a.dense_bits / 8)} | {_kb(a.pruned_bits / 8)} | {_kb(a.quantized_bits / 8)} | {_kb(a.huffman_bits / 8)} | "
                f"{r['pruned']:.1f}x | {r['quantized']:.1f}x | {r['huffman']:.1f}x |"
            )
        for label, extras in (("**weights**", False), ("**all tensors**", True)):
            s, r = self.stage_bytes(extras), self.ratios(extras)
            rows.append(
                f"| {label} | | | | | {_kb(s['dense'])} | {_kb(s['pruned'])} | {_kb(s['quantized'])} | {_kb(s['huffman'])} | "
                f"{r['pruned']:.1f}x | {r['quantized']:.1f}x | {r['huffman']:.1f}x |"
            )
        total = self.stage_bytes(True)
        rows.append(
            f"\nFile `{self.path}`: {self.file_bytes} bytes ({_ratio(total['dense'], self.file_bytes):.1f}x vs dense float32), "
            f"of which {self.file_overhead_bytes} bytes prefix, header and checksum; "
            f"{'Huffman' if self.huffman else 'fixed-width'} streams. "
            f"Unquantized tensors: {self.n_extras} ({self.extras_stored_bytes} bytes stored)."
        )
        return "\n".join(rows) + "\n"


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("inf")


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _kb(nbytes: float) -> str:
    kb = nbytes / 1024
    return f"{kb:.2f}" if kb < 10 else f"{kb:.1f}"
