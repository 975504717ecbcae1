"""Stop conditions of iterative pruning: the verdict per step, where the loops stop, what they return, resume."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet
from prunekit.metrics import count_macs, count_parameters
from prunekit.pruners import UnstructuredConfig
from prunekit.pruners.structured import StructuredConfig, StructuredPruner
from prunekit.schedules import Iterative
from prunekit.training import StopCondition, TrainConfig, prune_finetune_structured
from prunekit.training.prune_finetune import load_round, prune_finetune
from prunekit.training.stopping import Reference, StopMeasures, Stopper

from tests.training.helpers import blob_splits, mlp

FINETUNE = TrainConfig(epochs=1, max_steps=2, optimizer={"name": "sgd", "lr": 0.05})


def scripted(values: list[float]) -> tuple[list[nn.Module], object]:
    """A ``validate_fn`` returning ``values`` in call order (the first call measures the starting model)."""
    seen: list[nn.Module] = []
    it: Iterator[float] = iter(values)

    def validate(model: nn.Module) -> float:
        seen.append(model)
        return next(it)

    return seen, validate


def _structured(stop: StopCondition | None, validate=None, tmp_path=None, steps: int = 4, ratio: float = 0.8):
    train, val, example = blob_splits()
    pruner = StructuredPruner(StructuredConfig(ratio=ratio, steps=steps, importance="l2"))
    done: list = []
    run = prune_finetune_structured(mlp(), pruner, train, FINETUNE, example_inputs=example, val=val, checkpoint_dir=tmp_path,
                                    on_step_end=done.append, stop=stop, validate_fn=validate)
    return run, done


# -- the verdict, step by step ----------------------------------------------------------------

def _judge(condition: StopCondition, accuracies: list[float], reference: float = 0.9) -> Stopper:
    stopper = Stopper(condition, Reference(validation_accuracy=reference))
    for step, accuracy in enumerate(accuracies):
        if stopper.observe(step, StopMeasures(validation_accuracy=accuracy)):
            break
    return stopper


def test_the_first_step_past_the_drop_stops_and_the_one_before_is_kept() -> None:
    stopper = _judge(StopCondition(max_accuracy_drop=0.5), [0.9, 0.897, 0.895, 0.893, 0.85])
    assert [c.step for c in stopper.checks] == [0, 1, 2, 3]  # 0.5 points exactly still satisfies; 0.7 does not
    assert [c.satisfied for c in stopper.checks] == [True, True, True, False]
    assert stopper.stopped_at == 3 and stopper.last_good_step == 2 and stopper.kept_step == 2
    assert stopper.checks[3].accuracy_drop == pytest.approx(0.7)
    assert stopper.stop_reason == ("step 3 failed: validation accuracy 89.30% is 0.70 points below the starting model's 90.00% "
                                   "(max_accuracy_drop=0.5); kept step 2, the last that satisfied it")


def test_patience_tolerates_failing_steps_and_a_recovery_resets_it() -> None:
    stopper = _judge(StopCondition(max_accuracy_drop=1.0, patience=1), [0.9, 0.88, 0.9, 0.87, 0.86, 0.9])
    assert stopper.stopped_at == 4 and stopper.last_good_step == 2
    assert stopper.stop_reason.startswith("steps 3–4 failed: validation accuracy 86.00%")


def test_without_restore_best_the_last_step_run_is_kept() -> None:
    stopper = _judge(StopCondition(max_accuracy_drop=1.0, restore_best=False), [0.9, 0.85])
    assert stopper.last_good_step == 0 and stopper.kept_step == 1
    assert stopper.stop_reason.endswith("kept the last step run (restore_best=False)")


def test_a_target_stops_at_the_step_that_reaches_it() -> None:
    stopper = Stopper(StopCondition(min_macs_reduction=2.0), Reference(macs=1000))
    assert [stopper.observe(i, StopMeasures(macs=m)) for i, m in enumerate([800, 600, 500])] == [False, False, True]
    assert stopper.last_good_step == stopper.stopped_at == 2
    assert stopper.stop_reason == "step 2 reached the target: MACs reduction 2.000× ≥ min_macs_reduction 2.0×"


def test_a_measured_metric_target_stops_like_latency_would() -> None:
    stopper = Stopper(StopCondition(metric=lambda m: 0.0, metric_target=4.0, metric_name="latency_ms"), Reference())
    assert not stopper.observe(0, StopMeasures(metric=5.0, metric_name="latency_ms"))
    assert stopper.observe(1, StopMeasures(metric=3.5, metric_name="latency_ms"))
    assert stopper.stop_reason == "step 1 reached the target: latency_ms 3.5 ≤ metric_target 4"


def test_latency_targets_stop_at_the_step_that_reaches_them() -> None:
    stopper = Stopper(StopCondition(max_latency_ms=4.0), Reference())
    assert not stopper.observe(0, StopMeasures(latency_ms=5.0))
    assert stopper.observe(1, StopMeasures(latency_ms=3.5))
    assert stopper.stop_reason == "step 1 reached the target: latency 3.5 ms ≤ max_latency_ms 4"
    stopper = Stopper(StopCondition(min_latency_reduction=2.0), Reference())
    assert [stopper.observe(i, StopMeasures(latency_ms=1.0, latency_reduction=r)) for i, r in enumerate([1.4, 2.1])] == [False, True]
    assert stopper.stop_reason == "step 1 reached the target: latency reduction 2.100× ≥ min_latency_reduction 2.0×"


def test_a_target_reached_by_a_failing_step_stops_at_once_and_keeps_the_last_good() -> None:
    stopper = Stopper(StopCondition(max_accuracy_drop=1.0, max_params=100, patience=5), Reference(validation_accuracy=0.9))
    assert not stopper.observe(0, StopMeasures(validation_accuracy=0.9, params=150))
    assert stopper.observe(1, StopMeasures(validation_accuracy=0.5, params=90))
    assert stopper.last_good_step == 0 and "(and reached parameters 90 ≤ max_params 100)" in stopper.stop_reason


@pytest.mark.parametrize("settings, message", [
    ({}, "StopCondition names no condition: set max_accuracy_drop (points of validation accuracy), max_macs, min_macs_reduction, "
         "max_params, min_params_reduction, max_latency_ms, min_latency_reduction, or metric with metric_target"),
    ({"max_latency_ms": 2.0, "latency_runtime": "tpu"}, "unknown latency_runtime 'tpu'; known: onnxruntime, torch, torch_compile"),
    ({"min_latency_reduction": 1.0}, "greater than 1"),
    ({"patience": 2}, "StopCondition names no condition"),
    ({"metric_target": 3.0}, "metric_target is set but metric is not: a measured metric needs both metric"),
    ({"metric": len}, "metric is set but metric_target is not"),
    ({"metric": "latency", "metric_target": 3.0}, "metric must be a Python callable metric(model) -> float (got 'latency'); recipes cannot name one"),
    ({"max_accuracy_drop": -1}, "greater than or equal to 0"),
    ({"max_accuracy_drop": 0.5, "surprise": 1}, "surprise"),
])
def test_a_condition_that_names_nothing_or_is_malformed_says_what_to_set(settings, message) -> None:
    with pytest.raises(ValidationError) as info:
        StopCondition(**settings)
    assert message in str(info.value)


def test_recipe_form_excludes_the_callable() -> None:
    assert StopCondition(max_accuracy_drop=0.5).model_dump(mode="json", exclude_none=True) == {
        "max_accuracy_drop": 0.5, "latency_batch_size": 1, "latency_threads": 1, "metric_name": "metric", "patience": 0, "restore_best": True}
    assert "metric" not in StopCondition(metric=len, metric_target=1.0).model_dump(mode="json")


# -- structured steps -------------------------------------------------------------------------

def test_structured_steps_stop_at_the_scripted_drop_and_return_the_last_good_model(tmp_path) -> None:
    seen, validate = scripted([0.90, 0.90, 0.898, 0.80, 0.95])
    run, done = _structured(StopCondition(max_accuracy_drop=0.5), validate)
    assert len(seen) == 4  # the starting model, then steps 0, 1, 2; step 3 never runs
    assert [s.step for s in run.steps] == [0, 1, 2] and done == run.steps
    assert run.stopped_at == 2 and run.last_good_step == 1
    assert "step 2 failed: validation accuracy 80.00% is 10.00 points below" in run.stop_reason
    assert [c.satisfied for c in run.stop_checks] == [True, True, False]
    example = blob_splits()[2]
    assert count_macs(run.model, example).dense == run.steps[1].macs > run.steps[2].macs
    assert count_parameters(run.model).params == run.steps[1].params


def test_no_good_step_returns_the_starting_model() -> None:
    _, validate = scripted([0.90, 0.50])
    run, _ = _structured(StopCondition(max_accuracy_drop=0.5), validate)
    assert run.stopped_at == 0 and run.last_good_step is None and len(run.steps) == 1
    assert count_parameters(run.model).params == count_parameters(mlp()).params
    assert "no step satisfied the condition, so the model before step 0 is kept" in run.stop_reason


def test_structured_macs_target_stops_at_the_first_step_below_it() -> None:
    dense = count_macs(mlp(), blob_splits()[2]).dense
    run, _ = _structured(StopCondition(max_macs=int(0.6 * dense)), steps=5)
    below = [s.macs <= 0.6 * dense for s in run.steps]
    assert below[-1] and not any(below[:-1]) and len(run.steps) < 5
    assert run.stopped_at == run.last_good_step == len(run.steps) - 1
    assert count_macs(run.model, blob_splits()[2]).dense == run.steps[-1].macs
    assert run.stop_reason.startswith(f"step {run.stopped_at} reached the target: MACs")


def test_structured_latency_target_times_each_step_side_by_side_and_saves_it(tmp_path) -> None:
    run, _ = _structured(StopCondition(min_latency_reduction=1e5, latency_runtime="torch"), tmp_path=tmp_path, steps=2)
    assert len(run.steps) == 2 and run.stopped_at is None  # unreachable: the schedule runs out
    for check in run.stop_checks:
        assert check.measures.latency_ms > 0 and 0 < check.measures.latency_reduction < 1e5
    saved = json.loads((tmp_path / "step_00" / "stop.json").read_text())
    assert saved["latency_ms"] == run.stop_checks[0].measures.latency_ms


def test_latency_conditions_on_masked_rounds_say_they_need_structured_pruning() -> None:
    train, val, example = blob_splits()
    with pytest.raises(ConfigError, match="stop.max_latency_ms / min_latency_reduction time the pruned model, which needs example_inputs= "
                                          r"\(a batch of inputs\) and structured pruning"):
        prune_finetune(mlp(), train, UnstructuredConfig(sparsity=0.9), SCHEDULE, FINETUNE, val=val, example_inputs=example,
                       stop=StopCondition(max_latency_ms=1.0))


def test_a_rerun_after_a_stop_returns_the_same_answer_without_redoing_steps(tmp_path) -> None:
    _, validate = scripted([0.90, 0.90, 0.898, 0.80])
    first, _ = _structured(StopCondition(max_accuracy_drop=0.5), validate, tmp_path)
    assert not (tmp_path / "step_03").exists()
    assert json.loads((tmp_path / "step_02" / "stop.json").read_text())["validation_accuracy"] == 0.80
    seen, validate = scripted([0.90])  # only the starting model is measured again
    second, done = _structured(StopCondition(max_accuracy_drop=0.5), validate, tmp_path)
    assert done == [] and len(seen) == 1 and not (tmp_path / "step_03").exists()
    assert (second.steps, second.stopped_at, second.last_good_step, second.stop_reason) == (
        first.steps, first.stopped_at, first.last_good_step, first.stop_reason)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a looser condition continues from the steps already done
    _, validate = scripted([0.90, 0.897])
    third, done = _structured(StopCondition(max_accuracy_drop=20.0), validate, tmp_path)
    assert [s.step for s in done] == [3] and third.last_good_step == 3 and third.stopped_at is None
    assert third.stop_reason == "the schedule ended after its 4 step(s) with the condition still satisfied"


def test_accuracy_limit_without_a_validation_split_says_what_to_pass() -> None:
    train, _, example = blob_splits()
    with pytest.raises(ConfigError, match="stop.max_accuracy_drop is measured on a validation split, but none was given; pass val="):
        prune_finetune_structured(mlp(), StructuredPruner(StructuredConfig(ratio=0.5)), train, FINETUNE, example_inputs=example,
                                  stop=StopCondition(max_accuracy_drop=0.5))


def test_a_percentage_from_validate_fn_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"was 87\.0; validate_fn must return a fraction in \[0, 1\]"):
        _structured(StopCondition(max_accuracy_drop=0.5), lambda m: 87.0)


def test_without_a_condition_the_result_names_the_last_step() -> None:
    run, _ = _structured(None, steps=2)
    assert run.last_good_step == 1 and run.stopped_at is None and run.stop_reason is None and run.stop_checks == []


# -- mask rounds ------------------------------------------------------------------------------

SCHEDULE = Iterative(rate=0.5, final_sparsity=0.95)  # rounds at 0.5, 0.75, 0.875, 0.9375, 0.95


def _rounds(stop, validate=None, tmp_path=None, **options):
    train, val, example = blob_splits()
    model = mlp()
    records = prune_finetune(model, train, UnstructuredConfig(sparsity=0.95), SCHEDULE, FINETUNE, val=val, checkpoint_dir=tmp_path,
                             stop=stop, validate_fn=validate, example_inputs=example, **options)
    return model, records


def test_mask_rounds_stop_at_the_drop_and_leave_the_model_at_the_last_good_round(tmp_path) -> None:
    _, validate = scripted([0.90, 0.90, 0.899, 0.70])
    model, records = _rounds(StopCondition(max_accuracy_drop=0.5), validate, tmp_path)
    assert [r.round for r in records] == [0, 1, 2] and records.stopped_at == 2 and records.last_good_step == 1
    assert MaskSet.from_model(model).layer_sparsity() == records[1].layer_sparsity
    saved = load_round(mlp(), tmp_path / "round_001")
    for (k, a), b in zip(model.state_dict().items(), saved.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    seen, validate = scripted([0.90])  # rerun: nothing pruned, trained or measured again
    again, rerun = _rounds(StopCondition(max_accuracy_drop=0.5), validate, tmp_path)
    assert rerun == records and (rerun.stopped_at, rerun.last_good_step) == (2, 1) and len(seen) == 1
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_mask_rounds_without_checkpoints_restore_the_last_good_round_from_memory() -> None:
    _, validate = scripted([0.90, 0.90, 0.70])
    model, records = _rounds(StopCondition(max_accuracy_drop=0.5), validate)
    assert records.last_good_step == 0 and MaskSet.from_model(model).sparsity() == pytest.approx(records[0].sparsity)


def test_mask_rounds_with_no_good_round_leave_the_model_as_given() -> None:
    _, validate = scripted([0.90, 0.10])
    model, records = _rounds(StopCondition(max_accuracy_drop=0.5), validate)
    assert records.last_good_step is None and len(MaskSet.from_model(model)) == 0
    given, restored = mlp().state_dict(), model.state_dict()
    assert restored.keys() == given.keys() and all(torch.equal(restored[k], given[k]) for k in given)


def test_mask_rounds_stop_at_a_non_zero_parameter_target() -> None:
    total = count_parameters(mlp()).params
    model, records = _rounds(StopCondition(min_params_reduction=3.0))
    assert records.stopped_at == records.last_good_step == len(records) - 1 < 4
    assert total / count_parameters(model).nonzero_params >= 3.0
    assert all(check.measures.params > total / 3 for check in records.stop_checks[:-1])


def test_mask_macs_condition_without_example_inputs_says_what_to_pass() -> None:
    train, val, _ = blob_splits()
    with pytest.raises(ConfigError, match="stop.max_macs / min_macs_reduction need the model's MACs; pass example_inputs="):
        prune_finetune(mlp(), train, UnstructuredConfig(sparsity=0.9), SCHEDULE, FINETUNE, val=val, stop=StopCondition(max_macs=10))
