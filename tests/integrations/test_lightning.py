"""PrunekitCallback on a tiny LightningModule on CPU: gradual, N:M, RigL, structured, and resume from a Lightning checkpoint."""

from __future__ import annotations

import importlib
import math
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.masks import MaskSet

from .helpers import batches, convnet

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
GRADUAL = {"method": "gradual", "scope": "layer", "schedule": {
    "name": "polynomial_decay", "initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 6, "frequency": 2}}


@pytest.fixture(scope="module")
def kit(lightning):
    from prunekit.integrations.lightning import PrunekitCallback

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = convnet()
            self.example_input_array = X

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    class StopAfterFirstEpoch(lightning.Callback):
        """An interruption: the run ends after its first epoch (checkpoint saved), as if the machine went away."""

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            trainer.should_stop = True

    def fit(recipe, *, ckpt_path=None, dirpath=None, interrupt: bool = False, module: str | None = "net", **options):
        model = Tiny()
        callback = PrunekitCallback(recipe, module=module, **options)
        callbacks = [callback, *([StopAfterFirstEpoch()] if interrupt else [])]
        if dirpath is not None:
            callbacks.append(lightning.pytorch.callbacks.ModelCheckpoint(dirpath=dirpath, save_last=True, every_n_epochs=1))
        trainer = lightning.Trainer(accelerator="cpu", max_epochs=2, enable_progress_bar=False, logger=False,
                                    enable_checkpointing=dirpath is not None, enable_model_summary=False, callbacks=callbacks)
        trainer.fit(model, DataLoader(TensorDataset(*map(torch.cat, zip(*batches(4)))), batch_size=4), ckpt_path=ckpt_path)
        return model, callback

    return fit


def test_gradual_reaches_exact_sparsity(kit) -> None:
    model, callback = kit(GRADUAL, finish=False)
    assert callback.manager.steps == 8
    masks = MaskSet.from_model(model.net)
    assert {n: int((~m).sum()) for n, m in masks.items()} == {n: math.floor(0.5 * m.numel() + 0.5) for n, m in masks.items()}


def test_nm_pattern_holds_after_training(kit) -> None:
    model, _ = kit({"method": "nm", "n": 2, "m": 4, "permute": False, "include": ["3.weight", "8.weight"]})
    assert not MaskSet.from_model(model)  # finished: masks folded into the weights
    for w in (model.net[3].weight, model.net[8].weight):
        assert ((w.detach().movedim(1, -1).reshape(-1, 4) != 0).sum(1) <= 2).all()


def test_rigl_keeps_sparsity(kit) -> None:
    section = {"method": "dst", "algorithm": "rigl", "sparsity": 0.75, "distribution": "uniform", "delta_t": 2}
    model, callback = kit(section, finish=False)
    masks = MaskSet.from_model(model.net)
    assert masks.kept() == round(0.25 * masks.numel())
    assert callback.state_dict()["pruning"] == {"updates": 2}  # steps 2 and 4 (< end_step 6 = 75% of 8 steps)


def test_structured_removes_channels_and_keeps_the_masked_outputs(kit) -> None:
    section = {"method": "structured", "ratio": 0.5, "steps": 2, "importance": "l1", "round_to": 1}
    model, callback = kit(section, module=None, finish=False)  # the whole LightningModule is traced and pruned
    net = model.net.eval()
    with torch.no_grad():
        masked = net(X)
    callback.manager.finish()
    net.eval()  # finish() leaves the LightningModule's mode, train, on all its modules
    assert [m.out_channels for m in net if isinstance(m, nn.Conv2d)] == [4, 4] and net[8].in_features == 4
    assert not MaskSet.from_model(net)
    with torch.no_grad():
        torch.testing.assert_close(net(X), masked, rtol=1e-5, atol=1e-6)


def test_resume_from_a_lightning_checkpoint_gives_identical_masks(kit, tmp_path) -> None:
    section = {"method": "dst", "algorithm": "set", "sparsity": 0.5, "delta_t": 1}
    whole, _ = kit(section, finish=False)
    _, interrupted = kit(section, dirpath=tmp_path, interrupt=True, finish=False)
    assert interrupted.manager.steps == 4
    resumed, callback = kit(section, ckpt_path=tmp_path / "last.ckpt", dirpath=tmp_path / "resumed", finish=False)
    assert callback.manager.steps == 8
    assert MaskSet.from_model(resumed.net).equal(MaskSet.from_model(whole.net))
    assert callback.state_dict()["pruning"] == {"updates": 5}  # steps 1-5 (< end_step 6); 5 after the resume at step 4


def test_without_lightning_the_import_error_gives_the_install_hint(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "prunekit.integrations.lightning", raising=False)
    with pytest.raises(ImportError, match=r"needs the optional 'lightning' package \(pip install 'prunekit\[lightning\]'\)"):
        importlib.import_module("prunekit.integrations.lightning")


def test_the_callback_is_reachable_from_the_package(kit) -> None:
    import prunekit.integrations
    from prunekit.integrations.lightning import PrunekitCallback

    assert prunekit.integrations.PrunekitCallback is PrunekitCallback
