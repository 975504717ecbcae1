"""CIFAR-10 from the official python batches (read safely) or from the JPEG-derived ``.npz`` copy.

The official ``cifar-10-python.tar.gz`` holds pickled dicts. They are read straight out of the
archive (nothing is extracted) with :class:`RestrictedUnpickler`, which resolves only the three
globals a pickled numpy array needs:

* ``numpy.core.multiarray._reconstruct`` (written as ``numpy._core.multiarray._reconstruct`` by
  numpy 2), which allocates an empty array of a given class, shape and dtype;
* ``numpy.ndarray``, the only class ``_reconstruct`` may be given;
* ``numpy.dtype``, wrapped so that object dtypes (arrays of arbitrary Python objects) are refused.

Every other global (``os.system``, ``builtins.eval``, ...) raises, so loading a batch cannot run
code. The decoded values are then checked for type and shape.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.errors import DataError
from prunekit.zoo.data.augment import CropFlip
from prunekit.zoo.data.registry import DataFile, DatasetSpec, FileSet, RawSplit, register_dataset

try:  # numpy >= 2 (also present as an alias in numpy 1.26)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TARBALL = "cifar-10-python.tar.gz"
NPZ = "cifar10-jpeg-derived.npz"
_BATCH_DIR = "cifar-10-batches-py"
_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def _safe_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing object dtype {dtype}")
    return dtype


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds plain containers and numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch") from None


def safe_unpickle(data: bytes, source: str) -> dict[str, Any]:
    """Decode one CIFAR batch pickle into a dict with ``str`` keys; ``source`` names it in errors."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # pickle raises many types on bad input
        raise DataError(f"{source} is not a valid CIFAR batch ({type(exc).__name__}: {exc}); move the archive aside (rename it) and download it again") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{source} is not a valid CIFAR batch: expected a dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batch_to_split(batch: dict[str, Any], source: str) -> RawSplit:
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{source}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    labels = np.asarray(labels, dtype=np.int64) if isinstance(labels, list) else None
    if labels is None or labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{source}: 'labels' must be a list of {data.shape[0]} ints in 0..9")
    return RawSplit(data.reshape(-1, 3, 32, 32), labels)


def read_cifar_tarball(folder: Path | None, splits: Sequence[str]) -> dict[str, RawSplit]:
    """Read the requested splits from ``cifar-10-python.tar.gz`` in one pass over the archive."""
    assert folder is not None
    path = folder / TARBALL
    wanted = {f"{_BATCH_DIR}/{b}": b for split in splits for b in _BATCHES[split]}
    wanted[f"{_BATCH_DIR}/batches.meta"] = "batches.meta"
    found: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    found[wanted[member.name]] = safe_unpickle(handle.read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable tar.gz archive ({exc}); move it aside (rename it) and download it again") from exc
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)} under {_BATCH_DIR}/; move it aside (rename it) and download it again")
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in found["batches.meta"].get("label_names", [])]
    if tuple(names) != CLASS_NAMES:
        raise DataError(f"{path}: batches.meta lists classes {names}, expected {list(CLASS_NAMES)}")
    out = {}
    for split in splits:
        parts = [_batch_to_split(found[b], f"{path}:{_BATCH_DIR}/{b}") for b in _BATCHES[split]]
        out[split] = RawSplit(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
    return out


def read_cifar_npz(folder: Path | None, splits: Sequence[str]) -> dict[str, RawSplit]:
    """Read the requested splits from ``cifar10-jpeg-derived.npz`` (no pickle allowed)."""
    assert folder is not None
    path = folder / NPZ
    out = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            classes = tuple(str(c) for c in npz["classes"])
            if classes != CLASS_NAMES:
                raise DataError(f"{path}: 'classes' is {list(classes)}, expected {list(CLASS_NAMES)}")
            for split in splits:
                x, y = npz[f"x_{split}"], npz[f"y_{split}"]
                if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or y.shape != (x.shape[0],):
                    raise DataError(f"{path}: x_{split}/y_{split} have shapes {x.shape}/{y.shape} and dtype {x.dtype}; expected (N, 32, 32, 3) uint8 and (N,)")
                y = y.astype(np.int64)
                if y.size and (y.min() < 0 or y.max() > 9):
                    raise DataError(f"{path}: y_{split} has labels outside 0..9")
                out[split] = RawSplit(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a readable CIFAR-10 npz file ({exc}); replace it with a good copy") from exc
    return out


CIFAR10 = register_dataset(
    DatasetSpec(
        name="cifar10",
        folder="cifar-10",
        num_classes=10,
        input_shape=(3, 32, 32),
        class_names=CLASS_NAMES,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        description="CIFAR-10 colour images, 50k train / 10k test, 32x32 RGB",
        augmentation=CropFlip(padding=4, flip_p=0.5),
        augment_by_default=True,
        sources=(
            FileSet(
                key="python",
                description=f"official python batches ({TARBALL})",
                read=read_cifar_tarball,
                files=(DataFile(TARBALL, "c58f30108f718f92721af3b95e74349a", 170498071),),
                mirrors=("https://www.cs.toronto.edu/~kriz/",),
            ),
            FileSet(
                key="npz",
                description=f"lossy JPEG-derived copy ({NPZ})",
                read=read_cifar_npz,
                files=(DataFile(NPZ, "8789aede72c296be9d2d27fc2b72eb6a", 170462232),),
                caveat=(
                    f"reading {NPZ}, a lossy JPEG-derived copy of CIFAR-10 (about 30 dB PSNR against the "
                    "originals): results are close to, not equal to, results on the official data; say so "
                    "when you report them"
                ),
            ),
        ),
    )
)
