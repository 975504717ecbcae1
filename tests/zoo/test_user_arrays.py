"""NumPy arrays, dataset factories and the --data argument as datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunekit.errors import ConfigError, DataError
from prunekit.zoo.data import get_loaders, parse_data_argument, user_data_info
from prunekit.zoo.data.user.arrays import array_headers


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def load(name, path=None, **options):
    return get_loaders(name, path=path, progress=False, **options)


def test_npz_with_train_and_test_arrays_in_nhwc(tmp_path):
    x_train, x_test = images(30, (5, 7, 3)), images(9, (5, 7, 3), 1)
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=np.arange(30) % 3, x_test=x_test, y_test=np.arange(9) % 3,
             class_names=np.array(["ant", "bee", "cat"]))
    info = user_data_info("arrays", tmp_path / "d.npz")
    assert (info.num_classes, info.input_shape, info.class_names) == (3, (3, 5, 7), ("ant", "bee", "cat"))
    bundle = load("arrays", tmp_path / "d.npz", val_fraction=0.2, batch_size=100)
    assert bundle.input_shape == (3, 5, 7) and bundle.class_names == ("ant", "bee", "cat")
    assert (bundle.train.dataset_size, bundle.val.dataset_size, bundle.test.dataset_size) == (24, 6, 9)
    assert torch.equal(bundle.test.dataset.images, torch.from_numpy(x_test).permute(0, 3, 1, 2))  # NHWC → NCHW, exact
    x, y = next(iter(bundle.test))
    assert x.shape == (9, 3, 5, 7) and y.tolist() == [0, 1, 2] * 3
    assert bundle.train.augment is None  # arrays are not augmented unless asked


def test_npy_folder_float_nchw_single_set(tmp_path):
    x = np.random.default_rng(0).random((50, 1, 4, 4)).astype(np.float32)
    np.save(tmp_path / "images.npy", x)
    np.save(tmp_path / "labels.npy", np.arange(50) % 5)
    bundle = load("arrays", tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert (bundle.train.dataset_size, bundle.val.dataset_size, bundle.test.dataset_size) == (30, 10, 10)
    ds = bundle.train.dataset
    assert ds.images.dtype == torch.float32 and ds.scale == 1.0  # float pixels used as they are
    train = torch.from_numpy(x)[bundle.train.indices]
    assert ds.mean == pytest.approx((train.double().mean().item(),)) and ds.std == pytest.approx((train.double().std(unbiased=False).item(),))
    assert load("arrays", tmp_path, augment=True, crop_scale=(0.5, 1.0)).train.augment.scale == (0.5, 1.0)


def test_layout_detection_and_three_dimensional_images(tmp_path):
    np.savez(tmp_path / "hw.npz", images=images(20, (6, 5)), labels=np.arange(20) % 2)
    assert user_data_info("arrays", tmp_path / "hw.npz").input_shape == (1, 6, 5)
    np.savez(tmp_path / "amb.npz", images=images(20, (3, 8, 3)), labels=np.arange(20) % 2)
    with pytest.raises(ConfigError, match=r"cannot tell the channel axis of images of shape \(20, 3, 8, 3\); set layout"):
        user_data_info("arrays", tmp_path / "amb.npz")
    assert user_data_info("arrays", tmp_path / "amb.npz", layout="nhwc").input_shape == (3, 3, 8)
    assert load("arrays", tmp_path / "amb.npz", layout="nchw").input_shape == (3, 8, 3)


def test_array_errors_list_what_was_found(tmp_path):
    np.savez(tmp_path / "odd.npz", pixels=images(4, (3, 2, 2)), targets=np.arange(4))
    with pytest.raises(DataError, match="needs arrays x_train, y_train, x_test, y_test .* or images, labels; found: pixels, targets"):
        load("arrays", tmp_path / "odd.npz")
    with pytest.raises(DataError, match="does not exist: give a .npz file or a folder of .npy files"):
        load("arrays", tmp_path / "missing.npz")
    np.savez(tmp_path / "pickled.npz", images=np.array([object()] * 4), labels=np.arange(4))
    with pytest.raises(DataError, match="allow_pickle=False|Object arrays cannot be loaded"):
        load("arrays", tmp_path / "pickled.npz")
    np.savez(tmp_path / "int.npz", images=np.zeros((4, 1, 2, 2), dtype=np.int32), labels=np.arange(4) % 2)
    with pytest.raises(DataError, match="images must be uint8 or floating point, got int32"):
        load("arrays", tmp_path / "int.npz")
    np.savez(tmp_path / "count.npz", images=images(4, (1, 2, 2)), labels=np.arange(3))
    with pytest.raises(DataError, match="4 images but 3 labels"):
        load("arrays", tmp_path / "count.npz")
    np.savez(tmp_path / "one.npz", images=images(4, (1, 2, 2)), labels=np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match="a single class"):
        load("arrays", tmp_path / "one.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="is not a readable .npz file"):
        load("arrays", tmp_path / "bad.npz")


def test_dataset_factory_returns_train_val_test_pairs():
    bundle = load("tests.zoo.user_factories:blobs", kwargs={"n": 40, "classes": 4}, val_fraction=0.25, batch_size=64)
    assert bundle.num_classes == 4 and bundle.input_shape == (1, 6, 6)
    assert (bundle.train.dataset_size, bundle.val.dataset_size, bundle.test.dataset_size) == (28, 12, 10)  # val: 3 of each 10
    x, y = next(iter(bundle.test))
    raw = x * bundle.test.dataset.std[0] + bundle.test.dataset.mean[0]
    assert torch.allclose(raw.mean((1, 2, 3)), y / 4, atol=1e-6)
    assert user_data_info("tests.zoo.user_factories:blobs", kwargs={"side": 5}).input_shape == (1, 5, 5)


def test_dataset_factory_errors():
    with pytest.raises(DataError, match="must return \\(train, val, test\\).*got dict"):
        load("tests.zoo.user_factories:not_splits")
    with pytest.raises(DataError, match="dataset factory 'tests.zoo.user_factories:broken' failed: RuntimeError: 'no database connection'"):
        load("tests.zoo.user_factories:broken")
    with pytest.raises(ConfigError, match="cannot import dataset factory 'tests.zoo.user_factories:nothing'"):
        load("tests.zoo.user_factories:nothing")
    with pytest.raises(ConfigError, match="takes no path"):
        load("tests.zoo.user_factories:blobs", "x")


def test_npz_headers_are_read_without_loading_the_images(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", x_train=images(3, (2, 2, 1)), y_train=np.arange(3))
    assert array_headers(tmp_path / "d.npz") == {"x_train": ((3, 2, 2, 1), np.dtype(np.uint8)), "y_train": ((3,), np.dtype(np.int64))}


@pytest.mark.parametrize(("text", "fields"), [
    ("imagefolder:photos/train", {"name": "imagefolder", "path": "photos/train"}),
    ("arrays:/data/set.npz", {"name": "arrays", "path": "/data/set.npz"}),
    ("imagefolder:C:/photos", {"name": "imagefolder", "path": "C:/photos"}),
    ("cifar10", {"name": "cifar10"}),
    ("mypkg.data:load", {"name": "mypkg.data:load"}),
])
def test_parse_data_argument(text, fields):
    assert parse_data_argument(text) == fields


@pytest.mark.parametrize(("text", "message"), [("imagefolder", "give the path as imagefolder:PATH"), ("arrays:", "give the path after 'arrays:'"),
                                               ("", "--data is empty")])
def test_parse_data_argument_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_data_argument(text)
