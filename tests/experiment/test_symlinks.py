"""No file of a run is written through a symbolic link that leads out of the run directory."""

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from prunekit.cli.app import app
from prunekit.experiment.runner import run_dir_for, run_recipe

from tests.experiment.finished import copy_out, finish, small_recipe, summary

cli = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finish(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def _recipe_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(small_recipe().resolved(), sort_keys=False))
    return path


def _refused(result, link, outside) -> None:
    message = " ".join(result.output.split())
    assert result.exit_code == 3, result.output
    assert f"{link} is a symbolic link to {outside}" in message and "Traceback" not in result.output


@pytest.mark.parametrize("name", ["checkpoints", "plots", "steps", "rounds", "metrics.jsonl", "summary.json"])
def test_run_refuses_a_link_out_of_the_run_directory(tmp_path, outside, name):
    out = tmp_path / "runs"
    run = run_dir_for(small_recipe(), out).path
    run.mkdir(parents=True)
    target = outside / name
    (run / name).symlink_to(target)
    result = cli.invoke(app, ["run", str(_recipe_file(tmp_path)), "--out", str(out), "-q"])
    _refused(result, run / name, target)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("inside_cache", [False, True])
def test_run_refuses_a_dense_cache_linked_out_of_the_output_folder(tmp_path, outside, inside_cache):
    out = tmp_path / "runs"
    folder = out / "dense-cache" if inside_cache else out
    folder.mkdir(parents=True)
    link = folder / ("lenet_300_100-0123456789" if inside_cache else "dense-cache")
    link.symlink_to(outside)
    result = cli.invoke(app, ["run", str(_recipe_file(tmp_path)), "--out", str(out), "-q"])
    _refused(result, link, outside)
    assert list(outside.iterdir()) == []


def test_report_refuses_a_plots_folder_linked_outside(finished, tmp_path, outside):
    run = copy_out(finished, tmp_path / "runs")
    shutil.rmtree(run / "plots")
    (run / "plots").symlink_to(outside)
    _refused(cli.invoke(app, ["report", str(run)]), run / "plots", outside)
    assert list(outside.iterdir()) == []


def test_compress_refuses_a_steps_folder_linked_outside(finished, tmp_path, outside):
    run = copy_out(finished, tmp_path / "runs")
    shutil.move(run / "steps", outside / "steps")
    (run / "steps").symlink_to(outside / "steps")
    before = {p.name: p.read_bytes() for p in (outside / "steps").iterdir()}
    _refused(cli.invoke(app, ["compress", str(run), "-q"]), run / "steps", outside / "steps")
    assert {p.name: p.read_bytes() for p in (outside / "steps").iterdir()} == before


def test_a_run_directory_reached_through_a_linked_parent_and_links_inside_it_are_fine(finished, tmp_path):
    real = copy_out(finished, tmp_path / "real")
    (real / "latest").symlink_to(real / "checkpoints")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    alias = tmp_path / "alias" / real.name
    assert run_recipe(small_recipe(), tmp_path / "alias", progress=False) == alias
    assert cli.invoke(app, ["report", str(alias)]).exit_code == 0
    assert summary(real) == summary(finished)
