"""MD5 verification (sidecar cache, corrupted and truncated files) and the real datasets' contents."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.errors import ChecksumError, DataError
from prunekit.zoo.data import checksums, get_loaders, load_dataset
from prunekit.zoo.data.checksums import SIDECAR, verify_file

MNIST_TEST_LABELS_MD5 = "ec29112dd5afa0611ce80d1b7f02629c"
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def copy_dataset(data_root: Path, folder: str, dest_root: Path) -> Path:
    dest = dest_root / folder
    shutil.copytree(data_root / folder, dest)
    for path in dest.iterdir():
        path.chmod(0o644)
    return dest


def test_sidecar_skips_rehash_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = checksums.md5_file(path)
    verify_file(path, good)
    assert (tmp_path / SIDECAR).is_file()

    def no_hashing(_path):
        raise AssertionError("hashed again although size and mtime did not change")

    monkeypatch.setattr(checksums, "md5_file", no_hashing)
    verify_file(path, good)
    monkeypatch.undo()
    path.write_bytes(b"hellO")
    os.utime(path, ns=(1, 1))
    with pytest.raises(ChecksumError, match=f"expected {good}"):
        verify_file(path, good)


def test_unwritable_folder_still_verifies(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"data")
    monkeypatch.setattr(checksums, "write_json", lambda *a, **k: (_ for _ in ()).throw(PermissionError("read-only")))
    verify_file(path, checksums.md5_file(path))
    assert not (tmp_path / SIDECAR).exists()


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_real_file_raises_checksum_error(data_root, tmp_path, damage):
    folder = copy_dataset(data_root, "mnist", tmp_path)
    victim = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(victim.read_bytes())
    if damage == "corrupt":
        data[100] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    victim.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        load_dataset("mnist", root=tmp_path, split="test", download=False, progress=False)
    message = str(info.value)
    assert str(victim) in message
    assert f"expected {MNIST_TEST_LABELS_MD5}" in message
    assert checksums.md5_file(victim) in message
    assert "move it aside (rename it)" in message and "download=True" in message and "delete" not in message
    assert victim.is_file() and not victim.with_name(victim.name + ".corrupt").exists()  # never touched


def test_mnist_real_shapes_labels_and_split(data_root):
    bundle = get_loaders("mnist", root=data_root, seed=0, progress=False)
    train, test = bundle.train.dataset, bundle.test.dataset
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.labels.dtype == torch.int64 and set(train.labels.unique().tolist()) == set(range(10))
    assert np.bincount(test.labels.numpy()).tolist() == MNIST_TEST_COUNTS
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10 and bundle.class_names[3] == "3"
    # validation: 10% of the official training set, disjoint from train, fixed by the seed
    assert bundle.val.dataset is train
    train_idx, val_idx = bundle.train.indices, bundle.val.indices
    assert train_idx.numel() == 54000 and val_idx.numel() == 6000
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert torch.equal(get_loaders("mnist", root=data_root, seed=0, progress=False).val.indices, val_idx)
    x, y = next(iter(bundle.train))
    assert x.dtype == torch.float32 and x.shape == (128, 1, 28, 28) and y.shape == (128,)
    xs, _ = train.as_tensors()
    assert abs(float(xs.mean())) < 0.01 and abs(float(xs.std()) - 1) < 0.01  # standard normalisation


def test_fashion_mnist_real(data_root):
    train = load_dataset("fashion_mnist", root=data_root, split="train", download=False, progress=False)
    assert train.images.shape == (60000, 1, 28, 28)
    assert np.bincount(train.labels.numpy()).tolist() == [6000] * 10
    assert train.class_names[9] == "Ankle boot"


def test_offline_without_files_says_what_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path, download=False)
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    for name in ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"]:
        assert name in message
    assert f"Put these files in {tmp_path / 'mnist'}" in message
    assert "PRUNEKIT_DATA" in message and "root=" in message and "download=True" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz" in message
    assert "http://yann.lecun.com/exdb/mnist/t10k-images-idx3-ubyte.gz" in message
    assert not (tmp_path / "mnist").exists()


def test_cifar_offline_lists_both_file_sets(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", root=tmp_path, download=False)
    message = str(info.value)
    assert "one of these file sets" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "cifar10-jpeg-derived.npz" in message and "8789aede72c296be9d2d27fc2b72eb6a" in message


def test_cifar_npz_real(data_root, caplog):
    with caplog.at_level(logging.WARNING):
        bundle = get_loaders("cifar10", root=data_root, seed=0, batch_size=256, progress=False)
    lossy = [r for r in caplog.records if "lossy JPEG-derived" in r.getMessage()]
    assert len(lossy) == 1  # once per call, not once per split
    assert "npz" in bundle.source
    train = bundle.train.dataset
    assert train.images.shape == (50000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert bundle.test.dataset.images.shape == (10000, 3, 32, 32)
    assert bundle.train.dataset_size == 45000 and bundle.val.dataset_size == 5000
    # the npz is sorted by class: a shuffled validation split holds every class in similar numbers
    val_counts = np.bincount(train.labels[bundle.val.indices].numpy(), minlength=10)
    assert val_counts.min() > 400 and val_counts.max() < 600
    assert bundle.train.augment is not None and bundle.val.augment is None and bundle.test.augment is None
    x, y = next(iter(bundle.train))
    assert x.shape == (256, 3, 32, 32) and x.dtype == torch.float32
    xt, _ = bundle.test.dataset.as_tensors()
    assert xt.mean(dim=(0, 2, 3)).abs().max() < 0.1  # per-channel normalisation
