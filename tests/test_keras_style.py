"""The TF-MOT three steps: prune_low_magnitude → train with UpdatePruningStep → strip_pruning."""

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from prunekit.errors import ConfigError
from prunekit.integrations.keras_style import PRUNING_ATTR, ConstantSparsity, PolynomialDecay, UpdatePruningStep, prune_low_magnitude, strip_pruning
from prunekit.masks import MaskSet
from prunekit.schedules import SCHEDULES
from prunekit.training import OptimizerConfig, TrainConfig, fit

from tests.training.helpers import Batches, blobs


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def _zeros(model):
    return {name: int((p == 0).sum()) for name, p in model.named_parameters() if name.endswith("weight")}


def _expected(model, s):
    return {name: math.floor(s * p.numel() + 0.5) for name, p in model.named_parameters() if name.endswith("weight")}


def test_three_steps_with_fit_reach_the_final_sparsity_exactly():
    x, y = blobs()
    schedule = PolynomialDecay(initial_sparsity=0.5, final_sparsity=0.8, begin_step=0, end_step=32, frequency=8)
    model = prune_low_magnitude(_mlp(), pruning_schedule=schedule)
    result = fit(model, Batches(x, y, 32), TrainConfig(epochs=3, optimizer=OptimizerConfig(lr=0.05)), val=Batches(x, y, 128, shuffle=False),
                 callbacks=[UpdatePruningStep()], progress=False)
    assert [round(r["sparsity"], 2) for r in result.history] == [0.76, 0.8, 0.8]  # 0.8 - 0.3 * (1 - 16/32)^3 after epoch 0
    model = strip_pruning(model)
    assert not hasattr(model, PRUNING_ATTR) and not MaskSet.from_model(model)
    assert _zeros(model) == _expected(model, 0.8)
    assert set(model.state_dict()) == set(_mlp().state_dict())  # plain model: loads into a fresh one
    assert result.final["val_accuracy"] > 0.9


def test_three_steps_in_a_plain_pytorch_loop():
    x, y = blobs()
    model = prune_low_magnitude(_mlp(), pruning_schedule=ConstantSparsity(0.6, begin_step=5, frequency=5), exclude=("2.*",))
    update = UpdatePruningStep(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for i, (xb, yb) in enumerate(Batches(x, y, 32)):
        assert MaskSet.from_model(model).sparsity() == (0.0 if i < 5 else pytest.approx(0.6, abs=0.01))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
        update.step()
    model = strip_pruning(model)
    assert _zeros(model) == {"0.weight": math.floor(0.6 * 512 + 0.5), "2.weight": 0}


def test_tfmot_argument_names_and_positions():
    a = PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)
    assert (a.initial_sparsity, a.final_sparsity, a.begin_step, a.end_step, a.power, a.frequency) == (0.2, 0.8, 100, 110, 3, 2)
    assert a.sparsity_at(102) == pytest.approx(0.4928)
    b = ConstantSparsity(target_sparsity=0.5, begin_step=0)
    assert (b.end_step, b.frequency) == (-1, 100)
    assert SCHEDULES.get(a.name).model_validate(a.state_dict()).state_dict() == a.state_dict()  # same registry entry
    with pytest.raises(ValidationError, match="final_sparsity"):
        PolynomialDecay(0.2, 1.0, 0, 10)


def test_default_schedule_is_tfmots_constant_half():
    model = prune_low_magnitude(_mlp())
    UpdatePruningStep(model)
    assert MaskSet.from_model(model).sparsity() == pytest.approx(0.5, abs=0.01)


def test_errors_say_what_to_do():
    x, y = blobs()
    with pytest.raises(ConfigError, match="prune_low_magnitude"):
        fit(_mlp(), Batches(x, y, 32), TrainConfig(epochs=1), callbacks=[UpdatePruningStep()], progress=False)
    with pytest.raises(ConfigError, match=r"UpdatePruningStep\(model\)"):
        UpdatePruningStep().step()


class _Stop(Exception):
    pass


def test_resume_restores_the_pruning_step(tmp_path):
    from prunekit.training import Callback

    class StopAt(Callback):
        def on_epoch_start(self, trainer, epoch):
            if epoch == 1:
                raise _Stop

    x, y = blobs()
    config = TrainConfig(epochs=2, optimizer=OptimizerConfig(lr=0.05))
    schedule = PolynomialDecay(0.3, 0.9, 4, 28, frequency=3)
    straight = prune_low_magnitude(_mlp(), pruning_schedule=schedule)
    fit(straight, Batches(x, y, 32), config, callbacks=[UpdatePruningStep()], progress=False)
    with pytest.raises(_Stop):
        fit(prune_low_magnitude(_mlp(), pruning_schedule=schedule), Batches(x, y, 32), config, callbacks=[UpdatePruningStep(), StopAt()],
            checkpoint=tmp_path / "c.safetensors", progress=False)
    resumed = prune_low_magnitude(_mlp(), pruning_schedule=schedule)
    update = UpdatePruningStep()
    fit(resumed, Batches(x, y, 32), config, callbacks=[update], checkpoint=tmp_path / "c.safetensors", progress=False)
    assert update.state_dict()["last_pruned"] == 28
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
