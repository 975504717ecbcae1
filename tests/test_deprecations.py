"""Renamed public names keep working for one release: each returns the new object and warns, naming the new name."""

from __future__ import annotations

import importlib

import pytest

RENAMED = [
    ("prunekit.experiment.recipe", "UnstructuredMethod", "prunekit.experiment.method_sections", "UnstructuredSection"),
    ("prunekit.experiment.recipe", "GradualMethod", "prunekit.experiment.method_sections", "GradualSection"),
    ("prunekit.experiment.recipe", "LotteryMethod", "prunekit.experiment.method_sections", "LotterySection"),
    ("prunekit.experiment.recipe", "NMMethod", "prunekit.experiment.method_sections", "NMSection"),
    ("prunekit.experiment.recipe", "StructuredMethod", "prunekit.experiment.method_sections", "StructuredSection"),
    ("prunekit.experiment.recipe", "DSTMethod", "prunekit.experiment.method_sections", "DSTSection"),
    ("prunekit.experiment.recipe", "ModelSpec", "prunekit.experiment.recipe_base", "ModelSection"),
    ("prunekit.experiment.recipe", "DataSpec", "prunekit.experiment.recipe_base", "DataSection"),
    ("prunekit.experiment.recipe", "EvaluateSpec", "prunekit.experiment.recipe_base", "EvaluateSection"),
    ("prunekit.experiment.recipe", "SparsityLearning", "prunekit.training.sparsity", "SparsityLearningConfig"),
    ("prunekit.training.prune_finetune", "RoundRecord", "prunekit.training.prune_finetune", "RoundResult"),
    ("prunekit.training.lottery", "LotteryRecord", "prunekit.training.lottery", "LotteryRoundResult"),
    ("prunekit.structured", "GraphOptions", "prunekit.structured", "GraphConfig"),
    ("prunekit", "CompressionSpec", "prunekit", "CompressionConfig"),
    *[("prunekit.keras_style", name, "prunekit.integrations.keras_style", name)
      for name in ("PRUNING_ATTR", "ConstantSparsity", "PolynomialDecay", "UpdatePruningStep", "prune_low_magnitude", "strip_pruning")],
]


@pytest.mark.parametrize(("old_module", "old", "new_module", "new"), RENAMED, ids=[r[1] for r in RENAMED])
def test_old_name_warns_and_is_the_new_object(old_module: str, old: str, new_module: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        value = getattr(importlib.import_module(old_module), old)
    assert value is getattr(importlib.import_module(new_module), new)


def test_unknown_names_still_raise_attribute_error() -> None:
    for module in {r[0] for r in RENAMED}:
        with pytest.raises(AttributeError):
            getattr(importlib.import_module(module), "NoSuchName")
