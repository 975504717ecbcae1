"""Fixtures for structured-pruning tests: timm through the torchvision stand-in, one thread per worker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))



@pytest.fixture(scope="session")
def timm():
    """timm imported through the torchvision stand-in (skips when timm is not installed)."""
    from support.torchvision_standin import install

    install()
    return pytest.importorskip("timm")
