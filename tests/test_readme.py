"""The README cannot rot: its marked snippets run, its recipe list is complete, its blocks are labelled.

A Python block preceded by ``<!-- readme-test: run -->`` runs in the default suite,
``<!-- readme-test: slow -->`` only with ``-m slow``; unmarked blocks are fragments that continue an
earlier snippet. Snippets run in a fresh folder, after the imports every README snippet assumes
(``import torch``, ``import prunekit as pk``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunekit.experiment.recipe import shipped_recipes

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"<!-- readme-test: (run|slow) -->\s*$")
PREAMBLE = "import torch\nimport prunekit as pk\n"


def _blocks() -> list[tuple[str, str, str, int]]:
    """``(language, code, marker or "", line)`` of every fenced block."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        blocks.append((match.group(1), match.group(2), marker.group(1) if marker else "", text.count("\n", 0, match.start()) + 1))
    return blocks


def _snippets() -> list:
    return [pytest.param(code, id=f"line{line}", marks=[pytest.mark.slow] if marker == "slow" else [])
            for lang, code, marker, line in _blocks() if lang == "python" and marker]


@pytest.mark.parametrize("code", _snippets())
def test_marked_readme_snippets_run(code: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    exec(compile(PREAMBLE + code + "\n__readme_snippet_done__ = True\n", str(README), "exec"), namespace)
    assert namespace.get("__readme_snippet_done__"), "the snippet stopped before its last line"


def test_the_deploy_snippet_is_run_by_default() -> None:
    run = [code for lang, code, marker, _ in _blocks() if lang == "python" and marker == "run"]
    assert any("pk.deploy(" in code and "example_batch =" in code for code in run)


def test_every_shipped_recipe_is_listed() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("Shipped recipes (`prunekit list recipes`)"):]
    section = section[: section.index("\n\n", section.index("| recipe |"))]  # the recipe table
    listed = set(re.findall(r"`([a-z0-9_]+)`", section)) - {"prunekit"}
    assert sorted(shipped_recipes()) == sorted(listed & set(shipped_recipes())), sorted(set(shipped_recipes()) - listed)


def test_every_block_is_labelled_and_shell_blocks_hold_only_commands() -> None:
    for lang, code, _, line in _blocks():
        assert lang, f"README.md line {line}: label the block (```bash, ```python, ```yaml, ```text for sample output)"
        if lang in ("bash", "sh", "console"):
            for row in code.splitlines():
                assert not row.strip() or re.match(r"^[A-Za-z_.$#]", row.strip()), f"README.md line {line}: not a command: {row!r}"
                assert not re.search(r"[│┃━┏└]", row), f"README.md line {line}: sample output in a command block: {row!r}"
