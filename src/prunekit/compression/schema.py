"""Checks of a compressed file's JSON header, made before anything is decoded or allocated.

Checksums prove that a file holds what its writer wrote, not that the writer was prunekit: a
header can still declare an ``index_bits`` of 10**12, a shape of 10**15 elements or a stream of
more bits than its section holds. :func:`check_header` checks every field's type (``True`` and
``"8"`` are not integers), range, and consistency with the section sizes, so that decoding then
allocates in proportion to the file, plus the declared tensor sizes, which :data:`MAX_NUMEL` bounds
(a sparse layer may rightly be far larger than its payload: zeros after the last entry are free).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import torch
from torch import Tensor

from prunekit.compression.bitpack import MAX_CODE_BITS
from prunekit.compression.codec import DTYPES
from prunekit.compression.packed import describe
from prunekit.compression.sparse_index import matrix_view
from prunekit.compression.spec import MAX_BITS, LayerKind
from prunekit.errors import CheckpointError, ConfigError

FORMAT_NAME = "prunekit-compressed"
#: Most tensor elements one file may hold, all tensors together (the writer refuses more).
MAX_NUMEL = 1 << 32
MAX_NDIM = 64
MAX_INDEX_BITS = 32  # as sparse_index.encode_entries
MAX_WIDTH = 32  # bits per value of a fixed-width stream

_TOP_KEYS = frozenset({"format", "prunekit_version", "spec", "order", "layers", "extras", "metadata", "sections"})
_LAYER_KEYS = frozenset(
    {"name", "kind", "shape", "dtype", "bits", "index_bits", "n_clusters", "nnz", "n_entries", "n_fillers", "codebook", "weights", "gaps"}
)
#: Layer fields of files written with a non-default ``index_coding`` / ``codebook_dtype`` (absent: fillers, float32).
_OPTIONAL_LAYER_KEYS = frozenset({"index_coding", "support", "codebook_dtype"})
_CODEBOOK_ITEMSIZE = {"float32": 4, "float16": 2}
_RAW_KEYS = frozenset({"name", "shape", "dtype", "stored_dtype", "section"})
_STREAM_KEYS = {"huffman": frozenset({"coding", "nbits", "lengths", "data"}), "fixed": frozenset({"coding", "nbits", "width", "data"})}
_ITEMSIZE = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in DTYPES.items()}
_KIND_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "a JSON object"}


@dataclass(frozen=True)
class _Where:
    """The file and the part of its header a problem is in."""

    source: str
    part: str

    def error(self, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {self.part}: {problem}; the header is malformed: re-create the file")


def check_header(header: dict[str, Any], sections: Mapping[str, bytes], source: str) -> None:
    """Raise :class:`CheckpointError` unless every field of ``header`` is well formed and fits ``sections``."""
    where = _Where(source, "header")
    if header.get("format") != FORMAT_NAME:
        raise where.error(f"format is {describe(header.get('format'))}, expected {FORMAT_NAME!r} (not a prunekit compressed model)")
    _check_keys(header, _TOP_KEYS, where)
    for key, kind in (("prunekit_version", str), ("spec", dict), ("metadata", dict), ("order", list), ("layers", list), ("extras", list)):
        _field(header, key, kind, where)
    numels, owners = _check_tensors(header, sections, source)
    order = header["order"]
    if any(type(n) is not str for n in order) or len(set(order)) != len(order) or set(order) != numels.keys():
        raise where.error(f"order ({len(order)} entries) must list each of the {len(numels)} stored tensors exactly once")
    total = sum(numels.values())
    if total > MAX_NUMEL:
        raise where.error(f"its tensors hold {total} elements, more than the {MAX_NUMEL} a file may hold")
    unused = [name for name in sections if name not in owners]
    if unused:
        raise where.error(f"section {describe(unused[0])} belongs to no tensor")


def check_writable(tensors: Mapping[str, Tensor]) -> None:
    """Raise :class:`ConfigError` when ``tensors`` exceed what a file may hold (the limits the reader checks)."""
    for name, tensor in tensors.items():
        if tensor.dim() > MAX_NDIM or any(d > MAX_NUMEL for d in tensor.shape):
            raise ConfigError(
                f"{name} has shape {tuple(tensor.shape)}; a compressed file holds at most {MAX_NDIM} dimensions of at most {MAX_NUMEL}"
            )
    total = sum(t.numel() for t in tensors.values())
    if total > MAX_NUMEL:
        raise ConfigError(f"the model holds {total} tensor elements, more than the {MAX_NUMEL} a compressed file may hold")


def _check_tensors(header: dict[str, Any], sections: Mapping[str, bytes], source: str) -> tuple[dict[str, int], dict[str, str]]:
    """``({tensor name: numel}, {section name: tensor name})`` over the ``layers`` and ``extras`` entries."""
    numels: dict[str, int] = {}
    owners: dict[str, str] = {}
    for key, keys, check in (("layers", _LAYER_KEYS | _OPTIONAL_LAYER_KEYS, _check_layer), ("extras", _RAW_KEYS, _check_raw)):
        for i, entry in enumerate(header[key]):
            where = _Where(source, f"{key}[{i}]")
            if type(entry) is not dict:
                raise where.error(f"must be a JSON object, got {describe(entry)}")
            name = _field(entry, "name", str, where)
            where = _Where(source, f"tensor {describe(name)}")
            if name in numels:
                raise where.error("is stored twice (tensor names must be unique)")
            _check_keys(entry, keys, where)
            numels[name], used = check(entry, sections, where)
            for section in used:
                if section in owners:
                    raise where.error(f"section {section!r} is already used by tensor {describe(owners[section])}")
                owners[section] = name
    return numels, owners


def _check_layer(entry: dict[str, Any], sections: Mapping[str, bytes], where: _Where) -> tuple[int, list[str]]:
    """A quantized layer's fields; returns ``(numel, sections used)``."""
    _choice(entry, "kind", get_args(LayerKind), where)
    numel = _shape(entry, where)
    _choice(entry, "dtype", tuple(DTYPES), where)
    _int(entry, "bits", 1, MAX_BITS, where)
    index_bits = _int(entry, "index_bits", 1, MAX_INDEX_BITS, where)
    k = _int(entry, "n_clusters", 0, 1 << MAX_BITS, where)
    nnz = _int(entry, "nnz", 0, numel, where)
    fillers = _int(entry, "n_fillers", 0, (numel - nnz) >> index_bits, where)
    n_entries = _field(entry, "n_entries", int, where)
    compact = _choice(entry, "index_coding", ("compact",), where) == "compact" if "index_coding" in entry else False
    if "support" in entry and not compact:
        raise where.error("has a support section but no index_coding 'compact'")
    if compact and n_entries != nnz:
        raise where.error(f"n_entries {describe(n_entries)} is not nnz = {nnz} (compact index coding)")
    if not compact and n_entries != nnz + fillers:
        raise where.error(f"n_entries {describe(n_entries)} is not nnz + n_fillers = {nnz + fillers}")
    dtype = _choice(entry, "codebook_dtype", tuple(_CODEBOOK_ITEMSIZE), where) if "codebook_dtype" in entry else "float32"
    codebook = _section(entry, "codebook", sections, where)
    need = _CODEBOOK_ITEMSIZE[dtype] * k
    if len(sections[codebook]) != need:
        raise where.error(f"codebook section {codebook!r} holds {len(sections[codebook])} bytes, n_clusters {k} needs {need}")
    used = [codebook]
    if compact:
        support = _section(entry, "support", sections, where)
        rows, cols = matrix_view(tuple(entry["shape"]))
        if len(sections[support]) != (rows + cols + 7) // 8:
            raise where.error(f"support section {support!r} holds {len(sections[support])} bytes, {rows} rows + {cols} columns need {(rows + cols + 7) // 8}")
        used.append(support)
        weights = _check_stream(entry, "weights", nnz, k, sections, where, compact=True)
        gaps = _check_stream(entry, "gaps", nnz + fillers, (1 << index_bits) + 1, sections, where, compact=True)
    else:
        weights = _check_stream(entry, "weights", n_entries, k + 1, sections, where)
        gaps = _check_stream(entry, "gaps", n_entries, 1 << index_bits, sections, where)
    return numel, [*used, *weights, *gaps]


