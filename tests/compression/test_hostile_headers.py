"""Packed files with valid checksums but hostile headers: every one is a quick CheckpointError."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunekit.compression import CompressionConfig, compress_model, decode_compressed
from prunekit.compression import packed
from prunekit.compression.schema import MAX_NUMEL
from prunekit.errors import CheckpointError, ConfigError

from .helpers import TinyMLP, prune_
from .hostile import HOSTILE_INTS, SOURCE, TIME_LIMIT_S, int_paths, outcome, removed, repack, replaced, split_file

Header = dict[str, Any]
L0 = ("layers", 0)  # the first quantized layer, "0.weight": shape [5, 6], 2-bit codebook and gaps
X0 = ("extras", 0)  # the first raw tensor, "0.bias": 5 float32


def _file(tmp_path_factory: pytest.TempPathFactory, huffman: bool) -> bytes:
    torch.manual_seed(3)
    model = prune_(TinyMLP((6, 5, 3)), 0.5)
    path = tmp_path_factory.mktemp("hostile") / "s.pkdc"
    compress_model(model, path, CompressionConfig(fc_bits=2, fc_index_bits=2, huffman=huffman))
    return path.read_bytes()


@pytest.fixture(scope="module")
def huffman_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _file(tmp_path_factory, huffman=True)


@pytest.fixture(scope="module")
def fixed_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _file(tmp_path_factory, huffman=False)


def assert_rejected(data: bytes, *fragments: str) -> None:
    """Assert ``data`` is refused with a CheckpointError naming the file and ``fragments``, in time."""
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        decode_compressed(data, source=SOURCE)
    assert time.perf_counter() - start < TIME_LIMIT_S
    message = str(info.value)
    assert message.startswith(SOURCE), message
    for fragment in fragments:
        assert fragment in message, message


def test_repack_reproduces_the_file_exactly(huffman_file, fixed_file):
    for data in (huffman_file, fixed_file):
        header, area, version = split_file(data)
        assert repack(header, area, version) == data
        decode_compressed(data)


LAYER_VALUES = [
    ("index_bits", 10**12, "index_bits 1000000000000 is out of range (1..32)"),
    ("index_bits", 2**70, "index_bits 1180591620717411303424 is out of range (1..32)"),
    ("index_bits", 0, "index_bits 0 is out of range"),
    ("index_bits", -1, "index_bits -1 is out of range"),
    ("index_bits", 33, "index_bits 33 is out of range"),
    ("index_bits", True, "index_bits must be an integer, got True"),
    ("index_bits", "8", "index_bits must be an integer, got '8'"),
    ("index_bits", 2.0, "index_bits must be an integer"),
    ("index_bits", None, "index_bits must be an integer, got None"),
    ("bits", 17, "bits 17 is out of range (1..16)"),
    ("n_clusters", 10**12, "n_clusters 1000000000000 is out of range"),
    ("n_clusters", 3, "n_clusters 3 needs 12"),
    ("nnz", 31, "nnz 31 is out of range (0..30)"),
    ("nnz", -1, "nnz -1 is out of range"),
    ("n_fillers", 10**9, "n_fillers 1000000000 is out of range"),
    ("n_entries", 10**12, "n_entries 1000000000000 is not nnz + n_fillers = 16"),
    ("shape", [10**5, 10**5, 10**5], "holds 1000000000000000 elements, more than the 4294967296"),
    ("shape", [2**33, 0], "must be at most 64 integers in 0..4294967296"),
    ("shape", [-5, -6], "must be at most 64 integers"),
    ("shape", [5, "6"], "must be at most 64 integers"),
    ("shape", [True, 6], "must be at most 64 integers"),
    ("shape", [1] * 65 + [30], "must be at most 64 integers"),
    ("shape", "5x6", "shape must be a list"),
    ("dtype", "float128", "dtype 'float128' is not one of float32"),
    ("dtype", "torch.float32", "dtype 'torch.float32' is not one of"),
    ("kind", "attention", "kind 'attention' is not one of conv, fc"),
    ("codebook", "nowhere", "codebook names section 'nowhere', which the file does not hold"),
    ("codebook", "2.weight:codebook", "section '2.weight:codebook' is already used by tensor '0.weight'"),
    ("weights", [], "weights must be a JSON object"),
    ("extra", {"a": [[[{"b": [1, 2, {"c": None}]}]]]}, "unknown field 'extra'"),
]


@pytest.mark.parametrize(("field", "value", "fragment"), LAYER_VALUES, ids=[f"{f}={v!r}"[:40] for f, v, _ in LAYER_VALUES])
def test_hostile_layer_fields_are_rejected(huffman_file, field, value, fragment):
    header, area, _ = split_file(huffman_file)
    assert_rejected(repack(replaced(header, (*L0, field), value), area), "tensor '0.weight'", fragment)


@pytest.mark.parametrize(
    "field", ["name", "kind", "shape", "dtype", "bits", "index_bits", "n_clusters", "nnz", "n_entries", "n_fillers", "codebook", "weights", "gaps"]
)
def test_missing_layer_fields_are_rejected(huffman_file, field):
    header, area, _ = split_file(huffman_file)
    assert_rejected(repack(removed(header, (*L0, field)), area), f"missing field '{field}'")


STREAM_VALUES = [
    ("nbits", 10**12, "weights.nbits 1000000000000 is out of range (0..40)"),
    ("nbits", -1, "weights.nbits -1 is out of range"),
    ("nbits", 43, "out of range (0..40)"),  # more bits than the 5-byte section holds
    ("nbits", 32, "weights.nbits 32 needs 4 bytes, its section '0.weight:weights' holds 5"),
    ("nbits", 35.0, "weights.nbits must be an integer"),
    ("coding", "lz4", "weights.coding 'lz4' is not one of huffman, fixed"),
    ("coding", "fixed", "unknown field 'weights.lengths'"),
    ("data", "0.weight:gaps", "weights.nbits 35 is out of range (0..32)"),  # the gap section is 4 bytes
    ("lengths", 5, "weights.lengths must be a string"),
    ("extra", [[[]]], "unknown field 'weights.extra'"),
]


@pytest.mark.parametrize(("field", "value", "fragment"), STREAM_VALUES, ids=[f"{f}={v!r}" for f, v, _ in STREAM_VALUES])
def test_hostile_huffman_stream_fields_are_rejected(huffman_file, field, value, fragment):
    header, area, _ = split_file(huffman_file)
    assert_rejected(repack(replaced(header, (*L0, "weights", field), value), area), "tensor '0.weight'", fragment)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("width", 10**12, "weights.width 1000000000000 is out of range (1..32)"),
        ("width", 0, "weights.width 0 is out of range"),
        ("width", 2, "is not n_entries x width = 16 x 2"),  # the file has 3 (4 clusters + filler)
        ("nbits", 10**15, "out of range"),
    ],
)
def test_hostile_fixed_stream_fields_are_rejected(fixed_file, field, value, fragment):
    header, area, _ = split_file(fixed_file)
    assert_rejected(repack(replaced(header, (*L0, "weights", field), value), area), fragment)


def _with_section(data: bytes, name: str, blob: bytes) -> bytes:
    """``data`` with section ``name`` replaced by ``blob`` (its CRC32 and the checksums recomputed)."""
    header, sections = packed.unpack(data)
    del header["sections"]
    return packed.pack(header, [(n, blob if n == name else b) for n, b in sections.items()])


@pytest.mark.parametrize(
    ("lengths", "fragment"),
    [
        (bytes([200, 1, 2, 2]), "has a 200-bit code (at most 57)"),
        (bytes([255] * 4), "has a 255-bit code"),
        (bytes([1, 1, 1, 1]), "Kraft inequality"),
        (bytes([2] * 5), "has 5 code lengths for 4 symbols"),  # 2-bit gaps: 4 symbols
        (b"", "empty code"),
    ],
)
def test_hostile_huffman_code_lengths_are_rejected(huffman_file, lengths, fragment):
    assert_rejected(_with_section(huffman_file, "0.weight:gaps.lengths", lengths), "tensor '0.weight'", fragment)


EXTRA_VALUES = [
    ("shape", [10**5, 10**5, 10**5], "holds 1000000000000000 elements"),
    ("shape", [6], "section '0.bias:raw' holds 20 bytes, 6 float32 elements need 24"),
    ("stored_dtype", "int8", "stored_dtype int8 cannot hold dtype float32"),
    ("dtype", "complex64", "dtype 'complex64' is not one of"),
    ("section", 0, "section must be a string, got 0"),
    ("section", "2.bias:raw", "section '2.bias:raw' holds 12 bytes, 5 float32 elements need 20"),
]


@pytest.mark.parametrize(("field", "value", "fragment"), EXTRA_VALUES, ids=[f"{f}={v!r}"[:40] for f, v, _ in EXTRA_VALUES])
def test_hostile_extra_fields_are_rejected(huffman_file, field, value, fragment):
    header, area, _ = split_file(huffman_file)
    assert_rejected(repack(replaced(header, (*X0, field), value), area), "tensor '0.bias'", fragment)


def test_bool_tensor_bytes_must_be_0_or_1(huffman_file):
    header, area, _ = split_file(huffman_file)
    bogus = {"name": "0.bias", "shape": [20], "dtype": "bool", "stored_dtype": "bool", "section": "0.bias:raw"}
    assert_rejected(repack(replaced(header, X0, bogus), area), "tensor '0.bias'", "bytes other than 0 and 1")


def _swap_names(header: Header) -> Header:
    return replaced(header, (*L0, "name"), header["layers"][1]["name"])


TOP_LEVEL: list[tuple[str, Callable[[Header], Header], str]] = [
    ("format", lambda h: replaced(h, ("format",), "safetensors"), "format is 'safetensors', expected 'prunekit-compressed'"),
    ("layers-dict", lambda h: replaced(h, ("layers",), {}), "layers must be a list"),
    ("extras-none", lambda h: replaced(h, ("extras",), None), "extras must be a list, got None"),
    ("metadata-list", lambda h: replaced(h, ("metadata",), [1]), "metadata must be a JSON object"),
    ("version-int", lambda h: replaced(h, ("prunekit_version",), 3), "prunekit_version must be a string"),
    ("layer-not-object", lambda h: replaced(h, L0, [1, 2]), "layers[0]: must be a JSON object"),
    ("name-int", lambda h: replaced(h, (*L0, "name"), 7), "layers[0]: name must be a string, got 7"),
    ("duplicate-name", _swap_names, "tensor '2.weight': is stored twice"),
    ("order-missing", lambda h: replaced(h, ("order",), h["order"][1:]), "order (3 entries) must list each of the 4 stored tensors"),
    ("order-duplicate", lambda h: replaced(h, ("order",), [*h["order"][:3], h["order"][0]]), "exactly once"),
    ("order-int", lambda h: replaced(h, ("order",), [*h["order"][:3], 3]), "exactly once"),
    ("missing-spec", lambda h: removed(h, ("spec",)), "missing field 'spec'"),
    ("spec-bits", lambda h: replaced(h, ("spec", "conv_bits"), 10**12), "spec is not a valid compression spec"),
    ("spec-garbage", lambda h: replaced(h, ("spec", "x"), {"y": [[]]}), "spec is not a valid compression spec"),
    ("top-garbage", lambda h: replaced(h, ("garbage",), {"a": [[[[None]]]]}), "unknown field 'garbage'"),
    ("offset-negative", lambda h: replaced(h, ("sections", "0.weight:codebook", "offset"), -16), "malformed section table"),
    ("offset-huge", lambda h: replaced(h, ("sections", "2.bias:raw", "offset"), 2**70), "malformed section table at '2.bias:raw'"),
    ("length-huge", lambda h: replaced(h, ("sections", "2.bias:raw", "length"), 10**12), "malformed section table at '2.bias:raw'"),
    ("length-bool", lambda h: replaced(h, ("sections", "2.bias:raw", "length"), True), "exactly the integers"),
    ("crc-string", lambda h: replaced(h, ("sections", "2.bias:raw", "crc32"), "0"), "exactly the integers"),
    ("section-extra-key", lambda h: replaced(h, ("sections", "2.bias:raw", "x"), 1), "exactly the integers"),
    ("section-missing-key", lambda h: removed(h, ("sections", "2.bias:raw", "crc32")), "exactly the integers"),
    ("section-unused", lambda h: replaced(h, ("sections", "spare"), {"offset": 96, "length": 0, "crc32": 0}), "section 'spare' belongs to no tensor"),
]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("edit", "fragment"), [c[1:] for c in TOP_LEVEL], ids=[c[0] for c in TOP_LEVEL])
def test_hostile_top_level_fields_are_rejected(huffman_file, edit, fragment, version):
    header, area, _ = split_file(huffman_file)
    assert_rejected(repack(edit(header), area, version), fragment)


@pytest.mark.parametrize(
    ("raw", "version", "fragment"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 2, "unreadable JSON header"),  # nesting deeper than the recursion limit
        (b"[1, 2]", 2, "no section table"),
        (b'{"sections": {}, "n": ' + b"9" * 5000 + b"}", 1, "unreadable JSON header"),  # beyond the int digit limit
        (b'{"sections": {}, "metadata": {"x": NaN}}', 2, "non-JSON number NaN"),
        (b" " * (packed.MAX_HEADER_BYTES + 1) + b"{}", 2, "larger than the 16777216 bytes"),  # a zlib bomb
        (b" " * (packed.MAX_HEADER_BYTES + 1) + b"{}", 1, "larger than the 16777216 bytes"),
        (b"\xff\xfe{}", 1, "unreadable JSON header"),
    ],
    ids=["deep-nesting", "not-an-object", "huge-int", "nan", "zlib-bomb", "huge-v1", "not-utf8"],
)
def test_unreadable_headers_are_rejected(huffman_file, raw, version, fragment):
    _, area, _ = split_file(huffman_file)
    stored = zlib.compress(raw, 9) if version >= 2 else raw
    assert_rejected(repack(None, area, version, stored_head=stored), fragment)


def test_compressed_header_with_stray_or_missing_bytes_is_rejected(huffman_file):
    header, area, _ = split_file(huffman_file)
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    assert zlib.decompress(head + b"junk")  # zlib alone ignores trailing bytes
    for stored in (head + b"junk", head[:-3]):
        assert_rejected(repack(None, area, stored_head=stored), "truncated or followed by stray bytes")


def test_writer_refuses_what_the_reader_would_refuse(tmp_path):
    with pytest.raises(ValueError, match="more than the 16777216"):
        packed.pack({"metadata": "x" * packed.MAX_HEADER_BYTES}, [])
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="more than the 16777216"):
        compress_model(model, tmp_path / "m.pkdc", metadata={"x": "y" * packed.MAX_HEADER_BYTES})
    model.register_buffer("big", torch.empty(1 << 16, (1 << 16) + 1, dtype=torch.bool, device="meta"))  # no memory
    with pytest.raises(ConfigError, match="more than the 4294967296"):
        compress_model(model, tmp_path / "m.pkdc")
    model.big = torch.empty(0, MAX_NUMEL + 1, device="meta")
    with pytest.raises(ConfigError, match=r"big has shape \(0, 4294967297\)"):
        compress_model(model, tmp_path / "m.pkdc")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    value=st.one_of(
        st.integers(),
        st.integers(-(2**80), 2**80),
        st.sampled_from(HOSTILE_INTS),
        st.integers(-(10**400), 10**400),
    ),
    huffman=st.booleans(),
    version=st.sampled_from([1, 2]),
)
def test_random_integer_fields_are_rejected_or_load_with_declared_shapes(huffman_file, fixed_file, data, value, huffman, version):
    header, area, _ = split_file(huffman_file if huffman else fixed_file)
    path = data.draw(st.sampled_from(int_paths(header)))
    hostile = replaced(header, path, value)
    result = outcome(repack(hostile, area, version), hostile)
    assert not result.startswith("escape"), f"{path} = {value}: {result}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), value=st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=4), st.lists(st.integers(), max_size=3)))
def test_random_non_integer_values_in_integer_fields_are_rejected(huffman_file, data, value):
    header, area, _ = split_file(huffman_file)
    path = data.draw(st.sampled_from([p for p in int_paths(header) if p[0] != "spec"]))  # the spec coerces like pydantic
    hostile = replaced(header, path, value)  # a NaN or infinity is written as non-JSON NaN/Infinity
    assert outcome(repack(hostile, area), hostile) == "rejected", f"{path} = {value!r}"
