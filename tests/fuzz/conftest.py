"""The soak is marked ``slow``. At the commit this folder was written against, nothing excluded slow
tests from the default run (``pytest -n 2``), so this folder skips them unless ``-m`` names ``slow``
(``pytest -m slow tests/fuzz``); with ``-m 'not slow'`` in pytest's addopts it is a no-op."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow fuzzing soak: run with -m slow")
    for item in items:
        if "slow" in item.keywords and HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)
