"""Checkpoints that carry code: unpickling them would create a marker file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch


class Payload:
    """Unpickling this runs ``touch marker``: a checkpoint that carries code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_payload(path: Path, marker: Path, container: str) -> None:
    """A checkpoint at ``path`` whose unpickling would create ``marker``: a torch.save zip or a plain pickle."""
    obj = {"fc1.weight": torch.zeros(1), "evil": Payload(marker)}
    if container == "torch.save":
        torch.save(obj, path)  # a zip holding the pickle
    else:
        path.write_bytes(pickle.dumps(obj))
