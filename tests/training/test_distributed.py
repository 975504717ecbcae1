"""Multi-process training (2 gloo ranks on CPU): identical masks, plans and weights on every rank, the
same accuracy as one process, exact resume after a rank is killed, and only rank 0 writing files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.multiprocessing import ProcessExitedException

from prunekit.errors import ConfigError
from prunekit.training import TrainConfig, fit
from prunekit.zoo.data.dataset import ArrayDataset
from prunekit.zoo.data.loaders import BatchLoader

from tests.experiment.recipes import tiny_recipe
from tests.training import ddp_workers
from tests.training.ddp_workers import digits, digits_mlp, launch


def _ranks(out, name):
    return [torch.load(out / f"{name}-rank{r}.pt", weights_only=True) for r in (0, 1)]


def _metrics(history: str) -> list[dict]:
    """Epoch records without their timings."""
    return [{k: v for k, v in rec.items() if k not in ("seconds", "images_per_second")} for rec in json.loads(history)]


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- BatchLoader.shard -----------------------------------------------------------------------------
def _loader(n=10, **kw):
    data = ArrayDataset(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n), mean=[0.0], std=[1.0], scale=1.0)
    return BatchLoader(data, batch_size=2, **kw)


def _labels(loader):
    return [int(v) for _, y in loader for v in y]


def test_shards_split_each_epochs_permutation_padded_to_equal_lengths():
    full = _loader(shuffle=True, seed=3)
    shards = [full.shard(r, 3) for r in range(3)]
    for epoch in (0, 5):
        full.set_epoch(epoch)
        order = _labels(full)
        padded = order + order[:2]  # 10 examples → 12 = 3 × 4
        for r, shard in enumerate(shards):
            shard.set_epoch(epoch)
            assert _labels(shard) == padded[r::3]
            assert len(shard) == 2 and shard.dataset_size == 4
    assert "shard=1/3" in repr(shards[1]) and full.world_size == 1  # the original is unchanged


def test_shard_errors_are_specific():
    with pytest.raises(ConfigError, match=r"rank must be in \[0, world_size\), got rank=2, world_size=2"):
        _loader().shard(2, 2)
    with pytest.raises(ConfigError, match="already shard 0 of 2"):
        _loader().shard(0, 2).shard(0, 2)
    with pytest.raises(ConfigError, match="cannot split 3 examples between 4 processes"):
        _loader(3).shard(0, 4)


# -- two ranks -------------------------------------------------------------------------------------
def _tiny_gradual_recipe():
    recipe = tiny_recipe()
    recipe["train"]["epochs"] = 1
    recipe["prune"] = {"method": "gradual", "criterion": "magnitude", "scope": "layer", "sparsity": 0.5,
                       "schedule": {"name": "polynomial_decay", "initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 4, "frequency": 2},
                       "train": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}}
    recipe["evaluate"] = {"latency": False}
    return recipe


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One 2-rank launch: gradual/RigL/structured pruning, 4 epochs of training (the reference for resume) and a recipe run."""
    out = tmp_path_factory.mktemp("ddp")
    launch(ddp_workers.everything_worker, 2, out, _tiny_gradual_recipe())
    return out


def test_gradual_taylor_masks_and_weights_are_identical_on_both_ranks(launched):
    a, b = _ranks(launched, "gradual")
    _assert_same_state(a["state"], b["state"])
    assert a["sparsity"] == b["sparsity"] == pytest.approx(0.7, abs=1e-3)


def test_rigl_masks_are_identical_on_both_ranks(launched):
    a, b = _ranks(launched, "rigl")
    _assert_same_state(a["state"], b["state"])
    assert a["updates"] == b["updates"] == 2  # steps 2 and 4 of 9 (T_end = 6)


def test_a_structured_plan_that_differed_is_rank_0s_on_both_ranks(launched):
    a, b = _ranks(launched, "structured")
    assert a["spec"] == b["spec"]
    assert a["state"]["1.weight"].shape == (24, 64)  # rank 0 removed 25% (rank 1 alone would have removed 50%)
    _assert_same_state(a["state"], b["state"])


def test_two_ranks_reach_one_process_accuracy(launched):
    a, b = _ranks(launched, "train")
    _assert_same_state(a["state"], b["state"])
    two = _metrics(a["history"])
    assert _metrics(b["history"]) == two  # validation and training metrics are all ranks' and the same everywhere
    assert a["steps_per_epoch"] == 9 and len(digits().train) == 18  # 1150 examples: 575 per rank at batch 64
    assert [r["step"] for r in two] == [9, 18, 27, 36]
    data = digits(128)  # one process with the same global batch (2 × 64) takes the same steps
    one = fit(digits_mlp(), data.train, TrainConfig(epochs=4, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9}), val=data.val,
              progress=False).history
    assert [r["step"] for r in one] == [9, 18, 27, 36]
    assert two[-1]["val_accuracy"] == pytest.approx(one[-1]["val_accuracy"], abs=0.04)
    assert two[-1]["val_accuracy"] > 0.85, (two[-1], one[-1])


def test_a_killed_rank_resumes_to_the_uninterrupted_result(launched, tmp_path):
    with pytest.raises(ProcessExitedException):
        launch(ddp_workers.training_worker, 2, tmp_path, tmp_path / "train.safetensors", 22)  # in epoch 3 of 4, after 2 checkpoints
    assert (tmp_path / "train.safetensors").exists()
    launch(ddp_workers.training_worker, 2, tmp_path, tmp_path / "train.safetensors", None)
    resumed, reference = _ranks(tmp_path, "train"), _ranks(launched, "train")
    assert resumed[0]["resumed"] == resumed[1]["resumed"] == 2
    for r in (0, 1):
        _assert_same_state(resumed[r]["state"], reference[r]["state"])
    assert _metrics(resumed[0]["history"]) == _metrics(reference[0]["history"])


def test_only_rank_0_writes_the_run_directory(launched):
    rank0, rank1 = (json.loads((launched / f"log-rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["run"] == rank1["run"]
    assert rank1["writes"] == []
    run = Path(rank0["run"])
    assert (run / "summary.json").exists() and (run / "steps" / "prune.json").exists()
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line]
    assert [e["phase"] for e in epochs] == ["dense", "gradual"]  # one record per epoch, not one per rank


@pytest.mark.slow
def test_torchrun_runs_a_recipe_from_the_command_line(tmp_path):
    """`torchrun --nproc_per_node=2 -m prunekit run` (RigL on digits): one run directory, one record per epoch."""
    import subprocess
    import sys

    import yaml

    recipe = _tiny_gradual_recipe()
    recipe["prune"] = {"method": "dst", "algorithm": "rigl", "sparsity": 0.8, "delta_t": 5, "train": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.05}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--master-port={ddp_workers.free_port()}", "--nproc_per_node=2",
                           "-m", "prunekit", "run", "recipe.yaml", "--out", "runs", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (tmp_path / "runs").glob("tiny-*")
    summary = json.loads((run / "summary.json").read_text())
    assert 1 - summary["pruned"]["nonzero_prunable_params"] / summary["pruned"]["prunable_params"] == pytest.approx(0.8, abs=2e-3)
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line]
    assert [e["phase"] for e in epochs] == ["dense", "dst"]
    assert done.stdout.count("dense vs pruned") == 1  # the summary table is printed by rank 0 only
