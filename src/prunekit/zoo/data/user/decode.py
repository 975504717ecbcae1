"""Decoding image files with Pillow to fixed-size uint8 arrays, in worker processes when asked."""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from prunekit.errors import DataError
from prunekit.progress import make_progress

#: Files decoded per worker task.
CHUNK = 64
#: Image sizes :func:`default_image_size` chooses from (the smallest that holds the sampled images, else the last).
SIZE_STEPS = (32, 64)
LARGE_SIZE = 224
#: Files whose headers :func:`default_image_size` reads.
SIZE_SAMPLE = 100


def default_num_workers() -> int:
    """``min(4, number of CPUs)``."""
    return min(4, os.cpu_count() or 1)


def worker_context() -> multiprocessing.context.BaseContext:
    """Worker processes are forked where the platform can (as torch's DataLoader does: no module
    imports per worker; workers run only Pillow and NumPy), else spawned."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def decode_image(path: str | os.PathLike[str], size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 (channels, height, width).

    Converted to RGB (``channels=3``; alpha is dropped, grayscale is repeated) or L (``channels=1``),
    then resized so that it covers ``size`` (bilinear, the shorter side matching) and centre-cropped.
    Raises :class:`DataError` naming the file when Pillow cannot read it.
    """
    from PIL import Image

    height, width = size
    try:
        with Image.open(path) as image:
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")
            image = image.convert("RGB" if channels == 3 else "L")
            scale = max(height / image.height, width / image.width)
            new = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
            if new != image.size:
                image = image.resize(new, Image.Resampling.BILINEAR)
            left, top = (new[0] - width) // 2, (new[1] - height) // 2
            pixels = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}; replace it with a readable image or move it out of the data folder") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def decode_batch(paths: Sequence[str | os.PathLike[str]], size: tuple[int, int], channels: int) -> np.ndarray:
    """Images at ``paths`` as one uint8 (N, channels, height, width) array."""
    out = np.empty((len(paths), channels, *size), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = decode_image(path, size, channels)
    return out


def decode_files(
    paths: Sequence[Path],
    size: tuple[int, int],
    channels: int,
    *,
    num_workers: int,
    progress: bool = True,
    description: str = "decoding images",
) -> np.ndarray:
    """All of ``paths`` decoded as uint8 (N, channels, height, width), by ``num_workers`` processes
    (0: in this process), with a progress bar."""
    out = np.empty((len(paths), channels, *size), dtype=np.uint8)
    starts = range(0, len(paths), CHUNK)
    with make_progress(progress) as bar:
        task = bar.add_task(description, total=len(paths), status="")
        if num_workers == 0:
            for start in starts:
                out[start : start + CHUNK] = decode_batch(paths[start : start + CHUNK], size, channels)
                bar.advance(task, min(CHUNK, len(paths) - start))
            return out
        workers = min(num_workers, math.ceil(len(paths) / CHUNK))
        with ProcessPoolExecutor(workers, mp_context=worker_context()) as pool:
            jobs = {start: pool.submit(decode_batch, [str(p) for p in paths[start : start + CHUNK]], size, channels) for start in starts}
            for start, job in jobs.items():
                out[start : start + CHUNK] = job.result()
                bar.advance(task, min(CHUNK, len(paths) - start))
    return out


def default_image_size(paths: Sequence[Path]) -> tuple[int, int]:
    """32 if every sampled image fits in 32×32 pixels, else 64 if it fits in 64×64, else 224 (square).

    The sample is up to :data:`SIZE_SAMPLE` files evenly spaced through ``paths``; only headers are read.
    """
    from PIL import Image

    step = max(1, len(paths) // SIZE_SAMPLE)
    largest = 0
    for path in paths[::step][:SIZE_SAMPLE]:
        try:
            with Image.open(path) as image:
                largest = max(largest, *image.size)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read image {path}: {exc}; replace it with a readable image or move it out of the data folder") from None
    side = next((s for s in SIZE_STEPS if largest <= s), LARGE_SIZE)
    return side, side
