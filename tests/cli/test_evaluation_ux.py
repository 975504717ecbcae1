"""A run that evaluates on part of the test set, printed and reported as such; brackets in paths and
messages printed as they are (never rich markup); progress bars only without -q; --version."""

import json
import logging

import pytest
import torch
import yaml
from typer.testing import CliRunner

from prunekit import __version__
from prunekit.cli.app import _configure_logging, app

from tests.experiment.recipes import tiny_recipe

runner = CliRunner()


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory):
    """A run under a folder named ``x[/bold]`` that evaluates on the first 100 of digits' 359 test examples."""
    tmp = tmp_path_factory.mktemp("ux") / "x[/bold]"
    tmp.mkdir(parents=True)
    raw = tiny_recipe(baselines=[], schedule=None, sparsity=0.5)
    raw["train"]["epochs"] = 1
    raw["evaluate"] = {"latency": False, "corruptions": ["blur"], "subset": 100}
    raw["export"] = {"accuracy": False, "latency_batch_size": 8}
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(tmp / "recipe.yaml"), "--out", str(tmp / "runs")])
    run_dir = next((tmp / "runs").glob("tiny-*"))
    return result, run_dir


def test_a_partial_evaluation_says_so_in_the_summary_the_notes_and_the_table(partial_run):
    result, run_dir = partial_run
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluation"] == {"examples": 100, "total_examples": 359}
    assert "evaluation used 100 of 359 test examples (evaluate.subset / evaluate.max_batches): accuracies are estimates" in " ".join(summary["notes"])
    assert "evaluation used 100 of 359 test examples" in (run_dir / "report.md").read_text()
    assert "test accuracy (100 of 359 examples)" in result.output
    assert set(summary["pruned"]["corruption_accuracy"]) == {"blur"}
    assert summary["export"]["onnx"]["accuracy"] is None and "evaluation" not in summary["export"]  # export.accuracy: false


def test_paths_with_markup_print_as_they_are_and_bars_show_without_quiet(partial_run):
    result, run_dir = partial_run
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    assert f"report:{run_dir / 'report.html'}" in "".join(result.output.split())  # (rich wraps long lines)
    for bar in ("test: dense", "test: pruned", "corrupted: dense blur", "corrupted: pruned blur", "export latency"):
        assert bar in result.output, bar


def test_export_accuracy_on_the_evaluation_subset_and_quiet_mode(partial_run):
    _, run_dir = partial_run
    checked = runner.invoke(app, ["export", str(run_dir), "--accuracy", "-q"])
    assert checked.exit_code == 0, checked.output
    assert "onnx accuracy" not in checked.output and "━" not in checked.output  # no progress bars with -q
    export = json.loads((run_dir / "summary.json").read_text())["export"]
    assert export["evaluation"] == {"examples": 100, "total_examples": 359}  # the evaluation's subset
    assert f"test accuracy {100 * export['onnx']['accuracy']:.2f}%" in checked.output


def test_log_messages_keep_their_brackets(capsys):
    _configure_logging(quiet=False)
    try:
        logging.getLogger("prunekit.experiment.x").warning("install it: pip install 'prunekit[onnx]' (in /tmp/x[/bold]/r)")
    finally:
        logging.getLogger().handlers.clear()
    assert "pip install 'prunekit[onnx]' (in /tmp/x[/bold]/r)" in " ".join(capsys.readouterr().err.split())


def test_errors_keep_their_brackets():
    result = runner.invoke(app, ["run", "no-such-x[/bold]/r.yaml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "recipe file not found: 'no-such-x[/bold]/r.yaml'" in result.output


def test_version_prints_prunekit_and_torch():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"prunekit {__version__}, torch {torch.__version__}"


def test_install_hints_in_errors_keep_their_extras(capsys):
    import typer

    from prunekit.cli.errors import user_errors
    from prunekit.errors import ConfigError

    with pytest.raises(typer.Exit), user_errors("x[/bold].yaml"):
        raise ConfigError("ONNX export needs onnx: pip install 'prunekit[onnx]' [/bold]")
    assert "invalid settings: ONNX export needs onnx: pip install 'prunekit[onnx]' [/bold]" in capsys.readouterr().err
