"""Shared fixtures: real-data discovery, deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def find_data_root() -> Path | None:
    """``PRUNEKIT_DATA`` if set and present, else ``../shared/data`` beside the repository."""
    for candidate in (os.environ.get("PRUNEKIT_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def data_root() -> Path:
    """Directory holding real datasets; skips the test when none is available."""
    root = find_data_root()
    if root is None:
        pytest.skip("no real dataset directory: set PRUNEKIT_DATA or place the data in ../shared/data")
    return root


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread per test process: with ``pytest -n 2`` on 2 cores, torch's default
    threads oversubscribe the cores and spin (small convolutions ran ~100x slower).

    ``round_to="auto"`` (the structured default) follows the channel staircase measured on the
    machine; the suite pins it to 1 so expected channel counts do not depend on the CPU (tests of
    the staircase itself unset it), and measured latencies go to a throwaway cache.
    """
    torch.set_num_threads(1)
    os.environ.setdefault("PRUNEKIT_CHANNEL_STEP", "1")
    os.environ.setdefault("PRUNEKIT_CACHE_DIR", str(Path(config.rootpath) / ".pytest_cache" / "prunekit"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
