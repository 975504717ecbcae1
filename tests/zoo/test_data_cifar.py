"""CIFAR-10 python batches through the restricted unpickler, on a tiny synthetic archive."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from prunekit.errors import ChecksumError, DataError
from prunekit.zoo.data import dataset_info
from prunekit.zoo.data.api import _load_splits
from prunekit.zoo.data.checksums import md5_file
from prunekit.zoo.data.cifar import CLASS_NAMES, read_cifar_tarball, safe_unpickle
from prunekit.zoo.data.registry import DataFile

PER_BATCH = 4


class Py2StylePickler(pickle._Pickler):  # the pure-Python pickler, so one opcode can be changed
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING) opcodes, as in the official CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def batch_pickle(images: np.ndarray, labels: list[int], protocol: int = 3) -> bytes:
    """A CIFAR batch. Protocol 2 mimics the official Python 2 files: str keys and pixel data as
    BINSTRING, arrays through ``numpy.core.multiarray._reconstruct``; protocol 3 gives bytes keys."""
    batch = {b"batch_label": b"synthetic", b"data": images, b"labels": labels}
    if protocol == 2:
        buffer = io.BytesIO()
        Py2StylePickler(buffer, protocol=2).dump(batch)
        blob = buffer.getvalue()
        assert b"_codecs" not in blob
        blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in blob
        return blob
    return pickle.dumps(batch, protocol=protocol)


def make_archive(path: Path, *, seed: int = 0, override: dict[str, bytes] | None = None) -> dict[str, np.ndarray]:
    """Write a tiny ``cifar-10-python.tar.gz`` (4 images per batch) and return its images per split."""
    rng = np.random.default_rng(seed)
    members, images = {}, {"train": [], "test": []}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, PER_BATCH)]
        members[name] = batch_pickle(data, labels, protocol=2 if i % 2 else 3)
        images["test" if name == "test_batch" else "train"].append(data)
    members["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072}, protocol=3)
    members.update(override or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return {split: np.concatenate(parts).reshape(-1, 3, 32, 32) for split, parts in images.items()}


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_reads_official_format(tmp_path):
    expected = make_archive(tmp_path / "cifar-10-python.tar.gz")
    out = read_cifar_tarball(tmp_path, ["train", "test"])
    for split in ("train", "test"):
        np.testing.assert_array_equal(out[split].images, expected[split])
        assert out[split].labels.dtype == np.int64
    assert out["train"].images.shape == (5 * PER_BATCH, 3, 32, 32)


def test_refuses_code_execution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"system is not allowed") as info:
        safe_unpickle(pickle.dumps(Evil()), "evil.pkl")
    assert "evil.pkl" in str(info.value)
    make_archive(tmp_path / "cifar-10-python.tar.gz", override={"data_batch_3": pickle.dumps({b"data": Evil()})})
    with pytest.raises(DataError, match="data_batch_3 is not a valid CIFAR batch"):
        read_cifar_tarball(tmp_path, ["train"])
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps({b"data": np.array([1, "x"], dtype=object)}), "refusing object dtype"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), "must be a uint8 array"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), "ints in 0..9"),
        (pickle.dumps([1, 2, 3]), "expected a dict"),
    ],
)
def test_rejects_unexpected_content(tmp_path, payload, message):
    make_archive(tmp_path / "cifar-10-python.tar.gz", override={"test_batch": payload})
    with pytest.raises(DataError, match=message) as info:
        read_cifar_tarball(tmp_path, ["test"])
    assert "cifar-10-python.tar.gz" in str(info.value)


def test_missing_member(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz"):
        pass
    with pytest.raises(DataError, match="lacks batches.meta, test_batch"):
        read_cifar_tarball(tmp_path, ["test"])


def synthetic_spec(folder: Path, with_npz: bool):
    """CIFAR-10's spec with checksums of the synthetic files standing in for the official ones."""
    spec = dataset_info("cifar10")
    python, npz = spec.sources
    python = dataclasses.replace(python, files=(DataFile(python.files[0].name, md5_file(folder / python.files[0].name)),))
    if with_npz:
        npz = dataclasses.replace(npz, files=(DataFile(npz.files[0].name, md5_file(folder / npz.files[0].name)),))
    return dataclasses.replace(spec, sources=(python, npz))


def write_npz(path: Path) -> None:
    rng = np.random.default_rng(1)
    x = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in (("train", 6), ("test", 2))}
    np.savez_compressed(path, x_train=x["train"], y_train=np.arange(6) % 10, x_test=x["test"], y_test=np.arange(2), classes=np.array(CLASS_NAMES))


def test_official_batches_preferred_over_npz(tmp_path, caplog):
    folder = tmp_path / "cifar-10"
    folder.mkdir()
    expected = make_archive(folder / "cifar-10-python.tar.gz")
    write_npz(folder / "cifar10-jpeg-derived.npz")
    spec = synthetic_spec(folder, with_npz=True)
    with caplog.at_level(logging.WARNING):
        datasets, source = _load_splits(spec, tmp_path, ("train", "test"), download=False, mirrors=None, progress=False)
    assert "official python batches" in source
    assert not [r for r in caplog.records if "lossy" in r.getMessage()]
    np.testing.assert_array_equal(datasets["train"].images.numpy(), expected["train"])
    (folder / "cifar-10-python.tar.gz").unlink()
    with caplog.at_level(logging.WARNING):
        datasets, source = _load_splits(spec, tmp_path, ("test",), download=False, mirrors=None, progress=False)
    assert "lossy JPEG-derived copy" in source and datasets["test"].images.shape == (2, 3, 32, 32)
    assert [r for r in caplog.records if "lossy" in r.getMessage()]


def test_corrupt_npz_cannot_be_downloaded(tmp_path):
    folder = tmp_path / "cifar-10"
    folder.mkdir()
    write_npz(folder / "cifar10-jpeg-derived.npz")
    with pytest.raises(ChecksumError, match="cannot be downloaded") as info:
        _load_splits(dataset_info("cifar10"), tmp_path, ("test",), download=True, mirrors=None, progress=False)
    assert str(folder / "cifar10-jpeg-derived.npz") in str(info.value)
    assert "8789aede72c296be9d2d27fc2b72eb6a" in str(info.value)
