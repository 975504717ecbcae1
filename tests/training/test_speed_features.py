import logging

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import prunekit.training.precision as precision
import prunekit.training.trainer as trainer_module
from prunekit.errors import ConfigError
from prunekit.experiment.recipe import load_recipe
from prunekit.masks import MaskSet, prunable_parameters, raw_parameter
from prunekit.training import Callback, LRScheduleConfig, OptimizerConfig, TrainConfig, fit
from prunekit.training.dst import DSTConfig, RigL
from prunekit.training.loop import _status

from tests.experiment.recipes import tiny_recipe
from tests.training.helpers import Batches, blobs, mlp


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, optimizer=OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4), lr_schedule=LRScheduleConfig(name="cosine"))
    return TrainConfig(**{**base, **kw})


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _images(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float()
    return x, y


def _assert_same_weights(a: nn.Module, b: nn.Module, atol: float = 0.0) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        if atol:
            torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=name)
        else:
            assert torch.equal(p, q), name


class _Record(Callback):
    """Gradient dtypes/norms seen by after_backward, step numbers and losses of on_step_end, scaler scale at the end."""

    def __init__(self) -> None:
        self.grad_dtypes, self.grad_norms, self.steps, self.scale = set(), [], [], None

    def after_backward(self, trainer):
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        self.grad_dtypes |= {g.dtype for g in grads}
        self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    def on_step_end(self, trainer, step, loss):
        self.steps.append(step)

    def on_train_end(self, trainer):
        self.scale = trainer.scaler.get_scale() if trainer.scaler is not None else None


class _Interrupt(Exception):
    pass


class _KillAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise _Interrupt


