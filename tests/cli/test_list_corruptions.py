"""``prunekit list corruptions`` names every corruption with its family."""

from typer.testing import CliRunner

from prunekit.cli.app import app
from prunekit.metrics import CORRUPTIONS


def test_list_corruptions_shows_each_name_with_its_family() -> None:
    result = CliRunner().invoke(app, ["list", "corruptions"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in CORRUPTIONS.names():
        assert name in result.output
    assert "weather: Fog-like haze" in result.output and "digital: JPEG-like compression" in result.output
