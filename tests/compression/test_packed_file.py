"""The packed file: exact round trips, corruption/truncation/version checks, accounting."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.compression import (
    FORMAT_VERSION,
    CompressionConfig,
    attach_weight_sharing,
    compress_model,
    decode_compressed,
    decompress_file,
    load_compressed_into,
    read_compressed,
    share_weights,
)
from prunekit._version import __version__
from prunekit.compression import packed
from prunekit.errors import CheckpointError, ConfigError, StructureError

from .helpers import TinyConvNet, TinyMLP, prune_, trained_bn_


def _assert_state_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("huffman", [True, False])
def test_decompression_is_bit_identical_to_the_in_memory_quantized_model(tmp_path, huffman):
    model = trained_bn_(prune_(TinyConvNet(), 0.8))
    spec = CompressionConfig(conv_bits=4, fc_bits=3, conv_index_bits=3, fc_index_bits=2, huffman=huffman)
    result = share_weights(model, spec)
    report = compress_model(model, tmp_path / "m.pkdc", quantization=result, metadata={"run": "t1"})
    state, meta = decompress_file(tmp_path / "m.pkdc")
    _assert_state_equal(state, model.state_dict())
    assert meta["metadata"] == {"run": "t1"} and meta["format_version"] == FORMAT_VERSION
    assert meta["prunekit_version"] == __version__
    assert meta["layers"]["classifier.weight"]["n_fillers"] > 0  # 2-bit gaps on an 80%-sparse fc layer
    assert report.file_bytes == (tmp_path / "m.pkdc").stat().st_size
    fresh = TinyConvNet()
    load_compressed_into(fresh, tmp_path / "m.pkdc")
    x = torch.randn(2, 3, 8, 8)
    model.eval(), fresh.eval()
    assert torch.equal(fresh(x), model(x))


def test_compress_without_quantization_leaves_model_alone_and_reencodes_losslessly(tmp_path):
    model = prune_(TinyMLP(), 0.5)
    before = copy.deepcopy(model.state_dict())
    compress_model(model, tmp_path / "a.pkdc")
    _assert_state_equal(model.state_dict(), before)
    quantized, _ = decompress_file(tmp_path / "a.pkdc")
    model.load_state_dict(quantized)
    compress_model(model, tmp_path / "b.pkdc")  # k-means on shared weights finds the same values
    assert (tmp_path / "a.pkdc").read_bytes() == (tmp_path / "b.pkdc").read_bytes()


def test_compress_reads_attached_weight_sharing_and_rejects_stale_records(tmp_path):
    model = prune_(TinyMLP(), 0.5)
    handle = attach_weight_sharing(model, CompressionConfig(fc_bits=3))
    with torch.no_grad():
        for cb in handle.codebooks():
            cb.mul_(1.5)  # "fine-tuned"
    compress_model(model, tmp_path / "m.pkdc", quantization=handle.result())
    state, _ = decompress_file(tmp_path / "m.pkdc")
    handle.strip()
    _assert_state_equal(state, model.state_dict())
    stale = share_weights(prune_(TinyMLP(), 0.5), apply=False)
    with pytest.raises(ConfigError, match="differs from its quantization record"):
        compress_model(model, tmp_path / "x.pkdc", quantization=stale)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    density=st.floats(0.0, 1.0),
    bits=st.integers(1, 9),
    index_bits=st.integers(1, 6),
    huffman=st.booleans(),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.float64]),
)
def test_random_sparse_tensors_round_trip_exactly(tmp_path, shape, density, bits, index_bits, huffman, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=gen).to(dtype)
    w[torch.rand(*shape, generator=gen) >= density] = 0
    layer = nn.Linear(1, 1)
    layer.weight = nn.Parameter(w)
    layer.bias = None
    spec = CompressionConfig(fc_bits=bits, fc_index_bits=index_bits, huffman=huffman)
    result = share_weights(layer, spec)
    compress_model(layer, tmp_path / "r.pkdc", quantization=result)
    content = read_compressed(tmp_path / "r.pkdc")
    got = content.quantization["weight"]
    assert torch.equal(got.dense(), layer.weight.detach()) and got.dense().dtype == dtype
    assert torch.equal(got.mask, w != 0) and torch.equal(got.codebook, result["weight"].codebook)


def test_16_bit_codebooks_round_trip(tmp_path):
    model = nn.Linear(300, 300)
    prune_(model, 0.2)
    result = share_weights(model, CompressionConfig(fc_bits=16, fc_index_bits=2))
    assert result["weight"].n_clusters > 65536 // 2
    compress_model(model, tmp_path / "w.pkdc", quantization=result)
    state, _ = decompress_file(tmp_path / "w.pkdc")
    assert torch.equal(state["weight"], model.weight.detach())


def test_empty_and_dense_layers_and_float16_extras(tmp_path):
    model = TinyMLP((6, 5, 3))
    with torch.no_grad():
        model[0].weight.zero_()
    compress_model(model, tmp_path / "e.pkdc", CompressionConfig(extras_precision="float16"))
    state, meta = decompress_file(tmp_path / "e.pkdc")
    assert meta["layers"]["0.weight"]["nnz"] == 0 and torch.equal(state["0.weight"], torch.zeros(5, 6))
    assert meta["layers"]["2.weight"]["nnz"] == 15
    assert state["0.bias"].dtype == torch.float32
    assert torch.equal(state["0.bias"], model[0].bias.detach().half().float())


def _small_file(tmp_path) -> bytes:
    torch.manual_seed(3)
    model = prune_(TinyMLP((6, 5, 3)), 0.5)
    compress_model(model, tmp_path / "s.pkdc", CompressionConfig(fc_bits=2, fc_index_bits=2))
    return (tmp_path / "s.pkdc").read_bytes()


def test_every_single_bit_flip_is_detected(tmp_path):
    data = _small_file(tmp_path)
    decode_compressed(data)  # intact
    buf = bytearray(data)
    for bit in range(len(data) * 8):
        buf[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CheckpointError):
            decode_compressed(bytes(buf))
        buf[bit // 8] ^= 1 << (bit % 8)


def test_sampled_bit_flips_on_a_larger_file_are_detected(tmp_path):
    model = trained_bn_(prune_(TinyConvNet(), 0.7))
    compress_model(model, tmp_path / "l.pkdc")
    data = (tmp_path / "l.pkdc").read_bytes()
    rng = random.Random(0)
    bits = rng.sample(range(len(data) * 8), min(3000, len(data) * 8))
    buf = bytearray(data)
    for bit in bits:
        buf[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CheckpointError):
            decode_compressed(bytes(buf))
        buf[bit // 8] ^= 1 << (bit % 8)


def test_damage_messages_name_the_part(tmp_path):
    data = bytearray(_small_file(tmp_path))
    data[-40] ^= 1  # last byte of the last section
    with pytest.raises(CheckpointError, match="damaged section"):
        decode_compressed(bytes(data))
    data = bytearray(_small_file(tmp_path))
    data[9] ^= 4  # header length field
    with pytest.raises(CheckpointError, match="fixed prefix"):
        decode_compressed(bytes(data))


def test_truncated_files_are_rejected_clearly(tmp_path):
    data = _small_file(tmp_path)
    for n in sorted({0, 2, 4, 10, 23, 24, 25, 100, len(data) // 2, len(data) - 32, len(data) - 1}):
        with pytest.raises(CheckpointError, match="truncated|not a prunekit"):
            decode_compressed(data[:n])
    with pytest.raises(CheckpointError, match=r"truncated: \d+ of \d+ bytes"):
        decode_compressed(data[:-1])
    with pytest.raises(CheckpointError, match="unexpected bytes"):
        decode_compressed(data + b"\0")
    (tmp_path / "t.pkdc").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        decompress_file(tmp_path / "t.pkdc")
    with pytest.raises(CheckpointError, match="no such compressed file"):
        decompress_file(tmp_path / "missing.pkdc")


def _with_version(data: bytes, version: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into("<H", buf, 4, version)
    struct.pack_into("<I", buf, 20, zlib.crc32(bytes(buf[:20])))
    body = bytes(buf[:-32])
    return body + hashlib.sha256(body).digest()


def test_newer_format_version_is_refused_with_upgrade_advice(tmp_path):
    data = _with_version(_small_file(tmp_path), FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError) as info:
        decode_compressed(data)
    msg = str(info.value)
    assert f"version {FORMAT_VERSION + 1}" in msg and f"up to {FORMAT_VERSION}" in msg and "Upgrade prunekit" in msg


def test_unknown_magic_is_not_a_prunekit_file(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"PK\x03\x04" + b"\0" * 100)  # a zip (torch.save) file
    with pytest.raises(CheckpointError, match="not a prunekit compressed file"):
        decompress_file(tmp_path / "x.pt")


def test_malformed_but_checksummed_header_is_rejected(tmp_path):
    header = {"format": "prunekit-compressed", "layers": [{"name": "w"}], "extras": [], "order": ["w"], "spec": {}}
    data = packed.pack(header, [])
    with pytest.raises(CheckpointError, match="malformed"):
        decode_compressed(data)


def test_load_into_parametrized_or_mismatched_model_is_refused(tmp_path):
    model = prune_(TinyMLP(), 0.5)
    compress_model(model, tmp_path / "m.pkdc")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_compressed_into(TinyMLP((20, 8, 10)), tmp_path / "m.pkdc")
    attached = TinyMLP()
    attach_weight_sharing(attached)
    with pytest.raises(StructureError, match="strip it"):
        load_compressed_into(attached, tmp_path / "m.pkdc")


def test_report_accounting(tmp_path):
    model = trained_bn_(prune_(TinyConvNet(), 0.9))
    spec = CompressionConfig(conv_bits=4, fc_bits=3, fc_index_bits=3)
    report = compress_model(model, tmp_path / "m.pkdc", spec)
    fc = next(a for a in report.layers if a.name == "classifier.weight")
    assert fc.numel == 2880 and fc.nnz == (model.classifier.weight != 0).sum().item()
    assert fc.n_entries == fc.nnz + fc.n_fillers
    assert fc.pruned_bits == fc.n_entries * (32 + 3)
    assert fc.weight_width == math.ceil(math.log2(fc.n_clusters + (fc.n_fillers > 0)))
    assert fc.quantized_bits == fc.n_entries * (fc.weight_width + 3) + 32 * fc.n_clusters
    assert fc.ratios()["pruned"] == pytest.approx(2880 * 32 / fc.pruned_bits)
    # the file is the Huffman stage plus byte padding of each stream plus the container overhead
    huff = report.stage_bytes()["huffman"]
    assert huff + report.file_overhead_bytes <= report.file_bytes <= huff + report.file_overhead_bytes + 2 * len(report.layers)
    assert report.n_extras == 7  # conv bias, 5 BatchNorm tensors, fc bias
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["total"]["ratios"]["file"] == pytest.approx(report.stage_bytes()["dense"] / report.file_bytes)
    md = report.to_markdown()
    assert "classifier.weight" in md and "P+Q+H" in md and md.count("\n|") >= 5
    np.testing.assert_array_less(0, [r for r in report.ratios().values()])


def test_spec_round_trips_through_the_header_with_override_order(tmp_path):
    model = prune_(TinyConvNet(), 0.5)
    spec = CompressionConfig(overrides={"features.*": 3, "features.0.*": 6}, huffman=False)
    compress_model(model, tmp_path / "m.pkdc", spec)
    content = read_compressed(tmp_path / "m.pkdc")
    assert content.quantization.spec == spec
    assert list(content.quantization.spec.overrides) == ["features.*", "features.0.*"]
    assert content.metadata["layers"]["features.0.weight"]["bits"] == 3  # first match wins


def test_version_1_files_stay_readable_and_version_2_headers_are_smaller(tmp_path):
    model = prune_(TinyMLP(), 0.5)
    compress_model(model, tmp_path / "m.pkdc")
    v2 = (tmp_path / "m.pkdc").read_bytes()
    header, sections = packed.unpack(v2)
    del header["sections"]
    v1 = packed.pack(header, list(sections.items()), version=1)
    assert struct.unpack_from("<H", v1, 4)[0] == 1 and struct.unpack_from("<H", v2, 4)[0] == FORMAT_VERSION == 2
    assert len(v2) < len(v1)
    a, b = decode_compressed(v1).state_dict(), decode_compressed(v2).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
