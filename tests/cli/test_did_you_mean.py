"""Unknown names and keys come with the closest allowed ones ("did you mean ...?")."""

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from prunekit._registry import Registry, did_you_mean
from prunekit.cli.app import app
from prunekit.cli.errors import format_validation_error
from prunekit.experiment.recipe import CompressSection, load_recipe

from tests.experiment.recipes import tiny_recipe

runner = CliRunner()


def test_registry_suggests_close_names_and_nothing_for_far_ones():
    registry: Registry[int] = Registry("criterion")
    for name in ("magnitude", "random", "taylor"):
        registry.add(name, 0)
    assert registry.unknown_message("magnitud") == "unknown criterion 'magnitud'; allowed values: magnitude, random, taylor; did you mean 'magnitude'?"
    assert registry.unknown_message("xyz") == "unknown criterion 'xyz'; allowed values: magnitude, random, taylor"
    assert did_you_mean(None, ["a"]) == "" and did_you_mean("abc", []) == ""


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda r: r.update(trian={"epochs": 1}), "recipe: trian: unknown key (remove it or check its spelling); did you mean 'train'?"),
        (lambda r: r["prune"].update(sparsty=0.5), "recipe: prune.sparsty: unknown key (remove it or check its spelling); did you mean 'sparsity'?"),
        (lambda r: r["prune"]["finetune"].update(epohcs=1), "recipe: prune.finetune.epohcs: unknown key (remove it or check its spelling); did you mean 'epochs'?"),
        (lambda r: r["train"]["optimizer"].update(lrr=0.1), "recipe: train.optimizer.lrr: unknown key (remove it or check its spelling); did you mean 'lr'?"),
        (lambda r: r["evaluate"].update(max_batch=2), "recipe: evaluate.max_batch: unknown key (remove it or check its spelling); did you mean 'max_batches'?"),
        (lambda r: r.update(export={"acuracy": False}), "recipe: export.acuracy: unknown key (remove it or check its spelling); did you mean 'accuracy'?"),
        (lambda r: r.update(zzz=1), "recipe: zzz: unknown key (remove it or check its spelling)"),
        (lambda r: r["prune"].update(method="structred"), "did you mean 'structured' or 'unstructured'?"),
        (lambda r: r["prune"].update(criterion="magnitud"), "did you mean 'magnitude'?"),
        (lambda r: r["data"].update(name="digit"), "did you mean 'digits'?"),
    ],
)
def test_recipe_errors_suggest_the_intended_key_or_name(edit, expected):
    raw = tiny_recipe()
    edit(raw)
    with pytest.raises(ValidationError) as info:
        load_recipe(raw)
    message = format_validation_error(info.value)
    assert expected in message
    if expected.endswith("(remove it or check its spelling)"):
        assert "did you mean" not in message


def test_section_errors_suggest_keys_of_that_section():
    with pytest.raises(ValidationError) as info:
        CompressSection.model_validate({"fc_bit": 4})
    assert "fc_bit: unknown key (remove it or check its spelling); did you mean 'fc_bits' or 'conv_bits' or 'fc_index_bits'?" in format_validation_error(info.value, "--set")


def test_cli_suggests_recipes_listings_and_keys(tmp_path):
    result = runner.invoke(app, ["check", "han_lenet30"])
    assert result.exit_code == 2 and "did you mean 'han_lenet300'" in result.output
    result = runner.invoke(app, ["list", "model"])
    assert result.exit_code == 2 and "did you mean 'models'?" in result.output
    raw = tiny_recipe()
    raw["prune"]["sparsity_"] = 0.5
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["check", str(tmp_path / "r.yaml")])
    assert result.exit_code == 2 and "did you mean 'sparsity'?" in " ".join(result.output.split())
