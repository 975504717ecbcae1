"""Tiny image folders for the user-data tests: the red channel encodes the class."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

#: Red-channel value of class ``k``'s images.
VALUES = (20, 100, 180, 250)
#: (size, mode, format) of the images written per class, cycled: sizes differ, modes mix.
SHAPES = (((12, 9), "RGB", "png"), ((7, 11), "L", "png"), ((10, 10), "RGBA", "png"), ((16, 8), "RGB", "jpg"), ((9, 9), "RGB", "bmp"), ((8, 13), "RGB", "png"))


def write_image(path: Path, value: int, size: tuple[int, int] = (10, 10), mode: str = "RGB") -> Path:
    """A solid image whose red channel (or gray level) is ``value``."""
    colour = {"RGB": (value, value // 2, 255 - value), "RGBA": (value, value // 2, 255 - value, 100), "L": value}[mode]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def make_class_folders(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("ant", "bee", "cat")) -> Path:
    """``root/<class>/<i>.<ext>`` with ``per_class`` images per class."""
    for label, name in enumerate(classes):
        for i in range(per_class):
            size, mode, ext = SHAPES[i % len(SHAPES)]
            write_image(root / name / f"{i}.{ext.upper() if i == 4 else ext}", VALUES[label], size, mode)
    return root


def make_presplit(root: Path, counts: dict[str, int], classes: tuple[str, ...] = ("ant", "bee", "cat")) -> Path:
    """``root/<split>/<class>/...`` with ``counts[split]`` images per class."""
    for split, n in counts.items():
        make_class_folders(root / split, n, classes)
    return root
