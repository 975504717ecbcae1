"""Image folders as datasets: listing, decoding, splits, statistics, the disk cache and streaming."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from prunekit.errors import ConfigError, DataError
from prunekit.zoo.data import BatchLoader, StreamingLoader, get_loaders, image_folder_loaders, user_data_info
from prunekit.zoo.data.user import imagefolder
from prunekit.zoo.data.user.decode import decode_image, default_image_size
from prunekit.zoo.data.user.scan import scan_image_folder

from tests.zoo.image_folders import VALUES, make_class_folders, make_presplit, write_image


def load(path, tmp_path, **options):
    options = {"num_workers": 0, "progress": False, "cache_dir": tmp_path / "cache", **options}
    return image_folder_loaders(path, **options)


def red_level(x: torch.Tensor, ds) -> torch.Tensor:
    """Mean raw red value of each normalised image."""
    return (x[:, 0] * ds.std[0] + ds.mean[0]).mul(255).mean((1, 2))


def test_one_folder_is_split_per_class_with_exact_shapes_and_labels(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=10)
    bundle = load(root, tmp_path, image_size=8, val_fraction=0.2, test_fraction=0.3, augment=False)
    assert bundle.class_names == ("ant", "bee", "cat") and bundle.num_classes == 3 and bundle.input_shape == (3, 8, 8)
    sizes = (bundle.train.dataset_size, bundle.val.dataset_size, bundle.test.dataset_size)
    assert sizes == (15, 6, 9)  # per class: 2 val, 3 test, 5 train
    seen = []
    for loader in (bundle.train, bundle.val, bundle.test):
        x, y = next(iter(loader))
        assert x.shape == (loader.dataset_size, 3, 8, 8) and x.dtype == torch.float32
        assert torch.bincount(y, minlength=3).tolist() == [loader.dataset_size // 3] * 3  # stratified
        # the red channel encodes the class (JPEG within 3 levels; grayscale and RGBA images too)
        assert torch.allclose(red_level(x, loader.dataset), torch.tensor(VALUES, dtype=torch.float32)[y], atol=3)
        seen.append(loader.indices)
    assert not set(seen[0].tolist()) & set(seen[1].tolist()) and not set(seen[1].tolist()) & set(seen[2].tolist())
    assert len(set(torch.cat(seen).tolist())) == 30


def test_presplit_folders_and_a_val_split_carved_from_train(tmp_path):
    root = make_presplit(tmp_path / "data", {"train": 10, "test": 2})
    bundle = load(root, tmp_path, image_size=[6, 4], val_fraction=0.1)
    assert bundle.input_shape == (3, 6, 4)
    assert (bundle.train.dataset_size, bundle.val.dataset_size, bundle.test.dataset_size) == (27, 3, 6)
    assert bundle.test.dataset.split == "test" and bundle.train.dataset.split == "train"
    with pytest.raises(ConfigError, match="test_fraction applies to data without a separate test split"):
        load(root, tmp_path, image_size=4, test_fraction=0.2)


def test_mean_and_std_are_computed_from_the_training_split(tmp_path):
    root = tmp_path / "data"
    for split, n in {"train": 3, "val": 1, "test": 1}.items():
        for name, colour in {"a": (10, 20, 30), "b": (50, 60, 250)}.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (5, 5), colour).save(root / split / name / f"{i}.png")
    bundle = load(root, tmp_path, image_size=4)
    ds = bundle.train.dataset
    assert ds.mean == pytest.approx((30 / 255, 40 / 255, 140 / 255), abs=1e-12)
    assert ds.std == pytest.approx((20 / 255, 20 / 255, 110 / 255), abs=1e-12)
    assert bundle.test.dataset.mean == ds.mean  # every split normalised with the training statistics
    given = load(root, tmp_path, image_size=4, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert given.train.dataset.mean == (0.5, 0.5, 0.5) and given.train.dataset.std == (0.25, 0.25, 0.25)
    with pytest.raises(ConfigError, match="give both mean and std"):
        load(root, tmp_path, image_size=4, mean=[0.5, 0.5, 0.5])


def test_grayscale_channels_and_default_sizes(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=3)
    bundle = load(root, tmp_path, channels=1, val_fraction=0.0, test_fraction=0.34, augment=False)
    assert bundle.input_shape == (1, 32, 32)  # every image fits in 32×32
    x, y = next(iter(bundle.test))
    # a grayscale image keeps its level, a colour one becomes its luminance (ITU-R 601-2, as Pillow's L)
    allowed = [{v, round(v * 0.299 + v // 2 * 0.587 + (255 - v) * 0.114)} for v in VALUES]
    assert all(round(level) in allowed[label] for level, label in zip(red_level(x, bundle.test.dataset).tolist(), y.tolist(), strict=True))
    write_image(root / "ant" / "big.png", 20, (40, 20))
    assert default_image_size(scan_image_folder(root).paths("all")) == (64, 64)
    write_image(root / "ant" / "huge.png", 20, (65, 20))
    assert user_data_info("imagefolder", root).input_shape == (3, 224, 224)


def test_resize_shorter_side_then_centre_crop_is_exact(tmp_path):
    pixels = np.zeros((2, 4), dtype=np.uint8)
    pixels[:, 2:] = 255  # left half black, right half white
    Image.fromarray(pixels).save(tmp_path / "x.png")
    assert decode_image(tmp_path / "x.png", (2, 2), 1).tolist() == [[[0, 255], [0, 255]]]  # no resize, middle columns
    up = decode_image(tmp_path / "x.png", (4, 4), 3)  # shorter side 2 → 4: 8×4, crop columns 2..5
    assert up.shape == (3, 4, 4) and (up[:, :, 0] < 64).all() and (up[:, :, 3] > 191).all()


def test_augmentation_is_seeded_and_only_on_training_batches(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=4)
    for y in range(3):  # a gradient so that crops and flips show
        Image.fromarray(np.tile(np.arange(0, 240, 15, dtype=np.uint8), (16, 1))).save(root / ("ant", "bee", "cat")[y] / "g.png")
    a, b = load(root, tmp_path, image_size=16, seed=3), load(root, tmp_path, image_size=16, seed=3)
    first = [torch.cat([x for x, _ in a.train]) for _ in range(2)]
    assert torch.equal(first[0], torch.cat([x for x, _ in b.train]))  # same seed, same epoch: same batches
    assert not torch.equal(first[0], first[1])  # the next epoch draws other crops
    plain = load(root, tmp_path, image_size=16, seed=3, augment=False)
    assert torch.equal(torch.cat([x for x, _ in a.test]), torch.cat([x for x, _ in plain.test]))
    with pytest.raises(ConfigError, match="crop_scale must be"):
        load(root, tmp_path, image_size=16, crop_scale=(0.5, 0.1))


def test_decoded_images_are_cached_on_disk_and_redecoded_when_a_file_changes(tmp_path, monkeypatch, caplog):
    root = make_class_folders(tmp_path / "data", per_class=4)
    calls = []
    real = imagefolder.decode_files
    monkeypatch.setattr(imagefolder, "decode_files", lambda paths, *a, **k: calls.append(len(paths)) or real(paths, *a, **k))
    first = load(root, tmp_path, image_size=8)
    assert calls == [12]
    again = load(root, tmp_path, image_size=8)
    assert calls == [12] and torch.equal(again.train.dataset.images, first.train.dataset.images)
    load(root, tmp_path, image_size=6)  # other settings: another cache entry
    assert calls == [12, 12]
    stat = os.stat(root / "bee" / "2.png")
    os.utime(root / "bee" / "2.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load(root, tmp_path, image_size=8)
    assert calls == [12, 12, 12]
    entries = sorted((tmp_path / "cache").glob("*.safetensors"), key=os.path.getmtime)
    entries[-1].write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING):
        again = load(root, tmp_path, image_size=8)
    assert calls == [12, 12, 12, 12] and "is damaged" in caplog.text
    assert torch.equal(again.train.dataset.images, first.train.dataset.images)


def test_streaming_gives_the_same_batches_as_in_memory(tmp_path):
    root = make_presplit(tmp_path / "data", {"train": 7, "val": 2, "test": 2})
    memory = load(root, tmp_path, image_size=8, batch_size=4, seed=1)
    stream = load(root, tmp_path, image_size=8, batch_size=4, seed=1, cache_mb=0)
    assert isinstance(stream.train, StreamingLoader) and type(memory.train) is BatchLoader
    assert "streamed" in stream.source and "in memory" in memory.source
    assert stream.train.dataset.mean == memory.train.dataset.mean
    for epoch in (0, 1):
        for a, b in ((memory.train, stream.train), (memory.val, stream.val), (memory.test, stream.test)):
            a.set_epoch(epoch), b.set_epoch(epoch)
            assert len(a) == len(b) and a.dataset_size == b.dataset_size
            pairs = list(zip(a, b, strict=True))
            assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in pairs)
    workers = load(root, tmp_path, image_size=8, batch_size=4, seed=1, cache_mb=0, num_workers=2)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(memory.test, workers.test, strict=True))


@pytest.mark.skipif(not hasattr(BatchLoader, "shard"), reason="BatchLoader.shard not there yet")
def test_streaming_shards_like_the_in_memory_loader(tmp_path):
    root = make_presplit(tmp_path / "data", {"train": 5, "test": 1})
    memory = load(root, tmp_path, image_size=4, batch_size=3, val_fraction=0.0, augment=False)
    stream = load(root, tmp_path, image_size=4, batch_size=3, val_fraction=0.0, augment=False, cache_mb=0)
    for rank in (0, 1):
        a, b = memory.train.shard(rank, 2), stream.train.shard(rank, 2)
        assert isinstance(b, StreamingLoader) and len(a) == len(b)
        assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b, strict=True))


def test_get_loaders_dispatches_to_image_folders(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=3)
    bundle = get_loaders("imagefolder", path=root, image_size=4, num_workers=0, val_fraction=0.0, test_fraction=0.34,
                         progress=False, cache_dir=tmp_path / "c")
    assert bundle.name == "imagefolder" and bundle.input_shape == (3, 4, 4) and bundle.test.dataset_size == 3
    with pytest.raises(ConfigError, match="needs path"):
        get_loaders("imagefolder")
    with pytest.raises(ConfigError, match="is registered; path and image_size apply to imagefolder"):
        get_loaders("digits", path=root, image_size=4)


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        load(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no class folders in .*empty: expected"):
        load(tmp_path / "empty", tmp_path)
    make_class_folders(tmp_path / "one", 2, classes=("only",))
    with pytest.raises(DataError, match="single class folder \\('only'\\)"):
        load(tmp_path / "one", tmp_path)
    root = make_class_folders(tmp_path / "holey", 2)
    (root / "dog").mkdir()
    (root / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"class folder .*holey/dog holds no images"):
        load(root, tmp_path)
    split = make_presplit(tmp_path / "split", {"train": 2, "test": 1})
    make_class_folders(split / "test", 1, classes=("dog",))
    (split / "test" / "cat").rename(split / "test" / "cow")
    with pytest.raises(DataError, match=r"split/test has other class folders than .*split/train: missing cat; extra cow, dog"):
        load(split, tmp_path)
    make_class_folders(tmp_path / "notest" / "train", 2)
    with pytest.raises(DataError, match="has train/ but no test/"):
        load(tmp_path / "notest", tmp_path)
    root = make_class_folders(tmp_path / "broken", 3)
    (root / "bee" / "1.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"cannot decode image .*broken/bee/1.png.*replace it with a readable image"):
        load(root, tmp_path, image_size=4)
    with pytest.raises(ConfigError, match="channels must be 1 \\(grayscale\\) or 3"):
        load(root, tmp_path, channels=2)
    with pytest.raises(ConfigError, match="class 0 has 2 example\\(s\\)"):
        load(make_class_folders(tmp_path / "tiny", 2), tmp_path, image_size=4, val_fraction=0.3, test_fraction=0.3)


def test_a_corrupt_image_met_while_streaming_is_named(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=3)
    (root / "cat" / "2.png").write_bytes(b"truncated")
    bundle = load(root, tmp_path, image_size=4, cache_mb=0, num_workers=2, mean=[0.5] * 3, std=[0.5] * 3, val_fraction=0.0, test_fraction=0.34)
    with pytest.raises(DataError, match=r"cannot decode image .*cat/2.png"):
        for loader in (bundle.train, bundle.test):
            list(loader)


def test_the_crop_scale_default_follows_the_image_size(tmp_path):
    root = make_class_folders(tmp_path / "photos", per_class=4)
    assert load(root, tmp_path, image_size=16).train.augment.scale == (0.35, 1.0)
    assert load(root, tmp_path, image_size=128).train.augment.scale == (0.08, 1.0)
    assert load(root, tmp_path, image_size=16, crop_scale=(0.5, 1.0)).train.augment.scale == (0.5, 1.0)
