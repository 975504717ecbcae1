"""Lightning through the torchvision stand-in (torchmetrics imports torchvision; it is broken on some machines)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


@pytest.fixture(scope="session")
def lightning():
    """``lightning`` (skips when it is not installed)."""
    from support.torchvision_standin import install

    install()
    return pytest.importorskip("lightning")