def _check_stream(
    entry: dict[str, Any], key: str, count: int, alphabet: int, sections: Mapping[str, bytes], where: _Where, compact: bool = False
) -> list[str]:
    """A stream descriptor of ``count`` symbols below ``alphabet``; returns the sections it uses.
    Huffman streams of compact layers may store 4-bit code lengths (``lengths_width``, ``lengths_count``)."""
    info = _field(entry, key, dict, where)
    coding = _choice(info, "coding", tuple(_STREAM_KEYS), where, f"{key}.coding")
    nibbles = compact and coding == "huffman" and "lengths_width" in info
    _check_keys(info, _STREAM_KEYS[coding] | ({"lengths_width", "lengths_count"} if nibbles else set()), where, f"{key}.")
    data = _section(info, "data", sections, where, f"{key}.data")
    size = len(sections[data])
    nbits = _int(info, "nbits", 0, 8 * size, where, f"{key}.nbits")
    if (nbits + 7) // 8 != size:
        raise where.error(f"{key}.nbits {nbits} needs {(nbits + 7) // 8} bytes, its section {data!r} holds {size}")
    if coding == "fixed":
        width = _int(info, "width", 1, MAX_WIDTH, where, f"{key}.width")
        if nbits != count * width:
            raise where.error(f"{key}.nbits {nbits} is not n_entries x width = {count} x {width}")
        return [data]
    if not count <= nbits <= count * MAX_CODE_BITS:
        raise where.error(f"{key}.nbits {nbits} cannot hold n_entries = {count} codes of 1..{MAX_CODE_BITS} bits")
    lengths = _section(info, "lengths", sections, where, f"{key}.lengths")
    table = np.frombuffer(sections[lengths], dtype=np.uint8)
    if nibbles:
        _int(info, "lengths_width", 4, 4, where, f"{key}.lengths_width")
        n = _int(info, "lengths_count", 0, alphabet, where, f"{key}.lengths_count")
        if len(table) != (n + 1) // 2:
            raise where.error(f"{key}.lengths section {lengths!r} holds {len(table)} bytes, {n} 4-bit code lengths need {(n + 1) // 2}")
        return [data, lengths]
    if table.size > alphabet:
        raise where.error(f"{key}.lengths section {lengths!r} has {table.size} code lengths for {alphabet} symbols")
    if table.size and int(table.max()) > MAX_CODE_BITS:
        raise where.error(f"{key}.lengths section {lengths!r} has a {int(table.max())}-bit code (at most {MAX_CODE_BITS})")
    return [data, lengths]


