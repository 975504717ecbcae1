"""Decoded image splits kept on disk, keyed by a fingerprint of the listing and the decode settings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from prunekit._cache import CACHE_ENV, cache_root
from prunekit._io import load_safetensors, save_safetensors
from prunekit.errors import CheckpointError

log = logging.getLogger(__name__)

#: Bumped whenever decoding changes, so older caches are not reused.
DECODE_VERSION = 1


class DecodedCache:
    """``<folder>/<key>.safetensors`` files holding ``images`` (uint8 N, C, H, W) and ``labels``.

    ``folder`` defaults to ``$PRUNEKIT_CACHE_DIR/decoded`` (see :func:`prunekit._cache.cache_root`).
    A damaged file is reported with a warning and treated as missing; a folder that cannot be
    written is a warning too (the data is then decoded again next time).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_root() / "decoded"

    @staticmethod
    def key(fingerprint: str, size: tuple[int, int], channels: int) -> str:
        """The cache key of a split listing decoded at ``size`` with ``channels``."""
        settings = json.dumps({"listing": fingerprint, "size": list(size), "channels": channels, "version": DECODE_VERSION})
        return hashlib.sha256(settings.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def load(self, key: str, count: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cached ``(images, labels)`` under ``key`` if present, readable and of ``count`` examples."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_safetensors(path)
            images, labels = tensors["images"], tensors["labels"]
        except (CheckpointError, KeyError) as exc:
            log.warning("decoded-image cache %s is damaged (%s); decoding the images again", path, exc)
            return None
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != count or labels.shape != (count,):
            log.warning("decoded-image cache %s does not hold %d images; decoding the images again", path, count)
            return None
        return images, labels

    def save(self, key: str, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Write ``(images, labels)`` under ``key`` atomically; a write failure is only a warning."""
        try:
            save_safetensors(self.path(key), {"images": images, "labels": labels})
        except OSError as exc:
            log.warning("could not write the decoded-image cache %s (%s); set $%s to a writable folder to keep it",
                        self.path(key), exc, CACHE_ENV)
