import pytest
import torch
from torch import nn

from prunekit.errors import CheckpointError, TrainingDivergedError
from prunekit.masks import MaskSet, prunable_parameters, raw_parameter
from prunekit.training import Callback, LRScheduleConfig, OptimizerConfig, TrainConfig, fit, read_train_state

from tests.training.helpers import Batches, blobs


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=4, optimizer=OptimizerConfig(name="sgd", lr=0.05), lr_schedule=LRScheduleConfig(name="cosine"))
    base.update(kw)
    return TrainConfig(**base)


def test_fit_learns_separable_data():
    x, y = blobs()
    model = _mlp()
    result = fit(model, Batches(x, y, 32), _cfg(), val=Batches(x, y, 128, shuffle=False), progress=False)
    assert result.final["val_accuracy"] > 0.95
    assert result.steps == 4 * 16
    assert [r["epoch"] for r in result.history] == [0, 1, 2, 3]


def test_max_steps_and_fractional_epochs_stop_early():
    x, y = blobs()
    assert fit(_mlp(), Batches(x, y, 32), _cfg(epochs=1.5), progress=False).steps == 24
    assert fit(_mlp(), Batches(x, y, 32), _cfg(max_steps=5), progress=False).steps == 5


class _Interrupt(Exception):
    pass


class _KillAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise _Interrupt


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["step", "onecycle", "cosine"])
def test_resume_gives_identical_result(tmp_path, opt, schedule):
    x, y = blobs()
    cfg = _cfg(optimizer=OptimizerConfig(name=opt, lr=0.01), lr_schedule=LRScheduleConfig(name=schedule, milestones=(2,) if schedule == "step" else ()))
    straight = _mlp()
    fit(straight, Batches(x, y, 32), cfg, progress=False)

    ckpt = tmp_path / "last.safetensors"
    interrupted = _mlp()
    with pytest.raises(_Interrupt):
        fit(interrupted, Batches(x, y, 32), cfg, checkpoint=ckpt, callbacks=[_KillAfter(2)], progress=False)
    assert read_train_state(ckpt).epoch == 2
    resumed = _mlp()  # a fresh process would rebuild the model from scratch
    result = fit(resumed, Batches(x, y, 32), cfg, checkpoint=ckpt, progress=False)
    assert result.resumed_from_epoch == 2
    assert len(result.history) == 4
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_masks_stay_applied_through_training_and_resume(tmp_path):
    x, y = blobs()
    model = _mlp()
    masks = MaskSet({n: torch.rand_like(raw_parameter(model, n)) > 0.7 for n in prunable_parameters(model)})
    masks.attach(model)
    fit(model, Batches(x, y, 32), _cfg(optimizer=OptimizerConfig(name="sgd", lr=0.05, weight_decay=1e-4)), checkpoint=tmp_path / "c.safetensors", progress=False)
    for name, mask in masks.items():
        w = model.get_submodule(name.rsplit(".", 1)[0]).weight
        assert torch.all(w[~mask] == 0)
    # the checkpoint holds the masked model: it loads only into a model with the same masks attached
    plain = _mlp()
    with pytest.raises(CheckpointError, match="attach the same masks"):
        fit(plain, Batches(x, y, 32), _cfg(epochs=5), checkpoint=tmp_path / "c.safetensors", progress=False)


def test_loss_penalty_and_after_backward_hooks_run():
    calls = []

    class Probe(Callback):
        def loss_penalty(self, trainer):
            calls.append("penalty")
            return 0.0 * sum(p.sum() for p in trainer.model.parameters())

        def after_backward(self, trainer):
            assert all(p.grad is not None for p in trainer.model.parameters())
            calls.append("grad")

    x, y = blobs(64)
    fit(_mlp(), Batches(x, y, 32), _cfg(epochs=1), callbacks=[Probe()], progress=False)
    assert calls == ["penalty", "grad"] * 2


def test_step_schedule_milestones_must_lie_inside_training():
    with pytest.raises(ValueError, match="milestones"):
        TrainConfig(epochs=3, lr_schedule=LRScheduleConfig(name="step", milestones=(5,)))


