"""The soak (slow, not in the default run): 2,000 mutated recipes through the real entry point.

Same as ``python -m tests.fuzz.soak --cases 2000`` from the repository root; the report lands in
the test's tmp folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_soak_2000_mutated_recipes(tmp_path: Path) -> None:
    report = tmp_path / "recipe_fuzz_report.json"
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz.soak", "--cases", "2000", "--report", str(report)],
                          cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(report.read_text())
    failures = "\n".join(f"[{f['category']}] {f['kind']}: {f['description']} -> {' | '.join(f['output_tail'][-2:])[:300]}"
                         for f in [f for f in result["failures"] if f["category"] != "slow"][:40])
    passing = result["counts"]["ok"] + result["counts"]["slow"]  # over 2 s: a warning, not a failure
    assert passing == result["cases"] >= 2000, f"{result['counts']}\n{failures}\n(full report: {report})"
