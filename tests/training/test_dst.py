import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet, effective_weight, raw_parameter
from prunekit.training import Callback, OptimizerConfig, TrainConfig, TrainState, fit
from prunekit.training.dst import SET, DSTConfig, RigL, initial_masks, update_fraction

from tests.training.helpers import Batches, blobs


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 48), nn.ReLU(), nn.Linear(48, 24), nn.ReLU(), nn.Linear(24, 4))


def _counts(masks):
    return {n: int(m.sum()) for n, m in masks.items()}


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_initial_masks_keep_exactly_the_target_overall(distribution):
    model = _mlp()
    masks = initial_masks(model, DSTConfig(sparsity=0.9, distribution=distribution))
    total = 16 * 48 + 48 * 24 + 24 * 4
    assert masks.kept() == total - math.floor(0.9 * total + 0.5)
    layer = masks.layer_sparsity()
    if distribution == "erk":  # ERK: bigger layers sparser
        assert layer["2.weight"] > layer["0.weight"] > layer["4.weight"]
    else:
        assert all(abs(s - 0.9) < 0.01 for s in layer.values())
    with pytest.raises(ValueError, match="allowed values: erk, uniform"):
        DSTConfig(sparsity=0.9, distribution="er")


def test_cosine_update_fraction():
    assert update_fraction(0.3, 0, 100) == pytest.approx(0.3)
    assert update_fraction(0.3, 50, 100) == pytest.approx(0.15)
    assert update_fraction(0.3, 100, 100) == 0.0


class _Recorder(Callback):
    def __init__(self):
        self.masks = []

    def on_step_end(self, trainer, step, loss):
        self.masks.append(MaskSet.from_model(trainer.model))


@pytest.mark.parametrize("method", [RigL, SET])
def test_sparsity_stays_exactly_constant_and_masks_change_only_at_updates(method):
    x, y = blobs()
    dst = method(DSTConfig(sparsity=0.8, delta_t=4, alpha=0.5))
    model = dst.prepare(_mlp())
    start = MaskSet.from_model(model)
    recorder = _Recorder()
    fit(model, Batches(x, y, 32), TrainConfig(epochs=2, optimizer=OptimizerConfig(lr=0.05)), callbacks=[dst, recorder], progress=False)
    assert dst.end_step == 24 and dst.updates == 5  # steps 4, 8, ..., 20 (T_end = 75% of 32)
    previous = start
    for step, masks in enumerate(recorder.masks, start=1):
        assert _counts(masks) == _counts(start), step
        changed = not masks.equal(previous)
        assert changed <= (step % 4 == 0 and step < 24), step
        previous = masks
    assert not recorder.masks[-1].equal(start)


def test_rigl_grows_where_the_dense_gradient_is_largest_and_zero_initialises():
    model = _mlp()
    rigl = RigL(DSTConfig(sparsity=0.7, delta_t=1, alpha=0.6, end_step=1000))
    rigl.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = blobs(n=64)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()  # fills the momentum buffers
    optimizer.zero_grad()
    trainer = SimpleNamespace(model=model, optimizer=optimizer, state=TrainState(), total_steps=1000)
    rigl.on_train_start(trainer)  # arms gradient capture for iteration 1

    reference = {}
    plain = _mlp()  # reference: a plain model computing with the same effective weights
    with torch.no_grad():
        for name in rigl.names:
            raw_parameter(plain, name).copy_(effective_weight(model, name))
            raw_parameter(plain, name.replace("weight", "bias")).copy_(raw_parameter(model, name.replace("weight", "bias")))
    nn.functional.cross_entropy(plain(x), y).backward()
    nn.functional.cross_entropy(model(x), y).backward()
    for name in rigl.names:
        reference[name] = raw_parameter(plain, name).grad
        assert torch.allclose(rigl.grow_scores(name, raw_parameter(model, name), 1), reference[name].abs(), atol=1e-7)

    before = MaskSet.from_model(model)
    magnitudes = {n: raw_parameter(model, n).detach().abs().clone() for n in rigl.names}
    rigl.on_step_end(trainer, 1, 0.0)
    after = MaskSet.from_model(model)
    assert _counts(after) == _counts(before)
    fraction = update_fraction(0.6, 1, 1000)
    for name in rigl.names:
        old, new = before[name], after[name]
        k = min(round(fraction * int(old.sum())), int((~old).sum()))
        if k == 0:  # ERK made this small layer dense: nothing to drop or grow
            assert torch.equal(new, old)
            continue
        order = torch.argsort(torch.where(old.flatten(), magnitudes[name].flatten(), torch.tensor(float("inf"))), stable=True)
        smallest = torch.zeros(old.numel(), dtype=torch.bool)
        smallest[order[:k]] = True
        smallest = smallest.view_as(old)  # the k active weights of smallest magnitude
        assert not (old & ~new & ~smallest).any(), "only the k smallest active weights may be dropped"
        candidates = ~old | smallest
        grown = new & candidates
        assert int(grown.sum()) == k
        g = reference[name].abs()
        assert g[grown].min() >= g[candidates & ~new].max(), "grown where |dense gradient| is largest"
        born = new & ~old
        assert (raw_parameter(model, name)[born] == 0).all()
        assert (optimizer.state[raw_parameter(model, name)]["momentum_buffer"][born] == 0).all()


def test_fit_without_prepare_says_what_to_do():
    x, y = blobs()
    with pytest.raises(ConfigError, match=r"RigL.prepare\(model\)"):
        fit(_mlp(), Batches(x, y, 32), TrainConfig(epochs=1), callbacks=[RigL(DSTConfig(sparsity=0.5))], progress=False)


class _Stop(Exception):
    pass


class _StopAt(Callback):
    def on_epoch_start(self, trainer, epoch):
        if epoch == 1:
            raise _Stop


@pytest.mark.parametrize("method", [RigL, SET])
def test_resume_is_exact(tmp_path, method):
    x, y = blobs()
    config, train = DSTConfig(sparsity=0.8, delta_t=3, distribution="uniform"), TrainConfig(epochs=2, optimizer=OptimizerConfig(lr=0.05, momentum=0.9))
    straight = method(config)
    straight_model = straight.prepare(_mlp())
    fit(straight_model, Batches(x, y, 32), train, callbacks=[straight], progress=False)
    first = method(config)
    with pytest.raises(_Stop):
        fit(first.prepare(_mlp()), Batches(x, y, 32), train, callbacks=[first, _StopAt()], checkpoint=tmp_path / "c.safetensors", progress=False)
    resumed = method(config)
    model = resumed.prepare(_mlp())
    fit(model, Batches(x, y, 32), train, callbacks=[resumed], checkpoint=tmp_path / "c.safetensors", progress=False)
    assert resumed.updates == straight.updates
    for (k, a), b in zip(straight_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
