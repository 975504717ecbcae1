"""Per-tensor encoding: a :class:`QuantizedLayer` or a raw tensor <-> header entry + byte sections.

A quantized layer is stored as four or five sections:

- ``<name>:codebook``  float32 little-endian, one per cluster;
- ``<name>:weights``   its entry symbols (codebook index, or the filler symbol), Huffman- or fixed-coded;
- ``<name>:gaps``      its relative indices, Huffman- or fixed-coded;
- ``<name>:weights.lengths`` / ``<name>:gaps.lengths``  uint8 canonical Huffman code lengths
  (Huffman coding only), one per symbol up to the last symbol with a code.

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
from prunekit.compression.sparse_index import decode_entries, encode_entries

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


def encode_layer(layer: QuantizedLayer, index_bits: int, huffman: bool) -> tuple[dict[str, Any], list[tuple[str, bytes]], LayerAccount]:
    """Header entry, sections and byte accounting for one quantized layer."""
    k = layer.n_clusters
    entries = encode_entries(layer.positions().numpy(), layer.indices.long().numpy(), index_bits, k)
    alphabet = k + (1 if entries.n_fillers else 0)
    width = max(1, math.ceil(math.log2(alphabet))) if alphabet > 1 else 1
    w_freq = np.bincount(entries.symbols, minlength=k + 1)
    g_freq = np.bincount(entries.gaps, minlength=1 << index_bits)
    w_code = HuffmanCode.from_frequencies(w_freq)
    g_code = HuffmanCode.from_frequencies(g_freq)
    key = layer.name
    codebook = layer.codebook.numpy().astype("<f4").tobytes()
    sections: list[tuple[str, bytes]] = [(f"{key}:codebook", codebook)]
    streams: dict[str, Any] = {}
    for label, symbols, code, fixed in (("weights", entries.symbols, w_code, width), ("gaps", entries.gaps, g_code, index_bits)):
        if huffman:
            data, nbits = code.encode(symbols)
            lengths = _trim(code.lengths).tobytes()
            sections += [(f"{key}:{label}.lengths", lengths), (f"{key}:{label}", data)]
            streams[label] = {"coding": "huffman", "nbits": nbits, "lengths": f"{key}:{label}.lengths", "data": f"{key}:{label}"}
        else:
            data, nbits = pack_fixed(symbols, fixed)
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
        "n_entries": entries.n_entries,
        "n_fillers": entries.n_fillers,
        "codebook": f"{key}:codebook",
        "weights": streams["weights"],
        "gaps": streams["gaps"],
    }
    account = LayerAccount(
        name=layer.name,
        kind=layer.kind,
        shape=tuple(layer.shape),
        numel=layer.numel,
        nnz=layer.nnz,
        bits=layer.bits,
        n_clusters=k,
        index_bits=index_bits,
        n_entries=entries.n_entries,
        n_fillers=entries.n_fillers,
        weight_width=width,
        weight_bits_huffman=w_code.encoded_bits(w_freq),
        position_bits_huffman=g_code.encoded_bits(g_freq),
        code_table_bytes=len(_trim(w_code.lengths)) + len(_trim(g_code.lengths)),
        stored_bytes=sum(len(b) for _, b in sections),
    )
    return entry, sections, account


def decode_layer(entry: dict[str, Any], sections: dict[str, bytes]) -> QuantizedLayer:
    """Inverse of :func:`encode_layer` for an entry that passed :func:`~prunekit.compression.schema.check_header`.

    Raises ``ValueError`` when the streams are inconsistent with each other or with the entry.
    """
    shape = tuple(entry["shape"])
    numel = math.prod(shape)
    k = entry["n_clusters"]
    codebook = torch.from_numpy(np.frombuffer(sections[entry["codebook"]], dtype="<f4").astype(np.float32))
    symbols = _decode_stream(entry["weights"], sections, entry["n_entries"])
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
        code = HuffmanCode(np.frombuffer(sections[info["lengths"]], dtype=np.uint8).copy())
        return code.decode(data, count, info["nbits"])
    return unpack_fixed(data, count, info["width"])


def _trim(lengths: np.ndarray) -> np.ndarray:
    """Code lengths up to the last symbol that has a code."""
    nz = np.flatnonzero(lengths)
    return np.asarray(lengths[: int(nz[-1]) + 1] if nz.size else lengths[:0], dtype=np.uint8)
