import math

import pytest
import torch
from torch import nn

from prunekit.masks import MaskSet
from prunekit.pruners import UnstructuredConfig
from prunekit.schedules import Iterative, OneShot
from prunekit.training import OptimizerConfig, TrainConfig, fit
from prunekit.training import prune_finetune as pf
from prunekit.training.prune_finetune import prune_finetune

from tests.training.helpers import Batches, blobs


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


FINETUNE = TrainConfig(epochs=1, optimizer=OptimizerConfig(lr=0.05))


def _data():
    x, y = blobs()
    return Batches(x, y, 32), Batches(x, y, 128, shuffle=False)


def test_one_shot_is_one_round():
    train, val = _data()
    model = _mlp()
    fit(model, train, TrainConfig(epochs=2, optimizer=OptimizerConfig(lr=0.05)), progress=False)  # dense training first
    records = prune_finetune(model, train, UnstructuredConfig(sparsity=0.9), OneShot(sparsity=0.9), FINETUNE, val=val)
    assert len(records) == 1
    assert records[0].sparsity == pytest.approx(0.9, abs=1e-3) and records[0].target_sparsity == 0.9
    assert records[0].accuracy >= records[0].accuracy_pruned and records[0].accuracy > 0.9


def test_iterative_rounds_follow_the_schedule_with_monotone_masks():
    train, val = _data()
    model = _mlp()
    schedule = Iterative(rate=0.5, final_sparsity=0.9)
    records = prune_finetune(model, train, UnstructuredConfig(sparsity=0.9, overrides={"2.*": 0.45}), schedule, FINETUNE, val=val)
    assert [r.round for r in records] == [0, 1, 2, 3]
    assert [r.target_sparsity for r in records] == pytest.approx([0.5, 0.75, 0.875, 0.9])
    for r in records:  # hidden layer follows the schedule; the output layer stays at half of it
        assert r.layer_sparsity["0.weight"] == pytest.approx(math.floor(r.target_sparsity * 512 + 0.5) / 512)
        assert r.layer_sparsity["2.weight"] == pytest.approx(math.floor(r.target_sparsity / 2 * 128 + 0.5) / 128)
    assert MaskSet.from_model(model).layer_sparsity() == records[-1].layer_sparsity


def test_rerun_skips_finished_rounds_and_ends_in_the_same_state(tmp_path, monkeypatch):
    train, val = _data()
    config, schedule = UnstructuredConfig(sparsity=0.75), Iterative(rate=0.5, final_sparsity=0.75)
    first = _mlp()
    records = prune_finetune(first, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "round_001").iterdir()) == ["masks.safetensors", "model.safetensors", "record.json", "train.safetensors"]

    calls = []
    monkeypatch.setattr(pf, "fit", lambda *a, **k: calls.append(1))
    again = _mlp()
    assert prune_finetune(again, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path) == records
    assert calls == []
    for (k, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_after_a_lost_round_redoes_only_that_round(tmp_path):
    train, val = _data()
    config, schedule = UnstructuredConfig(sparsity=0.75), Iterative(rate=0.5, final_sparsity=0.75)
    first = _mlp()
    records = prune_finetune(first, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path)
    for leftover in (tmp_path / "round_001").iterdir():  # killed before round 1 was recorded
        leftover.unlink()
    again = _mlp()
    assert prune_finetune(again, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path) == records
    for (k, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize(
    "damaged, redone",
    [("round_000/record.json", 0), ("round_000/model.safetensors", 0), ("round_001/masks.safetensors", 1), ("round_001/record.json", 1)],
)
def test_a_damaged_round_file_is_reported_and_that_round_redone(tmp_path, caplog, damaged, redone):
    train, val = _data()
    config, schedule = UnstructuredConfig(sparsity=0.75), Iterative(rate=0.5, final_sparsity=0.75)
    first = _mlp()
    records = prune_finetune(first, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path)
    path = tmp_path / damaged
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    again = _mlp()
    assert prune_finetune(again, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path) == records
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and warnings[0].endswith(f"redoing round {redone}")
    for (k, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_damaged_finetuning_checkpoint_restarts_that_finetuning(tmp_path, caplog):
    train, val = _data()
    config, schedule = UnstructuredConfig(sparsity=0.75), Iterative(rate=0.5, final_sparsity=0.75)
    first = _mlp()
    records = prune_finetune(first, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path)
    (tmp_path / "round_001" / "record.json").unlink()  # killed during round 1's fine-tuning ...
    (tmp_path / "round_001" / "train.safetensors").write_bytes(b"\x00" * 64)  # ... while its checkpoint was garbled
    again = _mlp()
    assert prune_finetune(again, train, config, schedule, FINETUNE, val=val, checkpoint_dir=tmp_path) == records
    assert any("train.safetensors is damaged" in r.getMessage() and "fine-tune 1 starts over" in r.getMessage() for r in caplog.records)
    for (k, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
