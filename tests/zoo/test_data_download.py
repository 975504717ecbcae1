"""Downloads from a loopback HTTP server: success, checksum fallback, unreachable mirrors."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prunekit.errors import ChecksumError, DataError
from prunekit.zoo.data import dataset_info, download_dataset, get_loaders, load_dataset
from prunekit.zoo.data.api import _load_splits
from prunekit.zoo.data.checksums import SIDECAR, md5_file

pytestmark = pytest.mark.network

MNIST_FILES = [f.name for f in dataset_info("mnist").sources[0].files]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """(served directory, base URL) of a loopback HTTP server."""
    served = tmp_path_factory.mktemp("served")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def mirrors(server, data_root, tmp_path) -> dict[str, str]:
    """A good MNIST mirror (links to the real files) and a bad one (each file has one byte flipped)."""
    served, base = server
    tag = tmp_path.name
    good, bad = served / f"{tag}-good", served / f"{tag}-bad"
    good.mkdir()
    bad.mkdir()
    for name in MNIST_FILES:
        (good / name).symlink_to(data_root / "mnist" / name)
        data = bytearray((data_root / "mnist" / name).read_bytes())
        data[-1] ^= 0xFF
        (bad / name).write_bytes(bytes(data))
    return {"good": f"{base}/{tag}-good/", "bad": f"{base}/{tag}-bad/", "missing": f"{base}/{tag}-nothing/"}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_download_into_empty_root_then_load(mirrors, data_root, tmp_path):
    root = tmp_path / "root"
    bundle = get_loaders("mnist", root=root, mirrors=[mirrors["good"]], progress=False, subset=1000)
    folder = root / "mnist"
    for name in MNIST_FILES:
        assert md5_file(folder / name) == md5_file(data_root / "mnist" / name)
        assert (folder / name).stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600
    assert (folder / SIDECAR).is_file() and not leftovers(folder)
    assert bundle.train.dataset.images.shape == (60000, 1, 28, 28)
    assert bundle.test.dataset_size == 10000
    assert str(folder) in bundle.source


def test_corrupt_mirror_falls_back_to_next(mirrors, tmp_path, caplog):
    root = tmp_path / "root"
    with caplog.at_level(logging.WARNING, logger="prunekit.zoo.data"):
        folder = download_dataset("mnist", root=root, mirrors=[mirrors["bad"], mirrors["missing"], mirrors["good"]], progress=False)
    assert folder == root / "mnist"
    assert all((folder / name).is_file() for name in MNIST_FILES) and not leftovers(folder)
    warnings = [r.getMessage() for r in caplog.records]
    assert any(mirrors["bad"] in w and "md5" in w for w in warnings)
    assert any(mirrors["missing"] in w and "404" in w for w in warnings)


def test_only_corrupt_mirror_raises_checksum_error(mirrors, tmp_path):
    root = tmp_path / "root"
    with pytest.raises(ChecksumError) as info:
        download_dataset("mnist", root=root, mirrors=[mirrors["bad"]], progress=False)
    message = str(info.value)
    assert f"{mirrors['bad']}train-images-idx3-ubyte.gz: served a file with md5" in message
    assert "expected f68b3c2dcbeaaa9fbdd348bbdeb94873" in message
    assert "Put these files in" in message  # the offline instructions follow
    assert not root.exists()  # nothing fetched: the folders made for the download are gone again


def test_no_mirror_reachable_reports_every_failure(tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    dead = [dead_url(), "http://127.0.0.1:1/mnist/"]
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path, mirrors=dead, progress=False)
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    for url in dead:
        assert f"{url}train-images-idx3-ubyte.gz: URLError" in message
    assert f"Put these files in {tmp_path / 'mnist'}" in message
    assert "t10k-labels-idx1-ubyte.gz  (md5 ec29112dd5afa0611ce80d1b7f02629c)" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message
    assert "PRUNEKIT_DATA" in message
    assert "download=True" not in message  # it was already tried


def test_corrupt_local_file_moved_aside_and_redownloaded(mirrors, data_root, tmp_path, caplog):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in MNIST_FILES:
        (folder / name).write_bytes((data_root / "mnist" / name).read_bytes())
    victim = folder / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(b"not the labels")
    with caplog.at_level(logging.WARNING):
        test = load_dataset("mnist", root=tmp_path, split="test", mirrors=[mirrors["good"]], progress=False)
    assert test.labels.shape == (10000,)
    assert victim.with_name(victim.name + ".corrupt").read_bytes() == b"not the labels"
    assert md5_file(victim) == "ec29112dd5afa0611ce80d1b7f02629c"
    assert any("moved it to" in r.getMessage() for r in caplog.records)


def test_partial_download_fetches_only_missing_files(mirrors, data_root, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    kept = folder / "train-images-idx3-ubyte.gz"
    kept.write_bytes((data_root / "mnist" / kept.name).read_bytes())
    os.utime(kept, ns=(10**9, 10**9))
    download_dataset("mnist", root=tmp_path, mirrors=[mirrors["good"]], progress=False)
    assert kept.stat().st_mtime_ns == 10**9  # verified, not re-downloaded
    assert all((folder / name).is_file() for name in MNIST_FILES)


def test_file_url_mirror(data_root, tmp_path):
    folder = download_dataset("mnist", root=tmp_path, mirrors=[(data_root / "mnist").as_uri()], progress=False)
    assert all(md5_file(folder / n) == md5_file(data_root / "mnist" / n) for n in MNIST_FILES)


def test_cifar_tarball_download(server, tmp_path):
    from tests.zoo.test_data_cifar import make_archive  # noqa: PLC0415 (shared synthetic-archive builder)

    served, base = server
    source = served / f"{tmp_path.name}-cifar"
    source.mkdir()
    expected = make_archive(source / "cifar-10-python.tar.gz")
    spec = dataset_info("cifar10")
    python, npz = spec.sources
    md5 = md5_file(source / "cifar-10-python.tar.gz")
    python = dataclasses.replace(python, files=(dataclasses.replace(python.files[0], md5=md5),))
    spec = dataclasses.replace(spec, sources=(python, npz))
    datasets, origin = _load_splits(spec, tmp_path, ("test",), download=True, mirrors=[f"{base}/{source.name}"], progress=False)
    assert (tmp_path / "cifar-10" / "cifar-10-python.tar.gz").is_file()
    assert "official python batches" in origin
    assert datasets["test"].images.numpy().tolist() == expected["test"].tolist()


def test_failed_download_leaves_no_folder_behind(tmp_path):
    root = tmp_path / "a" / "b"
    with pytest.raises(DataError):
        load_dataset("mnist", root=root, mirrors=[dead_url()], progress=False)
    assert not (tmp_path / "a").exists()


@pytest.fixture
def silent_mirror() -> Iterator[str]:
    """A loopback port that accepts connections and never answers (a stalled network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mnist/"


def test_one_short_timeout_for_all_mirrors(tmp_path, monkeypatch, silent_mirror):
    import time

    monkeypatch.setenv("PRUNEKIT_DOWNLOAD_TIMEOUT", "1")
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path, mirrors=[silent_mirror, silent_mirror, silent_mirror], progress=False)
    assert time.perf_counter() - start < 3
    assert "not tried: the 1 s download time-out was used up ($PRUNEKIT_DOWNLOAD_TIMEOUT)" in str(info.value)


def test_invalid_timeout_setting_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(DataError, match=r"\$PRUNEKIT_DOWNLOAD_TIMEOUT must be a number of seconds"):
        load_dataset("mnist", root=tmp_path, mirrors=[dead_url()], progress=False)
