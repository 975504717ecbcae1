"""``prunekit analyze --structured``: the per-group scan of a recipe's dense model, on the validation split."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from prunekit.cli.app import app

from tests.experiment.recipes import tiny_recipe

runner = CliRunner()


def _recipe(tmp_path: Path, **data) -> Path:
    raw = tiny_recipe()
    raw["model"] = {"name": "conv2"}
    raw["data"].update(data)
    raw["prune"] = {"method": "structured", "ratio": 0.5, "round_to": 1}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_analyze_structured_scans_every_group_and_resumes(tmp_path):
    path, out = _recipe(tmp_path), tmp_path / "runs"
    result = runner.invoke(app, ["analyze", str(path), "--structured", "--ratios", "0.5,0.75", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    run = next(out.glob("*/structured_sensitivity.json")).parent
    data = json.loads((run / "structured_sensitivity.json").read_text())
    assert data["complete"] and data["ratios"] == [0.5, 0.75]
    assert len(data["rows"]) == 2 * len(data["groups"]) and {r["name"] for r in data["rows"]} == set(data["groups"].values())
    assert (run / "structured_sensitivity.png").exists() and "MACs saved" in result.output
    lines = (run / "structured_sensitivity.jsonl").read_text().splitlines()
    assert len(lines) == 2 + len(data["rows"])  # header, baseline, rows
    again = runner.invoke(app, ["analyze", str(path), "--structured", "--ratios", "0.5,0.75", "--out", str(out), "-q"])
    assert again.exit_code == 0 and (run / "structured_sensitivity.jsonl").read_text().splitlines() == lines  # nothing measured again


def test_analyze_structured_refuses_to_use_the_test_split(tmp_path):
    result = runner.invoke(app, ["analyze", str(_recipe(tmp_path, val_fraction=0.0)), "--structured", "--out", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2 and "validation split" in " ".join(result.output.split())
    bad = runner.invoke(app, ["analyze", str(_recipe(tmp_path)), "--structured", "--ratios", "0.5,1", "--out", str(tmp_path / "runs"), "-q"])
    assert bad.exit_code == 2 and "--ratios must lie in (0, 1)" in bad.output
