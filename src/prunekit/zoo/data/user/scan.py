"""Listing an image folder: classes, files per split, and a fingerprint of the listing (no decoding)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from prunekit.errors import DataError

log = logging.getLogger(__name__)

#: File name endings read as images (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Split folder names of the pre-split layout (``val`` is optional).
SPLIT_FOLDERS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitListing:
    """The image files of one split (paths relative to the folder root, sorted) and their labels."""

    files: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class FolderListing:
    """What :func:`scan_image_folder` found: ``presplit`` when the folder has ``train/`` and ``test/``
    (``val/`` optional), else one ``all`` split to divide."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, SplitListing]
    presplit: bool

    def paths(self, split: str) -> list[Path]:
        """Absolute paths of ``split``'s files."""
        return [self.root / f for f in self.splits[split].files]

    def fingerprint(self, split: str) -> str:
        """SHA-256 of ``split``'s listing: relative path, size and mtime_ns of every file, with its label."""
        digest = hashlib.sha256()
        for name, label in zip(self.splits[split].files, self.splits[split].labels, strict=True):
            st = os.stat(self.root / name)
            digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
        return digest.hexdigest()


def scan_image_folder(root: str | os.PathLike[str]) -> FolderListing:
    """List ``root/<class>/**/*.{jpg,jpeg,png,bmp,webp}`` (case-insensitive), or the same under
    ``root/train``, ``root/test`` and optionally ``root/val``.

    Classes are the sorted names of the class folders and must be the same in every split folder.
    Hidden files and folders (names starting with ``.``) and files with other endings are skipped.
    Raises :class:`DataError` for a missing folder, no class folders, an empty class folder, a
    single class, or classes that differ between split folders.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"image folder {base} does not exist or is not a folder")
    if (base / "train").is_dir():
        if not (base / "test").is_dir():
            raise DataError(f"image folder {base} has train/ but no test/: give train/ and test/ (val/ optional), "
                            "or put the class folders directly in it to split it by val_fraction and test_fraction")
        names = [s for s in SPLIT_FOLDERS if (base / s).is_dir()]
        others = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name not in SPLIT_FOLDERS and not p.name.startswith("."))
        if others:
            log.warning("image folder %s has train/ and test/: ignoring its other folders %s", base, ", ".join(others))
        found = {s: _scan_classes(base, base / s) for s in names}
        classes = found["train"][0]
        for split in names[1:]:
            _check_same_classes(base, classes, split, found[split][0])
        return FolderListing(base, classes, {s: found[s][1] for s in names}, presplit=True)
    classes, listing = _scan_classes(base, base)
    return FolderListing(base, classes, {"all": listing}, presplit=False)


def _scan_classes(base: Path, folder: Path) -> tuple[tuple[str, ...], SplitListing]:
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DataError(f"no class folders in {folder}: expected {folder}/<class name>/<image>.jpg (or .jpeg, .png, .bmp, .webp)")
    if len(classes) == 1:
        raise DataError(f"{folder} has a single class folder ({classes[0]!r}); classification needs at least two")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = _images_under(folder / name)
        if not found:
            raise DataError(f"class folder {folder / name} holds no images (*.jpg, *.jpeg, *.png, *.bmp, *.webp)")
        files += [p.relative_to(base).as_posix() for p in found]
        labels += [label] * len(found)
    return classes, SplitListing(tuple(files), tuple(labels))


def _images_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted, hidden entries skipped; links to folders
    inside it are not followed, so a link loop cannot recurse)."""
    found = []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(parent) / n for n in sorted(names) if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)]
    return found


def _check_same_classes(base: Path, classes: tuple[str, ...], split: str, other: tuple[str, ...]) -> None:
    if other == classes:
        return
    missing, extra = sorted(set(classes) - set(other)), sorted(set(other) - set(classes))
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"extra {', '.join(extra)}"] if extra else [])
    raise DataError(f"{base / split} has other class folders than {base / 'train'}: {'; '.join(parts)}; "
                    "every split folder needs the same class folders")
