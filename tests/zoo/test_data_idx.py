"""IDX parsing on synthetic files, and the MNIST reader's validation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.errors import DataError
from prunekit.zoo.data.idx import IDX_DTYPES, read_idx
from prunekit.zoo.data.mnist import read_idx_pair



def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """Encode ``array`` as IDX (big-endian values)."""
    if code is None:
        code = next(k for k, v in IDX_DTYPES.items() if v.kind == array.dtype.kind and v.itemsize == array.dtype.itemsize)
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[code]).tobytes()


def write(path: Path, data: bytes, compress: bool = True) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@settings(max_examples=40, deadline=None)
@given(
    code=st.sampled_from(sorted(IDX_DTYPES)),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_roundtrip_every_type_and_rank(tmp_path_factory, code, shape, compress, seed):
    dtype = IDX_DTYPES[code].newbyteorder("=")
    values = np.random.default_rng(seed).integers(-100 if dtype.kind != "u" else 0, 100, size=shape).astype(dtype)
    path = write(tmp_path_factory.mktemp("idx") / "x.idx.gz", idx_bytes(values, code), compress)
    out = read_idx(path)
    assert out.dtype == dtype and out.dtype.isnative
    assert out.shape == tuple(shape)
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "declares 3 dimensions"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(5), "needs 6 bytes of data, found 5"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + bytes(3), "needs 2 bytes of data, found 3"),
        (b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + bytes(7), "needs 8 bytes of data, found 7"),
    ],
)
def test_malformed_header_names_the_file(tmp_path, data, message):
    path = write(tmp_path / "bad-images-idx3-ubyte.gz", data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "download it again" in str(info.value)


def test_truncated_gzip_names_the_file(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8)))
    path = tmp_path / "t.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="gzip data is damaged or truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def _mnist_folder(tmp_path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(images))
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(labels))
    return tmp_path


def test_mnist_reader_adds_channel_axis(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28)).astype(np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    split = read_idx_pair(_mnist_folder(tmp_path, images, labels), ["test"])["test"]
    assert split.images.shape == (7, 1, 28, 28) and split.labels.dtype == np.int64
    np.testing.assert_array_equal(split.images[:, 0], images)
    np.testing.assert_array_equal(split.labels, labels)


def test_mnist_reader_rejects_bad_labels(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    folder = _mnist_folder(tmp_path, images, np.array([0, 1, 12], np.uint8))
    with pytest.raises(DataError, match="label 12 is out of range") as info:
        read_idx_pair(folder, ["test"])
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)
    folder = _mnist_folder(tmp_path, images, np.array([0, 1], np.uint8))
    with pytest.raises(DataError, match="expected 3 uint8 labels"):
        read_idx_pair(folder, ["test"])