def _check_raw(entry: dict[str, Any], sections: Mapping[str, bytes], where: _Where) -> tuple[int, list[str]]:
    """An unquantized tensor's fields; returns ``(numel, sections used)``."""
    numel = _shape(entry, where)
    dtype = _choice(entry, "dtype", tuple(DTYPES), where)
    stored = _choice(entry, "stored_dtype", tuple(DTYPES), where)
    if stored != dtype and not (stored == "float16" and DTYPES[dtype].is_floating_point):
        raise where.error(f"stored_dtype {stored} cannot hold dtype {dtype} (only floating tensors may be stored as float16)")
    section = _section(entry, "section", sections, where)
    need = numel * _ITEMSIZE[stored]
    if len(sections[section]) != need:
        raise where.error(f"section {section!r} holds {len(sections[section])} bytes, {numel} {stored} elements need {need}")
    return numel, [section]


def _check_keys(obj: dict[str, Any], keys: frozenset[str], where: _Where, prefix: str = "") -> None:
    """No fields but ``keys`` (each required one is checked where it is read)."""
    unknown = [k for k in obj if k not in keys]
    if unknown:
        raise where.error(f"unknown field {describe(prefix + unknown[0])}")


def _field(obj: dict[str, Any], key: str, kind: type, where: _Where, label: str | None = None) -> Any:
    """``obj[key]``, which must be present and exactly of JSON type ``kind`` (a bool is not an int)."""
    if key not in obj:
        raise where.error(f"missing field {label or key!r}")
    value = obj[key]
    if type(value) is not kind:
        raise where.error(f"{label or key} must be {_KIND_NAMES[kind]}, got {describe(value)}")
    return value


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, where: _Where, label: str | None = None) -> int:
    value = _field(obj, key, int, where, label)
    if not lo <= value <= hi:
        raise where.error(f"{label or key} {describe(value)} is out of range ({lo}..{hi})")
    return value


def _choice(obj: dict[str, Any], key: str, options: tuple[str, ...], where: _Where, label: str | None = None) -> str:
    value = _field(obj, key, str, where, label)
    if value not in options:
        raise where.error(f"{label or key} {describe(value)} is not one of {', '.join(options)}")
    return value


def _section(obj: dict[str, Any], key: str, sections: Mapping[str, bytes], where: _Where, label: str | None = None) -> str:
    name = _field(obj, key, str, where, label)
    if name not in sections:
        raise where.error(f"{label or key} names section {describe(name)}, which the file does not hold")
    return name


def _shape(entry: dict[str, Any], where: _Where) -> int:
    """The entry's element count; its shape must be at most :data:`MAX_NDIM` integers in ``0..MAX_NUMEL``."""
    shape = _field(entry, "shape", list, where)
    if len(shape) > MAX_NDIM or any(type(d) is not int or not 0 <= d <= MAX_NUMEL for d in shape):
        raise where.error(f"shape {describe(shape)} must be at most {MAX_NDIM} integers in 0..{MAX_NUMEL}")
    numel = math.prod(shape)
    if numel > MAX_NUMEL:
        raise where.error(f"shape {describe(shape)} holds {numel} elements, more than the {MAX_NUMEL} a file may hold")
    return numel