def test_bf16_autocast_trains_with_fp32_weights_and_gradients():
    x, y = blobs(256)
    model, record, seen = mlp(), _Record(), set()
    model[0].register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    result = fit(model, Batches(x, y, 32), _cfg(epochs=3, precision="bf16"), callbacks=[record], progress=False)
    assert seen == {torch.bfloat16}  # the Linear ran in bf16 inside autocast
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert record.grad_dtypes == {torch.float32}
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("n", [192, 160])  # 160: the last group of micro-batches holds only one
def test_grad_accumulation_of_two_batches_equals_one_double_batch(n):
    x, y = blobs(n)
    accumulated, record = mlp(), _Record()
    result = fit(accumulated, Batches(x, y, 32), _cfg(grad_accumulation=2), callbacks=[record], progress=False)
    double = mlp()
    reference = fit(double, Batches(x, y, 64), _cfg(), progress=False)
    _assert_same_weights(accumulated, double, atol=1e-6)
    assert result.steps == reference.steps == 2 * (n // 64 + (n % 64 > 0))
    assert record.steps == list(range(1, result.steps + 1))  # on_step_end once per optimizer step
    assert [r["lr"] for r in result.history] == pytest.approx([r["lr"] for r in reference.history])
    assert [r["train_loss"] for r in result.history] == pytest.approx([r["train_loss"] for r in reference.history], abs=1e-6)


def test_channels_last_matches_contiguous_and_gives_the_layout_back():
    x, y = _images()
    layouts = []
    fast = _convnet()
    fast[0].register_forward_pre_hook(lambda m, i: layouts.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    fit(fast, Batches(x, y, 32), _cfg(channels_last=True), progress=False)
    plain = _convnet()
    fit(plain, Batches(x, y, 32), _cfg(), progress=False)
    assert layouts and all(layouts)
    assert fast[0].weight.is_contiguous()  # back in the default layout after fit
    _assert_same_weights(fast, plain, atol=1e-5)


@pytest.mark.slow  # the first torch.compile takes 10-20 s on a shared CPU
def test_compile_trains_a_masked_model():
    x, y = blobs(256)
    model = mlp()
    masks = MaskSet({n: torch.rand_like(raw_parameter(model, n)) > 0.5 for n in prunable_parameters(model)})
    masks.attach(model)
    result = fit(model, Batches(x, y, 32), _cfg(epochs=3, compile=True), val=Batches(x, y, 128, shuffle=False), progress=False)
    assert result.final["val_accuracy"] > 0.9
    for name, mask in masks.items():
        assert torch.all(model.get_submodule(name.rsplit(".", 1)[0]).weight[~mask] == 0)
    eager = mlp()
    masks.attach(eager)
    fit(eager, Batches(x, y, 32), _cfg(epochs=3), progress=False)
    _assert_same_weights(model, eager, atol=1e-4)


def test_a_failing_compile_warns_and_trains_eager(monkeypatch, caplog):
    def broken(x):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(torch, "compile", lambda model: broken)
    x, y = blobs(128)
    model = mlp()
    with caplog.at_level(logging.WARNING, logger="prunekit.training.precision"):
        fit(model, Batches(x, y, 32), _cfg(compile=True), progress=False)
    assert "torch.compile of Sequential failed (RuntimeError: backend exploded); training continues without compile" in caplog.text
    eager = mlp()
    fit(eager, Batches(x, y, 32), _cfg(), progress=False)
    _assert_same_weights(model, eager)


def _resume_matches_straight(tmp_path, cfg: TrainConfig, make=mlp) -> tuple[_Record, _Record]:
    x, y = blobs(192)
    straight, record = make(), _Record()
    fit(straight, Batches(x, y, 32), cfg, callbacks=[record], progress=False)
    ckpt = tmp_path / "last.safetensors"
    with pytest.raises(_Interrupt):
        fit(make(), Batches(x, y, 32), cfg, checkpoint=ckpt, callbacks=[_KillAt(2)], progress=False)
    resumed, resumed_record = make(), _Record()
    result = fit(resumed, Batches(x, y, 32), cfg, checkpoint=ckpt, callbacks=[resumed_record], progress=False)
    assert result.resumed_from_epoch == 2
    _assert_same_weights(straight, resumed)
    return record, resumed_record


def test_resume_is_exact_with_bf16_and_accumulation(tmp_path):
    straight, resumed = _resume_matches_straight(tmp_path, _cfg(epochs=4, precision="bf16", grad_accumulation=2))
    assert resumed.steps and resumed.steps == straight.steps[-len(resumed.steps):]  # the resumed run took the same later steps
    assert resumed.grad_norms == straight.grad_norms[-len(resumed.grad_norms):]  # on bit-identical gradients


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    """fp16 with a GradScaler on CPU (prunekit allows it on CUDA only), its scale growing every 2 steps so it changes."""
    monkeypatch.setattr(precision, "check_precision", lambda p, d: None)
    monkeypatch.setattr(trainer_module, "make_grad_scaler",
                        lambda p, d: torch.amp.GradScaler(d.type, init_scale=2.0**10, growth_interval=2) if p == "fp16" else None)


def test_fp16_grad_scaler_state_resumes_exactly(tmp_path, fp16_on_cpu):
    straight, resumed = _resume_matches_straight(tmp_path, _cfg(epochs=4, precision="fp16"))
    assert straight.scale is not None and straight.scale != 2.0**10  # the scale moved during training
    assert resumed.scale == straight.scale


def test_callbacks_see_unscaled_gradients(fp16_on_cpu):
    x, y = blobs(64)
    scaled, plain = _Record(), _Record()
    fit(mlp(), Batches(x, y, 32), _cfg(epochs=1, precision="fp16"), callbacks=[scaled], progress=False)
    fit(mlp(), Batches(x, y, 32), _cfg(epochs=1), callbacks=[plain], progress=False)
    assert scaled.grad_norms[0] == pytest.approx(plain.grad_norms[0], rel=0.02)  # not 1024 times larger


def test_fp16_on_cpu_is_refused_before_training():
    x, y = blobs(64)
    model = mlp()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=r"precision 'fp16' needs a CUDA device, but training runs on cpu: .* set precision: bf16 \(or fp32\) for cpu, or device: cuda"):
        fit(model, Batches(x, y, 32), _cfg(precision="fp16"), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("field, value, message", [
    ("precision", "fp8", "Input should be 'fp32', 'bf16' or 'fp16'"),
    ("grad_accumulation", 0, "greater than or equal to 1"),
])
def test_bad_speed_settings_are_refused(field, value, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(**{field: value})


def test_recipes_take_the_speed_settings():
    raw = tiny_recipe()
    raw["train"] |= {"precision": "bf16", "channels_last": True, "compile": False, "grad_accumulation": 4}
    raw["prune"]["finetune"] |= {"precision": "bf16", "grad_accumulation": 2}
    recipe = load_recipe(raw)
    assert (recipe.train.precision, recipe.train.channels_last, recipe.train.grad_accumulation) == ("bf16", True, 4)
    assert recipe.prune.finetune.grad_accumulation == 2


def test_throughput_is_recorded_per_epoch_and_shown():
    x, y = blobs(128)
    result = fit(mlp(), Batches(x, y, 32), _cfg(), progress=False)
    for record in result.history:
        assert record["images_per_second"] == pytest.approx(128 / record["seconds"])
        assert record["images_per_second"] > 0
    assert _status({"train_loss": 0.5, "val_accuracy": 0.9, "images_per_second": 1234.4}) == "loss 0.500 val 90.00% 1234 img/s"


def test_rigl_grows_from_unscaled_gradients(fp16_on_cpu):
    class Watch(RigL):
        def update(self, model, optimizer, step):
            self.seen = {name: float(grad.abs().max()) for name, grad in self._grads.items()}
            return super().update(model, optimizer, step)

    x, y = blobs(32)
    runs = {}
    for p in ("fp16", "fp32"):
        rigl = Watch(DSTConfig(sparsity=0.5, delta_t=1, end_step=10, distribution="uniform"))
        fit(rigl.prepare(mlp()), Batches(x, y, 32), _cfg(epochs=1, precision=p), callbacks=[rigl], progress=False)
        runs[p] = rigl.seen
    assert runs["fp16"] == pytest.approx(runs["fp32"], rel=0.02)  # not 1024 times larger


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_fp16_is_allowed_on_any_cuda_device(device):
    precision.check_precision("fp16", torch.device(device))  # no error: the GradScaler path is CUDA's
    with pytest.raises(ConfigError, match="precision 'fp16' needs a CUDA device, but training runs on mps"):
        precision.check_precision("fp16", torch.device("mps"))
