"""Damaged run directories: `run` reports the file and redoes the step; `report`/`compress` exit 3 naming it."""

import logging
import os
import stat

import pytest
import yaml
from typer.testing import CliRunner

from prunekit._io import FILE_MODE
from prunekit.cli.app import app
from prunekit.experiment.runner import run_recipe

from tests.experiment.finished import copy_out, finish, small_recipe, summary

cli = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finish(tmp_path_factory.mktemp("runs"))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path):
    path.write_bytes(b"\xff\xfe\x00 not what prunekit wrote \x80" * 4)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _flat(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize(
    "name, damage",
    [
        ("steps/dense.json", _garble),
        ("checkpoints/dense.safetensors", _truncate),
        ("checkpoints/dense.json", _truncate),
        ("steps/prune.json", _truncate),
        ("checkpoints/pruned.json", _garble),
        ("checkpoints/pruned.safetensors", _garble),
        ("checkpoints/pruned.masks.safetensors", _truncate),
        ("steps/evaluate.json", _truncate),
        ("steps/compress.json", _garble),
        ("rounds/magnitude-global/round_000/model.safetensors", _truncate),
    ],
)
def test_run_redoes_a_damaged_step_and_ends_with_the_same_results(finished, tmp_path, caplog, name, damage):
    run = copy_out(finished, tmp_path / "runs")
    damage(run / name)
    if name.startswith("rounds/"):  # killed after the round, before the step was recorded
        for leftover in ("steps/prune.json", "checkpoints/pruned.json", "checkpoints/pruned.safetensors"):
            (run / leftover).unlink()
    assert run_recipe(small_recipe(), run.parent, progress=False) == run
    assert any(str(run / name) in message for message in _warnings(caplog)), _warnings(caplog)
    assert summary(run) == summary(finished)


def test_run_skips_damaged_metrics_lines_with_a_warning(finished, tmp_path, caplog):
    run = copy_out(finished, tmp_path / "runs")
    with open(run / "metrics.jsonl", "ab") as handle:
        handle.write(b"\xff\xfe garbage\n{\"kind\": \"epo")
    assert run_recipe(small_recipe(), run.parent, progress=False) == run
    assert any("metrics.jsonl: skipped 2 damaged line(s)" in m for m in _warnings(caplog))
    assert summary(run) == summary(finished)


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "is damaged (not valid JSON"),
        (b"\xff\xfe{}", "is damaged (not UTF-8 text)"),
        (b"[]", "is damaged (a JSON list, not dict)"),
        (b'{"run": {}}', "is damaged (no dense, pruned section)"),
        (b'{"run": {}, "dense": {}, "pruned": {}}', "is damaged (malformed: KeyError"),
    ],
)
def test_report_on_a_damaged_summary_exits_3_naming_it(finished, tmp_path, content, problem):
    run = copy_out(finished, tmp_path / "runs")
    if content is None:
        _truncate(run / "summary.json")
    else:
        (run / "summary.json").write_bytes(content)
    result = cli.invoke(app, ["report", str(run)])
    assert result.exit_code == 3, result.output
    message = _flat(result.output)
    assert f"run summary {run / 'summary.json'} {problem}" in message
    assert f"re-run `prunekit run {run / 'recipe.yaml'} --out {run.parent}`" in message
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "name, damage, problem",
    [
        ("steps/prune.json", _truncate, "step record {path} is damaged (not valid JSON"),
        ("checkpoints/pruned.json", _garble, "model description {path} is damaged (not UTF-8 text)"),
        ("checkpoints/pruned.safetensors", _truncate, "{path} is damaged or not a safetensors file"),
        ("checkpoints/dense.safetensors", _garble, "{path} is damaged or not a safetensors file"),
    ],
)
def test_compress_on_a_damaged_run_exits_3_naming_the_file(finished, tmp_path, name, damage, problem):
    run = copy_out(finished, tmp_path / "runs")
    damage(run / name)
    result = cli.invoke(app, ["compress", str(run), "-q"])
    assert result.exit_code == 3, result.output
    message = _flat(result.output)
    assert problem.format(path=run / name) in message
    assert f"re-run `prunekit run {run / 'recipe.yaml'} --out {run.parent}` to redo the step" in message
    assert "Traceback" not in result.output and "delete" not in message


def test_a_damaged_dense_cache_is_reported_and_the_dense_model_trained_again(finished, tmp_path, caplog):
    run = copy_out(finished, tmp_path / "runs")
    (cached,) = (run.parent / "dense-cache").glob("*/dense.safetensors")
    _truncate(cached)
    for name in ("steps/dense.json", "checkpoints/dense-train.safetensors"):  # as if this run had never trained
        (run / name).unlink()
    assert run_recipe(small_recipe(), run.parent, progress=False) == run
    assert any(str(cached) in m and "training the dense model again" in m for m in _warnings(caplog))
    assert summary(run) == summary(finished)
    assert cached.read_bytes() == (finished / "checkpoints" / "dense.safetensors").read_bytes()


def test_orphan_temp_files_are_removed_when_the_run_directory_is_opened(finished, tmp_path):
    run = copy_out(finished, tmp_path / "runs")
    orphans = [run / "checkpoints" / ".pruned.safetensors.a1b2c3d4.tmp", run / ".summary.json.x_y_z_00.tmp"]
    kept = run / "checkpoints" / "notes.tmp"
    for path in (*orphans, kept):
        path.write_bytes(b"half written")
    assert cli.invoke(app, ["report", str(run)]).exit_code == 0
    assert not any(p.exists() for p in orphans) and kept.exists()


def test_every_file_of_a_run_is_0644(finished):
    files = [p for p in finished.parent.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".safetensors", ".json", ".jsonl", ".yaml", ".md", ".html", ".png", ".pkdc"}
    assert {str(p.relative_to(finished.parent)): oct(stat.S_IMODE(os.stat(p).st_mode)) for p in files} == {
        str(p.relative_to(finished.parent)): oct(FILE_MODE) for p in files
    }


def test_a_diverging_training_exits_1_naming_it_and_keeps_no_model(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(small_recipe().resolved()))
    out = tmp_path / "runs"
    result = cli.invoke(app, ["run", str(recipe), "--set", "train.optimizer.lr=1e8", "--out", str(out), "-q"])
    assert result.exit_code == 1, result.output
    assert "dense training diverged: the training loss became nan at epoch 0" in _flat(result.output)
    assert "lower the learning rate" in result.output and "Traceback" not in result.output
    assert not list(out.glob("*/checkpoints")) and not (out / "dense-cache").exists()
