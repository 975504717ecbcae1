"""Imports inside training point down: callbacks and the loop both import Trainer from its own module."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest


def _imported(module_name: str) -> set[str]:
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


@pytest.mark.parametrize("name", [
    "prunekit.training.trainer", "prunekit.training.callbacks", "prunekit.training.pruning_callbacks",
    "prunekit.training.dst", "prunekit.integrations.keras_style",
])
def test_callback_modules_do_not_import_the_loop(name: str) -> None:
    assert "prunekit.training.loop" not in _imported(name)


def test_trainer_sits_below_callbacks_and_loop() -> None:
    assert not _imported("prunekit.training.trainer") & {"prunekit.training.callbacks", "prunekit.training.loop"}
    from prunekit.training import Trainer, loop, trainer

    assert Trainer is trainer.Trainer is loop.Trainer
