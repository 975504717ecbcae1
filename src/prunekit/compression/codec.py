"""Per-tensor encoding: a :class:`QuantizedLayer` or a raw tensor <-> header entry + byte sections.

A quantized layer is stored as four or five sections:

- ``<name>:codebook``  float32 little-endian, one per cluster;
- ``<name>:weights``   its entry symbols (codebook index, or the filler symbol), Huffman- or fixed-coded;
- ``<name>:gaps``      its relative indices, Huffman- or fixed-coded;
- ``<name>:weights.lengths`` / ``<name>:gaps.lengths``  uint8 canonical Huffman code lengths
  (Huffman coding only), one per symbol up to the last symbol with a code (compact layers: 4 bits
  each when no code is longer than 15 bits, with ``lengths_width`` and ``lengths_count``);
- ``<name>:support``  (``index_coding: compact`` only) bit flags of the rows, then the columns,
  that hold a nonzero (see :class:`~prunekit.compression.sparse_index.CompactEntries`).

With ``index_coding: fillers`` (the paper's format, and what files without the field hold) the
weight stream holds one symbol per entry, filler entries included; with ``compact`` it holds one
per nonzero and the gap stream carries escape symbols instead. ``codebook_dtype`` (default
float32) may be float16: the centroids are then rounded, which the decoded weights reflect.

The per-layer byte accounting (:class:`LayerAccount`) is computed here, while the streams are built.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunekit.compression.bitpack import pack_fixed, unpack_fixed
from prunekit.compression.huffman import HuffmanCode
from prunekit.compression.quantize import QuantizedLayer
from prunekit.compression.report import LayerAccount
from prunekit.compression.sparse_index import count_fillers, decode_compact, decode_entries, encode_compact, encode_entries, matrix_view

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise ValueError(f"cannot store tensors of dtype {dtype}; supported: {', '.join(DTYPES)}") from None


def encode_layer(layer: QuantizedLayer, index_bits: int, huffman: bool, *, index_coding: str = "fillers",
                 codebook_dtype: str = "float32") -> tuple[dict[str, Any], list[tuple[str, bytes]], LayerAccount]:
    """Header entry, sections and byte accounting for one quantized layer."""
    k = layer.n_clusters
    key = layer.name
    positions, indices = layer.positions().numpy(), layer.indices.long().numpy()
    if index_coding == "compact":
        compact = encode_compact(positions, tuple(layer.shape), index_bits)
        symbols, gaps, n_stored_fillers = indices.astype(np.int64), compact.gaps, compact.n_escapes
        w_alphabet, g_alphabet = k, (1 << index_bits) + 1
        support = np.packbits(compact.support).tobytes()
        n_fillers = count_fillers(positions, index_bits)  # the paper's entries, for the P and P+Q stages
    else:
        entries = encode_entries(positions, indices, index_bits, k)
        symbols, gaps, n_stored_fillers = entries.symbols, entries.gaps, entries.n_fillers
        w_alphabet, g_alphabet = k + (1 if entries.n_fillers else 0), 1 << index_bits
        support, n_fillers = None, entries.n_fillers
    width = _width(k + (1 if n_fillers else 0))
    w_freq = np.bincount(symbols, minlength=k + 1)
    g_freq = np.bincount(gaps, minlength=g_alphabet)
    w_code = HuffmanCode.from_frequencies(w_freq)
    g_code = HuffmanCode.from_frequencies(g_freq)
    codebook = layer.codebook.numpy().astype("<f2" if codebook_dtype == "float16" else "<f4").tobytes()
    sections: list[tuple[str, bytes]] = [(f"{key}:codebook", codebook)]
    if support is not None:
        sections.append((f"{key}:support", support))
    streams: dict[str, Any] = {}
    table_bytes = 0
    for label, stream, code, fixed in (("weights", symbols, w_code, _width(w_alphabet)), ("gaps", gaps, g_code, _width(g_alphabet))):
        if huffman:
            data, nbits = code.encode(stream)
            table = _trim(code.lengths)
            streams[label] = {"coding": "huffman", "nbits": nbits, "lengths": f"{key}:{label}.lengths", "data": f"{key}:{label}"}
            lengths = table.tobytes()
            if support is not None and (table.size == 0 or int(table.max()) <= 15):  # compact: 4-bit code lengths
                lengths = pack_fixed(table, 4)[0]
                streams[label].update(lengths_width=4, lengths_count=int(table.size))
            sections += [(f"{key}:{label}.lengths", lengths), (f"{key}:{label}", data)]
            table_bytes += len(lengths)
        else:
            data, nbits = pack_fixed(stream, fixed)
            sections.append((f"{key}:{label}", data))
            streams[label] = {"coding": "fixed", "nbits": nbits, "width": fixed, "data": f"{key}:{label}"}
    entry = {
        "name": layer.name,
        "kind": layer.kind,
        "shape": list(layer.shape),
        "dtype": dtype_name(layer.dtype),
        "bits": layer.bits,
        "index_bits": index_bits,
        "n_clusters": k,
        "nnz": layer.nnz,
        "n_entries": int(symbols.size),
        "n_fillers": n_stored_fillers,
        "codebook": f"{key}:codebook",
        "weights": streams["weights"],
        "gaps": streams["gaps"],
    }
    if codebook_dtype != "float32":
        entry["codebook_dtype"] = codebook_dtype
    if support is not None:
        entry.update(index_coding="compact", support=f"{key}:support")
    account = LayerAccount(
        name=layer.name,
        kind=layer.kind,
        shape=tuple(layer.shape),
        numel=layer.numel,
        nnz=layer.nnz,
        bits=layer.bits,
        n_clusters=k,
        index_bits=index_bits,
        n_entries=layer.nnz + n_fillers,
        n_fillers=n_fillers,
        weight_width=width,
        weight_bits_huffman=w_code.encoded_bits(w_freq),
        position_bits_huffman=g_code.encoded_bits(g_freq),
        code_table_bytes=table_bytes if huffman else len(_trim(w_code.lengths)) + len(_trim(g_code.lengths)),
        stored_bytes=sum(len(b) for _, b in sections),
        codebook_bytes=len(codebook),
        support_bytes=len(support) if support is not None else 0,
    )
    return entry, sections, account


def decode_layer(entry: dict[str, Any], sections: dict[str, bytes]) -> QuantizedLayer:
    """Inverse of :func:`encode_layer` for an entry that passed :func:`~prunekit.compression.schema.check_header`.

    Raises ``ValueError`` when the streams are inconsistent with each other or with the entry.
    """
    shape = tuple(entry["shape"])
    numel = math.prod(shape)
    k = entry["n_clusters"]
    stored = "<f2" if entry.get("codebook_dtype") == "float16" else "<f4"
    codebook = torch.from_numpy(np.frombuffer(sections[entry["codebook"]], dtype=stored).astype(np.float32))
    symbols = _decode_stream(entry["weights"], sections, entry["n_entries"])
    if entry.get("index_coding") == "compact":
        gaps = _decode_stream(entry["gaps"], sections, entry["nnz"] + entry["n_fillers"])
        support = np.unpackbits(np.frombuffer(sections[entry["support"]], dtype=np.uint8))[: sum(matrix_view(shape))]
        positions, indices = decode_compact(gaps, support, shape, entry["index_bits"]), symbols
        if positions.size != symbols.size:
            raise ValueError(f"the gap stream holds {positions.size} entries, the weight stream {symbols.size}")
        if indices.size and indices.max() >= k:
            raise ValueError(f"symbol outside [0, {k})")
    else:
        gaps = _decode_stream(entry["gaps"], sections, entry["n_entries"])
        positions, indices = decode_entries(gaps, symbols, entry["index_bits"], k, numel)
    if positions.size != entry["nnz"]:
        raise ValueError(f"decoded {positions.size} nonzeros, header says {entry['nnz']}")
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.from_numpy(positions)] = True
    index_dtype = torch.uint8 if k <= 256 else torch.uint16
    return QuantizedLayer(
        name=entry["name"],
        kind=entry["kind"],
        shape=shape,
        dtype=DTYPES[entry["dtype"]],
        bits=entry["bits"],
        codebook=codebook,
        indices=torch.from_numpy(indices).to(index_dtype),
        mask=mask.reshape(shape),
    )


def encode_raw(name: str, tensor: Tensor, stored: torch.dtype | None = None) -> tuple[dict[str, Any], bytes]:
    """Header entry and little-endian bytes of an unquantized tensor (optionally cast to ``stored``)."""
    t = tensor.detach().to("cpu")
    target = stored if stored is not None else t.dtype
    raw = t.to(target).contiguous().reshape(-1)
    data = raw.view(torch.uint8).numpy().tobytes() if raw.numel() else b""
    entry = {"name": name, "shape": list(t.shape), "dtype": dtype_name(t.dtype), "stored_dtype": dtype_name(target), "section": f"{name}:raw"}
    return entry, data


def decode_raw(entry: dict[str, Any], sections: dict[str, bytes]) -> Tensor:
    """Inverse of :func:`encode_raw` (cast back to the tensor's original dtype), for a checked entry."""
    shape = tuple(entry["shape"])
    stored = DTYPES[entry["stored_dtype"]]
    dtype = DTYPES[entry["dtype"]]
    data = sections[entry["section"]]
    if math.prod(shape) == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if stored == torch.bool and bool((raw > 1).any()):
        raise ValueError("a bool tensor holds bytes other than 0 and 1")
    return raw.view(stored).reshape(shape).to(dtype)


def _decode_stream(info: dict[str, Any], sections: dict[str, bytes], count: int) -> np.ndarray:
    data = sections[info["data"]]
    if info["coding"] == "huffman":
        raw = sections[info["lengths"]]
        if info.get("lengths_width") == 4:
            table = unpack_fixed(raw, info["lengths_count"], 4).astype(np.uint8)
        else:
            table = np.frombuffer(raw, dtype=np.uint8).copy()
        code = HuffmanCode(table)
        return code.decode(data, count, info["nbits"])
    return unpack_fixed(data, count, info["width"])


def _width(alphabet: int) -> int:
    """Bits of a fixed-width code for ``alphabet`` symbols (at least 1)."""
    return max(1, math.ceil(math.log2(alphabet))) if alphabet > 1 else 1


def _trim(lengths: np.ndarray) -> np.ndarray:
    """Code lengths up to the last symbol that has a code."""
    nz = np.flatnonzero(lengths)
    return np.asarray(lengths[: int(nz[-1]) + 1] if nz.size else lengths[:0], dtype=np.uint8)
