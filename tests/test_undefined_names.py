"""No module of the product, the benchmarks or the tests reads a name that is never defined (a NameError waiting to happen)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_no_undefined_names_in_src_benchmarks_and_tests() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    run = subprocess.run([ruff, "check", "--no-cache", "--select", "F821,F822,F823", "src", "benchmarks", "tests"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
