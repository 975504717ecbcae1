"""Sparsity learning before structured pruning: bn_l1 and group lasso push channels toward zero."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from prunekit.pruners.structured import StructuredConfig, StructuredPruner
from prunekit.structured import DependencyGraph
from prunekit.structured.regularizers import group_lasso_penalty
from prunekit.training import SparsityLearningConfig, TrainConfig, fit, learn_sparsity, prune_finetune_structured

from tests.training.helpers import Batches, blobs

TRAIN = TrainConfig(epochs=3, optimizer={"name": "sgd", "lr": 0.05})


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))


def _train() -> Batches:
    return Batches(*blobs(256), batch_size=32)


def test_bn_l1_shrinks_bn_scales() -> None:
    plain, slim = _model(), _model()
    fit(plain, _train(), TRAIN, progress=False)
    learn_sparsity(slim, _train(), SparsityLearningConfig(kind="bn_l1", lam=0.05, train=TRAIN), example_inputs=torch.randn(2, 16))
    assert slim[1].weight.abs().sum() < 0.8 * plain[1].weight.abs().sum()


def test_group_lasso_shrinks_group_norms() -> None:
    plain, lasso = _model(), _model()
    x = torch.randn(2, 16)
    fit(plain, _train(), TRAIN, progress=False)
    learn_sparsity(lasso, _train(), SparsityLearningConfig(kind="group_lasso", lam=0.05, train=TRAIN), example_inputs=x)

    def norm(model: nn.Module) -> float:
        return float(group_lasso_penalty(model, DependencyGraph.build(model, (x,)).prunable_groups(), 1.0).detach())

    assert norm(lasso) < 0.8 * norm(plain)


def test_prune_finetune_learns_sparsity_first(tmp_path) -> None:
    train, x = _train(), torch.randn(2, 16)
    config = SparsityLearningConfig(kind="bn_l1", lam=0.05, train=TrainConfig(epochs=1))
    pruner = StructuredPruner(StructuredConfig(ratio=0.5, importance="bn_scale"))
    run = prune_finetune_structured(_model(), pruner, train, TrainConfig(epochs=1), example_inputs=x, sparsity_learning=config,
                                    checkpoint_dir=tmp_path)
    assert (tmp_path / "sparsity_learning.safetensors").exists()
    assert run.model[0].out_features == 16 and len(run.steps) == 1


def test_recipe_name_is_the_same_settings() -> None:
    from prunekit.experiment import recipe
    from prunekit.experiment.method_sections import StructuredSection

    with pytest.warns(DeprecationWarning, match="SparsityLearningConfig"):
        assert recipe.SparsityLearning is SparsityLearningConfig
    assert StructuredSection.model_fields["sparsity_learning"].annotation == SparsityLearningConfig | None
    assert SparsityLearningConfig().model_dump()["kind"] == "bn_l1"
    with pytest.raises(ValidationError, match="lam"):
        SparsityLearningConfig(lam=0)
    with pytest.raises(ValidationError, match="kind"):
        SparsityLearningConfig(kind="l0")