def test_optimizer_state_survives_masks_attached_in_a_different_order(tmp_path):
    """Attaching masks reorders model.parameters(); optimizer state is keyed by name, not position."""
    from prunekit.training import load_checkpoint, save_checkpoint
    from prunekit.training.checkpoint import TrainState
    from prunekit.training.optim import make_optimizer

    x, y = blobs(64)
    model = _mlp()
    opt = make_optimizer(model.parameters(), OptimizerConfig(name="adam", lr=0.01))  # built before masks
    masks = MaskSet.ones(model)
    masks.attach(model)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    save_checkpoint(tmp_path / "c.safetensors", model, opt, None, TrainState(epoch=1, step=1))

    other = _mlp()
    masks.attach(other)
    other_opt = make_optimizer(other.parameters(), OptimizerConfig(name="adam", lr=0.01))  # built after masks
    load_checkpoint(tmp_path / "c.safetensors", other, other_opt)
    by_name = dict(model.named_parameters())
    for name, p in other.named_parameters():
        assert torch.equal(other_opt.state[p]["exp_avg"], opt.state[by_name[name]]["exp_avg"]), name


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_checkpoint"])
def test_a_damaged_checkpoint_is_reported_and_training_starts_over(tmp_path, caplog, damage):
    x, y = blobs()
    straight = _mlp()
    fit(straight, Batches(x, y, 32), _cfg(), progress=False)
    ckpt = tmp_path / "last.safetensors"
    with pytest.raises(_Interrupt):
        fit(_mlp(), Batches(x, y, 32), _cfg(), checkpoint=ckpt, callbacks=[_KillAfter(2)], progress=False)
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:-100])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00garbage" * 50)
    else:
        MaskSet({"w": torch.ones(3, dtype=torch.bool)}).save(ckpt)
    restarted = _mlp()
    result = fit(restarted, Batches(x, y, 32), _cfg(), checkpoint=ckpt, progress=False, description="dense training")
    assert result.resumed_from_epoch is None and len(result.history) == 4
    assert any(str(ckpt) in r.getMessage() and "dense training starts over" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    for (k, a), b in zip(straight.state_dict().items(), restarted.state_dict().values()):
        assert torch.equal(a, b), k
    assert read_train_state(ckpt).epoch == 4  # overwritten by the new training


class _Poison(Callback):
    """Makes the first weight infinite after ``step`` (the loss of that step is still finite)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, step, loss):
        if step == self.step:
            with torch.no_grad():
                trainer.model[0].weight[0, 0] = float("inf")


def test_a_non_finite_loss_stops_training_before_anything_is_saved(tmp_path):
    x, y = blobs()
    x[40] = float("nan")  # in the second batch of epoch 0 (no shuffling)
    ckpt = tmp_path / "c.safetensors"
    with pytest.raises(TrainingDivergedError, match=r"dense training diverged: the training loss became nan at epoch 0 \(step 2\); lower the learning rate"):
        fit(_mlp(), Batches(x, y, 32, shuffle=False), _cfg(), checkpoint=ckpt, progress=False, description="dense training")
    assert not ckpt.exists()


def test_non_finite_weights_stop_training_before_the_epoch_is_checkpointed(tmp_path):
    x, y = blobs()
    ckpt = tmp_path / "c.safetensors"
    with pytest.raises(TrainingDivergedError, match=r"parameter 0.weight became non-finite at epoch 1 \(step 32\)"):
        fit(_mlp(), Batches(x, y, 32), _cfg(), checkpoint=ckpt, callbacks=[_Poison(32)], progress=False)
    assert read_train_state(ckpt).epoch == 1  # the last good epoch


def test_fit_reseeds_each_epoch_and_gives_the_callers_rng_back():
    x, y = blobs()
    weights = []
    for caller_seed in (0, 123):  # dropout draws from the reseeded global RNG, not the caller's stream
        model = _mlp()
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        fit(model, Batches(x, y, 32), _cfg(epochs=2), progress=False)
        assert torch.equal(torch.get_rng_state(), before)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    model = _mlp()
    before = torch.get_rng_state()
    with pytest.raises(_Interrupt):  # also when training stops with an error
        fit(model, Batches(x, y, 32), _cfg(epochs=2), callbacks=[_KillAfter(1)], progress=False)
    assert torch.equal(torch.get_rng_state(), before)
