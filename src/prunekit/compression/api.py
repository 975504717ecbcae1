"""Compress a model to a packed file and back: the glue between quantization, codec and container."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import ValidationError
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit._version import __version__
from prunekit._io import write_bytes
from prunekit.compression import packed
from prunekit.compression._tensors import effective_state
from prunekit.compression.codec import decode_layer, decode_raw, encode_layer, encode_raw
from prunekit.compression.quantize import QuantizationResult, share_weights
from prunekit.compression.report import CompressionReport
from prunekit.compression.schema import FORMAT_NAME, check_header, check_writable
from prunekit.compression.spec import CompressionConfig
from prunekit.errors import CheckpointError, ConfigError, StructureError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass
class CompressedModel:
    """The decoded content of a compressed file."""

    quantization: QuantizationResult  # quantized layers (codebooks, indices, masks)
    extras: dict[str, Tensor]  # unquantized tensors
    order: list[str]  # state_dict key order of the source model
    metadata: dict[str, Any]  # format/version info, spec, per-layer info, user metadata

    def state_dict(self) -> dict[str, Tensor]:
        """Every tensor under its plain name, in the source model's order."""
        layers = self.quantization.layers
        return {name: layers[name].dense() if name in layers else self.extras[name] for name in self.order}


def compress_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    spec: CompressionConfig | Mapping | None = None,
    quantization: QuantizationResult | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> CompressionReport:
    """Write ``model`` to a packed Deep Compression file at ``path`` (atomically); return its accounting.

    Without ``quantization``, k-means runs on the model's current weights (the model is not
    modified; a model whose weights are already shared, e.g. after :func:`share_weights` or
    fine-tuning, is re-encoded losslessly). With ``quantization``, its records are stored and the
    model's weights must equal them. ``spec`` defaults to the quantization's spec. Parametrized
    tensors (masks, attached weight sharing) are stored by their current values under plain names.
    ``metadata`` is any JSON-serialisable mapping, returned by :func:`decompress_file`.
    """
    if spec is None and quantization is not None:
        spec = quantization.spec
    spec = CompressionConfig.parse(spec)  # type: ignore[arg-type]
    tensors = effective_state(model)
    check_writable(tensors)
    if quantization is None:
        quantization = share_weights(model, spec, apply=False)
    else:
        _check_matches(quantization, tensors)
    entries, extras, sections, accounts = [], [], [], []
    extras_dense = extras_stored = 0
    for name, tensor in tensors.items():
        layer = quantization.layers.get(name)
        if layer is not None:
            entry, secs, account = encode_layer(layer, spec.index_bits_for(layer.kind), spec.huffman,
                                                  index_coding=spec.index_coding, codebook_dtype=spec.codebook_dtype)
            entries.append(entry)
            sections += secs
            accounts.append(account)
            continue
        stored = torch.float16 if spec.extras_precision == "float16" and tensor.is_floating_point() else None
        try:
            entry, blob = encode_raw(name, tensor, stored)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from exc
        extras.append(entry)
        sections.append((entry["section"], blob))
        extras_dense += tensor.numel() * (4 if tensor.is_floating_point() else tensor.element_size())
        extras_stored += len(blob)
    header = {
        "format": FORMAT_NAME,
        "prunekit_version": __version__,
        "spec": spec.model_dump(mode="json"),
        "order": list(tensors),
        "layers": entries,
        "extras": extras,
        "metadata": dict(metadata or {}),
    }
    try:
        data = packed.pack(header, sections)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot write {path}: {exc} (metadata must be JSON-serialisable, without NaN, and small)") from exc
    write_bytes(path, data)
    report = CompressionReport(
        path=str(path),
        layers=accounts,
        extras_dense_bytes=extras_dense,
        extras_stored_bytes=extras_stored,
        n_extras=len(extras),
        file_bytes=len(data),
        file_overhead_bytes=len(data) - sum(len(b) for _, b in sections),
        huffman=spec.huffman,
        format_version=packed.FORMAT_VERSION,
    )
    log.info("wrote %s: %d bytes, %.1fx smaller than dense float32", path, len(data), report.ratios()["file"])
    return report


def read_compressed(path: str | os.PathLike[str]) -> CompressedModel:
    """Read and check a compressed file; raises :class:`CheckpointError` if it is not intact."""
    target = Path(path)
    if not target.is_file():
        raise CheckpointError(f"no such compressed file: {target}")
    return decode_compressed(target.read_bytes(), source=str(target))


def decode_compressed(data: bytes, source: str = "<bytes>") -> CompressedModel:
    """:func:`read_compressed` on an in-memory file image."""
    header, sections = packed.unpack(data, source=source)
    check_header(header, sections, source)
    try:
        spec = CompressionConfig.model_validate(header["spec"])
    except ValidationError as exc:
        raise CheckpointError(f"{source}: header: spec is not a valid compression spec ({exc}); re-create the file") from exc
    layers = {e["name"]: _decode(decode_layer, e, sections, source) for e in header["layers"]}
    extras = {e["name"]: _decode(decode_raw, e, sections, source) for e in header["extras"]}
    meta = {
        "format_version": packed.FORMAT_VERSION,
        "prunekit_version": header["prunekit_version"],
        "spec": header["spec"],
        "layers": {e["name"]: {k: e[k] for k in ("kind", "shape", "dtype", "bits", "index_bits", "n_clusters", "nnz", "n_fillers")} for e in header["layers"]},
        "metadata": header["metadata"],
    }
    return CompressedModel(QuantizationResult(layers, spec), extras, list(header["order"]), meta)


def _decode(decode: Callable[[dict[str, Any], dict[str, bytes]], _T], entry: dict[str, Any], sections: dict[str, bytes], source: str) -> _T:
    """``decode(entry, sections)``, its errors as :class:`CheckpointError` naming the file and tensor."""
    try:
        return decode(entry, sections)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: tensor {entry['name']!r}: {exc}; the file is inconsistent: re-create it") from exc


def decompress_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(state_dict, metadata)`` from a compressed file; shared weights come back bit-identical."""
    content = read_compressed(path)
    return content.state_dict(), content.metadata


def load_compressed_into(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> dict[str, Any]:
    """Load a compressed file into a plain (unparametrized) ``model`` in place; returns the metadata."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise StructureError(
                f"module {name or '(root)'!r} is parametrized (mask or weight sharing attached); "
                "strip it before loading a compressed file"
            )
    state, meta = decompress_file(path)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit this model: {exc}") from exc
    return meta


def _check_matches(quantization: QuantizationResult, tensors: Mapping[str, Tensor]) -> None:
    for name, layer in quantization.layers.items():
        if name not in tensors:
            raise ConfigError(f"quantization record {name!r} names no tensor of the model")
        current = tensors[name].to("cpu")
        if current.shape != torch.Size(layer.shape) or not torch.equal(current, layer.dense()):
            raise ConfigError(
                f"{name}: the model's weight differs from its quantization record (weights changed after "
                "share_weights?); pass quantization=None to re-derive codebooks from the current weights"
            )

