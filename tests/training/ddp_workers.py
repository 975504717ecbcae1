"""Process entry points for the multi-process tests: each runs on one gloo rank and saves what it ended with.

They live in a module (not the test file) because ``torch.multiprocessing`` spawns fresh
interpreters that import the function by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import multiprocessing as mp
from torch import nn

from prunekit.training import distributed, rank_sync


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(worker: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run ``worker(rank, *args)`` on ``world_size`` gloo ranks (a fresh port per call); raises if a rank fails."""
    port = free_port()
    mp.start_processes(_entry, args=(worker, world_size, port, args), nprocs=world_size, start_method="spawn", join=True)


def _entry(rank: int, worker: Callable[..., None], world_size: int, port: int, args: tuple[Any, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    if world_size > 1:
        assert distributed.init_from_env("cpu")
    worker(rank, *args)
    distributed.shutdown()


def digits(batch_size: int = 64):
    from prunekit.zoo import get_loaders

    return get_loaders("digits", batch_size=batch_size, val_fraction=0.2, seed=0, progress=False)


def digits_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def _save(out: Path, rank: int, name: str, model: nn.Module, **extra: Any) -> None:
    torch.save({"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, **extra}, out / f"{name}-rank{rank}.pt")


def pruning_worker(rank: int, out: Path) -> None:
    """Gradual taylor pruning (masks from each rank's own last batch), a RigL run, and a structured step whose
    plan differs between ranks (ratio 0.25 vs 0.5) synced to rank 0's."""
    from prunekit.masks import MaskSet
    from prunekit.pruners import UnstructuredConfig
    from prunekit.pruners.structured import StructuredConfig, StructuredPruner
    from prunekit.schedules import PolynomialDecay
    from prunekit.structured.spec import architecture_spec
    from prunekit.training import TrainConfig, fit
    from prunekit.training.dst import RigL, DSTConfig
    from prunekit.training.pruning_callbacks import GradualPruning

    data = digits()
    config = TrainConfig(epochs=1, optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9})
    model = digits_mlp()
    pruning = GradualPruning(UnstructuredConfig(criterion="taylor", sparsity=0.7),
                             PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.7, begin_step=2, end_step=8, frequency=3))
    pruning.prepare(model)
    fit(model, data.train, config, callbacks=[pruning], progress=False)
    _save(out, rank, "gradual", model, sparsity=MaskSet.from_model(model).sparsity())

    model = digits_mlp()
    rigl = RigL(DSTConfig(sparsity=0.8, delta_t=2, alpha=0.5))
    rigl.prepare(model)
    fit(model, data.train, config, callbacks=[rigl], progress=False)
    _save(out, rank, "rigl", model, updates=rigl.updates)

    model = digits_mlp()
    example = next(iter(data.test))[0][:4]
    StructuredPruner(StructuredConfig(ratio=0.25 * (rank + 1), importance="l2")).step(model, example)
    rank_sync.sync_architecture(model)
    _save(out, rank, "structured", model, spec=json.dumps(architecture_spec(model), sort_keys=True))


def training_worker(rank: int, out: Path, checkpoint: Path | None, kill_at_step: int | None) -> None:
    """Train the digits MLP for 4 epochs (checkpointing each epoch); rank 1 SIGKILLs itself after ``kill_at_step``."""
    from prunekit.training import Callback, TrainConfig, fit

    class Killer(Callback):
        def on_step_end(self, trainer: Any, step: int, loss: float) -> None:
            if rank == 1 and kill_at_step is not None and step == kill_at_step:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    data = digits()
    model = digits_mlp()
    result = fit(model, data.train, TrainConfig(epochs=4, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9}), val=data.val,
                 callbacks=[Killer()], checkpoint=checkpoint, progress=False)
    _save(out, rank, "train", model, history=json.dumps(result.history), resumed=result.resumed_from_epoch, steps_per_epoch=len(data.train.shard(rank, 2)) if distributed.is_distributed() else len(data.train))


def recipe_worker(rank: int, recipe: dict[str, Any], out: Path, log: Path) -> None:
    """Run ``recipe`` through the runner; rank 1 records every file it opens for writing, renames or creates under ``out``."""
    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import run_recipe

    writes: list[str] = []
    root = str(out.resolve())

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and str(args[0]).startswith(root):
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                writes.append(f"open {args[0]}")
        elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree") and str(args[0]).startswith(root):
            writes.append(f"{event} {args[0]}")

    if rank == 1:
        sys.addaudithook(audit)
    run = run_recipe(load_recipe(recipe), out, progress=False)
    log.with_name(f"{log.stem}-rank{rank}.json").write_text(json.dumps({"run": str(run), "writes": writes}))


def everything_worker(rank: int, out: Path, recipe: dict[str, Any]) -> None:
    """The pruning and training checks and a recipe run in one launch (starting ranks costs more than the work)."""
    pruning_worker(rank, out)
    training_worker(rank, out, out / "train.safetensors", None)
    recipe_worker(rank, recipe, out / "runs", out / "log.json")
