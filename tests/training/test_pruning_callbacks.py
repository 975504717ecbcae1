import math

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet
from prunekit.pruners import UnstructuredConfig
from prunekit.schedules import Cubic, OneShot, PolynomialDecay
from prunekit.training import Callback, OptimizerConfig, TrainConfig, fit
from prunekit.training.pruning_callbacks import GradualPruning

from tests.training.helpers import Batches, blobs


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "optimizer": OptimizerConfig(name="sgd", lr=0.05), **kw})


def _expected(n, s):
    return math.floor(s * n + 0.5)


class _Recorder(Callback):
    """Records the masks in force during each iteration (seen at after_backward)."""

    def __init__(self):
        self.masks = []

    def after_backward(self, trainer):
        self.masks.append(MaskSet.from_model(trainer.model))


def test_masks_follow_the_schedule_and_change_only_at_events():
    x, y = blobs()
    schedule = Cubic(initial_sparsity=0.0, final_sparsity=0.9, begin_step=8, frequency=8, n_steps=4)  # events 8..40
    pruning = GradualPruning(UnstructuredConfig(sparsity=0.9), schedule)
    recorder = _Recorder()
    result = fit(pruning.prepare(_mlp()), Batches(x, y, 32), _cfg(), callbacks=[pruning, recorder], progress=False)
    assert len(recorder.masks) == 64
    for step, masks in enumerate(recorder.masks):  # iteration index `step` trains after `step` completed ones
        events = [t for t in schedule.event_steps() if t <= step]
        target = schedule.sparsity_at(events[-1]) if events else 0.0
        assert {n: int((~m).sum()) for n, m in masks.items()} == {n: _expected(m.numel(), target) for n, m in masks.items()}, step
        if step:
            previous = recorder.masks[step - 1]
            assert all(torch.equal(masks[n] & previous[n], masks[n]) for n in masks), "monotone"
            assert (step in schedule.event_steps()) or masks.equal(previous)
    assert [r["sparsity"] for r in result.history][-1] == pytest.approx(MaskSet.from_model(pruning.model).sparsity())


def test_event_at_step_zero_prunes_before_training_and_global_scope_is_exact():
    x, y = blobs()
    recorder = _Recorder()
    pruning = GradualPruning(UnstructuredConfig(scope="global"), OneShot(sparsity=0.75))
    fit(pruning.prepare(_mlp()), Batches(x, y, 32), _cfg(epochs=1), callbacks=[pruning, recorder], progress=False)
    first = recorder.masks[0]
    assert first.numel() - first.kept() == _expected(first.numel(), 0.75)


class _Interrupt(Exception):
    pass


class _KillAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise _Interrupt


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_resume_gives_identical_masks_and_weights(tmp_path, criterion):
    x, y = blobs()
    schedule = PolynomialDecay(initial_sparsity=0.1, final_sparsity=0.8, begin_step=2, end_step=50, frequency=6)  # 16 steps/epoch; event at 32
    config = UnstructuredConfig(criterion=criterion, sparsity=0.8)
    straight = GradualPruning(config, schedule)
    fit(straight.prepare(_mlp()), Batches(x, y, 32), _cfg(), callbacks=[straight], progress=False)

    ckpt = tmp_path / "c.safetensors"
    interrupted = GradualPruning(config, schedule)
    with pytest.raises(_Interrupt):
        fit(interrupted.prepare(_mlp()), Batches(x, y, 32), _cfg(), checkpoint=ckpt, callbacks=[interrupted, _KillAt(2)], progress=False)
    pruning = GradualPruning(config, schedule)
    resumed = pruning.prepare(_mlp())  # a fresh process rebuilds the model and its masks, then fit loads the checkpoint
    result = fit(resumed, Batches(x, y, 32), _cfg(), checkpoint=ckpt, callbacks=[pruning], progress=False)
    assert result.resumed_from_epoch == 2
    assert pruning.last_pruned == 50
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_plain_loop_with_prepare_and_step():
    x, y = blobs()
    model = _mlp()
    schedule = PolynomialDecay(initial_sparsity=0.5, final_sparsity=0.9, begin_step=0, end_step=10, frequency=5)
    pruning = GradualPruning(UnstructuredConfig(sparsity=0.9), schedule)
    with pytest.raises(ConfigError, match="prepare"):
        pruning.step()
    pruning.prepare(model)
    assert pruning.sparsity() == pytest.approx(0.5, abs=0.01)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for i, (xb, yb) in enumerate(Batches(x, y, 32)):
        if i == 10:
            break
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
        pruning.step()
        if i == 4:
            assert pruning.sparsity() == pytest.approx(schedule.sparsity_at(5), abs=0.01)
    masks = MaskSet.from_model(model)
    assert {n: int((~m).sum()) for n, m in masks.items()} == {n: _expected(m.numel(), 0.9) for n, m in masks.items()}


def test_gradient_criterion_without_batches_uses_the_last_training_batch():
    x, y = blobs()
    pruning = GradualPruning(UnstructuredConfig(criterion="snip"), OneShot(sparsity=0.5, step=3))
    model = pruning.prepare(_mlp())
    fit(model, Batches(x, y, 32), _cfg(epochs=1), callbacks=[pruning], progress=False)
    assert MaskSet.from_model(model).sparsity() == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="needs gradients"):
        GradualPruning(UnstructuredConfig(criterion="snip"), OneShot(sparsity=0.5)).prepare(_mlp())


def test_fit_without_prepare_says_what_to_do():
    x, y = blobs()
    with pytest.raises(ConfigError, match=r"GradualPruning.prepare\(model\)"):
        fit(_mlp(), Batches(x, y, 32), _cfg(epochs=1), callbacks=[GradualPruning(UnstructuredConfig(), OneShot(sparsity=0.5))], progress=False)
