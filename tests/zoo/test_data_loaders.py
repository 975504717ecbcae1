"""Registry contract, data-root resolution, digits, and the batch loaders (no files needed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.errors import ConfigError, UnknownNameError
from prunekit.zoo.data import (
    DATASETS,
    BatchLoader,
    CropFlip,
    dataset_info,
    get_loaders,
    list_datasets,
    load_dataset,
    resolve_data_root,
    split_indices,
)
from prunekit.zoo.data.dataset import ArrayDataset

# -- registry -------------------------------------------------------------------------------


def test_builtin_datasets_registered():
    assert list_datasets() == ["cifar10", "digits", "fashion_mnist", "mnist"]
    assert list_datasets("*mnist") == ["fashion_mnist", "mnist"]


@pytest.mark.parametrize("name", list(DATASETS))
def test_spec_contract(name):
    spec = dataset_info(name)
    assert spec.name == name
    assert len(spec.class_names) == spec.num_classes == 10
    assert len(spec.mean) == len(spec.std) == spec.input_shape[0]
    assert spec.needs_files == bool(spec.sources)
    for fileset in spec.sources:
        for file in fileset.files:
            assert re.fullmatch(r"[0-9a-f]{32}", file.md5)
            for url in fileset.urls(file):
                assert url.startswith(("http://", "https://")) and url.endswith("/" + file.name)
    assert spec.augment_by_default == (spec.augmentation is not None) == (name == "cifar10")


def test_mirror_order_and_override():
    mnist = dataset_info("mnist").sources[0]
    urls = mnist.urls(mnist.files[0])
    assert urls[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    assert urls[1] == "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz"
    assert mnist.urls(mnist.files[0], ["http://127.0.0.1:1/m"]) == ["http://127.0.0.1:1/m/train-images-idx3-ubyte.gz"]
    cifar = dataset_info("cifar10")
    assert [s.key for s in cifar.sources] == ["python", "npz"]  # official batches preferred
    assert cifar.sources[0].urls(cifar.sources[0].files[0]) == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]


def test_unknown_dataset_lists_allowed_names():
    with pytest.raises(UnknownNameError, match="allowed values: cifar10, digits, fashion_mnist, mnist"):
        get_loaders("imagenet")


# -- data root ------------------------------------------------------------------------------


def test_data_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "prunekit" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "prunekit" / "data"
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"


# -- digits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return get_loaders("digits", batch_size=64, progress=False)


def test_digits_needs_no_files(monkeypatch, tmp_path, digits):
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path / "nothing-here"))
    test = load_dataset("digits", split="test", download=False)
    assert not (tmp_path / "nothing-here").exists()
    assert test.images.shape == (359, 1, 8, 8) and test.images.dtype == torch.uint8
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.train.dataset_size + digits.val.dataset_size == 1797 - 359


def test_digits_split_is_stratified_and_fixed(digits):
    train, test = digits.train.dataset, digits.test.dataset
    counts_all = np.bincount(np.concatenate([train.labels.numpy(), test.labels.numpy()]))
    expected = np.floor(0.2 * counts_all + 0.5).astype(int)
    np.testing.assert_array_equal(np.bincount(test.labels.numpy()), expected)
    again = load_dataset("digits", split="test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    x, y = next(iter(digits.test))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 8, 8) and y.dtype == torch.int64
    assert abs(float(train.as_tensors()[0].mean())) < 0.05


# -- splits and loaders ---------------------------------------------------------------------


def test_split_indices_deterministic_and_disjoint():
    train, val = split_indices(1000, 0.1, seed=3)
    assert val.numel() == 100 and train.numel() == 900
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(1000))
    again_train, again_val = split_indices(1000, 0.1, seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert not torch.equal(val, split_indices(1000, 0.1, seed=4)[1])


def test_subset_is_prefix_of_the_same_permutation():
    full_train, full_val = split_indices(1000, 0.0, seed=1)
    train, val = split_indices(1000, 0.2, seed=1, subset=50)
    assert full_val.numel() == 0
    assert val.numel() == 10 and train.numel() == 40
    assert set(torch.cat([train, val]).tolist()) == set(full_train[:50].tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 1.0}, "val_fraction must be in"),
        ({"val_fraction": -0.1}, "val_fraction must be in"),
        ({"subset": 0}, "subset must be between 1"),
        ({"subset": 5000}, "subset must be between 1 and the training set size 1438"),
        ({"subset": 1, "val_fraction": 0.5}, "leaves no training examples"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"num_workers": -1}, "num_workers"),
        ({"augment": True}, "has no standard augmentation"),
        ({"augment": "yes"}, "augment must be"),
    ],
)
def test_get_loaders_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        get_loaders("digits", progress=False, **kwargs)


def test_unknown_split():
    with pytest.raises(ConfigError, match="no split 'val'; allowed values: train, test"):
        load_dataset("digits", split="val")


def test_val_fraction_zero_and_subset():
    bundle = get_loaders("digits", val_fraction=0.0, subset=100, batch_size=32, progress=False)
    assert bundle.val is None
    assert bundle.train.dataset_size == 100 and len(bundle.train) == 4
    assert bundle.test.dataset_size == 359  # the test split is never subset


def _toy(n: int = 50) -> ArrayDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ArrayDataset(images, torch.arange(n), mean=(0.0,), std=(1.0,), scale=1.0)


def _epoch_labels(loader: BatchLoader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


def test_batch_loader_epochs_shuffle_and_resume():
    loader = BatchLoader(_toy(), torch.arange(10, 50), batch_size=16, shuffle=True, seed=7)
    assert len(loader) == 3 and loader.dataset_size == 40
    first, second = _epoch_labels(loader), _epoch_labels(loader)
    assert sorted(first) == sorted(second) == list(range(10, 50))
    assert first != second and loader.epoch == 2
    loader.set_epoch(1)
    assert _epoch_labels(loader) == second
    fresh = BatchLoader(_toy(), torch.arange(10, 50), batch_size=16, shuffle=True, seed=7)
    assert _epoch_labels(fresh) == first


def test_batch_loader_values_and_drop_last():
    loader = BatchLoader(_toy(10), batch_size=4, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 2
    x, y = batches[1]
    assert x.dtype == torch.float32 and x.shape == (4, 1, 2, 2)
    assert torch.equal(x[:, 0, 0, 0], y.float())  # unshuffled, identity normalisation


def test_augmentation_reproducible_per_epoch():
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ds = ArrayDataset(images, torch.zeros(20, dtype=torch.int64), mean=(0.5,) * 3, std=(0.25,) * 3)

    def run(epoch: int) -> torch.Tensor:
        loader = BatchLoader(ds, batch_size=20, augment=CropFlip(), seed=1)
        loader.set_epoch(epoch)
        return next(iter(loader))[0]

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    plain = next(iter(BatchLoader(ds, batch_size=20)))[0]
    assert not torch.equal(run(0), plain)


def test_dataset_item_matches_batch():
    ds = get_loaders("digits", progress=False).test.dataset
    x, y = ds[-1]
    bx, by = ds.batch(torch.tensor([len(ds) - 1]))
    assert torch.equal(x, bx[0]) and int(y) == int(by[0])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_default_root_untouched_for_bundled(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    get_loaders("digits", progress=False)
    assert not any(Path(tmp_path).iterdir())
