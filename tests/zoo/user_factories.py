"""Dataset factories the user-data tests name as ``tests.zoo.user_factories:<function>``."""

from __future__ import annotations

import numpy as np
import torch


def blobs(n: int = 40, classes: int = 4, side: int = 6):
    """(train, None, test): class ``k`` images are filled with ``k / classes`` (float, NCHW)."""
    def split(count: int, offset: int):
        labels = (np.arange(count) + offset) % classes
        images = np.broadcast_to((labels / classes).astype(np.float32)[:, None, None, None], (count, 1, side, side)).copy()
        return torch.from_numpy(images), torch.from_numpy(labels)
    return split(n, 0), None, split(n // 4, 1)


def not_splits():
    return {"train": 1}


def broken():
    raise RuntimeError("no database connection")
