"""prune_finetune_structured: structured prune → fine-tune steps as one call, resumable from step folders."""

from __future__ import annotations

import json
import logging

import torch

from prunekit.metrics import count_macs
from prunekit.pruners.structured import StructuredConfig, StructuredPruner
from prunekit.training import TrainConfig, calibration_data, prune_finetune_structured

from tests.training.helpers import blob_splits, mlp

FINETUNE = TrainConfig(epochs=1, optimizer={"name": "sgd", "lr": 0.05})


def _run(tmp_path=None, **options):
    train, val, example = blob_splits()
    pruner = StructuredPruner(StructuredConfig(ratio=0.5, steps=2, importance="taylor"))
    done = []
    run = prune_finetune_structured(mlp(), pruner, train, FINETUNE, example_inputs=example, val=val, calibration_batches=2,
                                    checkpoint_dir=tmp_path, on_step_end=done.append, **options)
    return run, done


def test_two_taylor_steps_shrink_the_model(tmp_path) -> None:
    run, done = _run(tmp_path)
    assert [s.step for s in run.steps] == [0, 1] and done == run.steps
    assert [s.fraction_of_target for s in run.steps] == [0.5, 1.0]
    dense = count_macs(mlp(), blob_splits()[2]).dense
    assert dense > run.steps[0].macs > run.steps[1].macs == count_macs(run.model, blob_splits()[2]).dense
    assert run.model[0].out_features == run.model[2].out_features == 16
    assert all(s.accuracy is not None and 0 <= s.accuracy <= 1 for s in run.steps)
    record = json.loads((tmp_path / "step_01" / "record.json").read_text())
    assert set(record) == {"step", "fraction_of_target", "macs", "params", "accuracy_before_finetune", "accuracy"}
    assert {p.name for p in (tmp_path / "step_00").iterdir()} >= {"architecture.json", "weights.safetensors", "record.json", "train.safetensors"}


def test_resume_skips_finished_steps_and_ends_the_same(tmp_path) -> None:
    first, _ = _run(tmp_path)
    (tmp_path / "step_01" / "record.json").unlink()
    second, done = _run(tmp_path, rebuild=mlp)
    assert [s.step for s in done] == [1]  # step 0 was loaded, not redone
    assert second.steps == first.steps
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    third, done = _run(tmp_path)  # the default rebuild (a copy of the model given) loads the steps too
    assert done == [] and third.steps == first.steps


def test_damaged_record_is_redone_with_a_warning(tmp_path, caplog) -> None:
    first, _ = _run(tmp_path)
    (tmp_path / "step_00" / "record.json").write_text('{"step": 0}')
    with caplog.at_level(logging.WARNING):
        second, done = _run(tmp_path)
    assert "redoing" in caplog.text and "step_00" in caplog.text
    assert [s.step for s in done] == [0] and second.steps == first.steps


def test_without_checkpoints_or_val_accuracy_is_none() -> None:
    train, _, example = blob_splits()
    pruner = StructuredPruner(StructuredConfig(ratio=0.25, importance="l2"))
    run = prune_finetune_structured(mlp(), pruner, train, FINETUNE, example_inputs=example)
    assert len(run.steps) == 1 and run.steps[0].accuracy is None and run.model[0].out_features == 24


def test_calibration_batches_are_the_same_for_a_step() -> None:
    train, _, _ = blob_splits()
    a, b = calibration_data(train, 3, 2), calibration_data(train, 3, 2)
    assert len(a) == 2 and all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))
    assert train.epoch == 10_003
    assert not torch.equal(calibration_data(train, 4, 1)[0][0], a[0][0])
