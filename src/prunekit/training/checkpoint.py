"""Training checkpoints in safetensors: model, optimizer, LR scheduler, fp16 grad scaler, RNG and progress.

Tensors go in the safetensors body; everything else (optimizer hyper-parameters, scheduler
counters, progress) goes in its JSON metadata. Nothing is pickled, so loading is safe.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from prunekit._io import load_safetensors, safetensors_metadata, save_safetensors
from prunekit.errors import CheckpointError, DamagedFileError

FORMAT = "prunekit.train-checkpoint/2"


@dataclass
class TrainState:
    """Where training stands: completed epochs and iterations, plus free-form JSON extras."""

    epoch: int = 0
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _json_scalars(obj: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in obj.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, optimizer: Optimizer | None, scheduler: LRScheduler | None, state: TrainState,
                    scaler: torch.amp.GradScaler | None = None) -> None:
    """Atomically write a resumable checkpoint (with the fp16 loss scaler's state when given)."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    tensors["rng/torch"] = torch.get_rng_state()
    optim_meta: dict[str, Any] = {}
    if optimizer is not None:
        sd = optimizer.state_dict()
        names = _optimizer_param_names(model, optimizer)
        optim_meta = {"param_groups": sd["param_groups"], "param_names": names, "scalars": {}}
        for index, pstate in sd["state"].items():
            for key, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{names[index]}/{key}"] = value
                else:
                    optim_meta["scalars"].setdefault(names[index], {})[key] = value
    meta = {
        "format": FORMAT,
        "state": json.dumps({"epoch": state.epoch, "step": state.step, "extra": state.extra}),
        "optimizer": json.dumps(optim_meta),
        "scheduler": json.dumps(_json_scalars(scheduler.state_dict()) if scheduler is not None else {}),
        "scaler": json.dumps(scaler.state_dict() if scaler is not None else {}),
    }
    save_safetensors(path, tensors, metadata=meta)


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module, optimizer: Optimizer | None = None, scheduler: LRScheduler | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> TrainState:
    """Restore model (strictly), optimizer, scheduler, grad scaler and RNG from ``path``; return the progress.

    A checkpoint saved without scaler state (fp32/bf16, or an older file) leaves ``scaler`` as it is.
    """
    meta = safetensors_metadata(path)
    if meta.get("format") != FORMAT:
        raise DamagedFileError(f"{path} is not a training checkpoint this prunekit can resume (format {meta.get('format')!r}, expected {FORMAT!r})")
    progress = _meta_json(meta, "state", path)
    tensors = load_safetensors(path)
    model_state = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit this model (attach the same masks/structure first): {exc}") from None
    if optimizer is not None:
        _load_optimizer(optimizer, model, _meta_json(meta, "optimizer", path), tensors, path)
    if scheduler is not None:
        sched = _meta_json(meta, "scheduler", path)
        if "lr_lambdas" in scheduler.state_dict():
            sched["lr_lambdas"] = [None] * len(scheduler.state_dict()["lr_lambdas"])
        scheduler.load_state_dict(sched)
    if scaler is not None:
        scaler_state = _meta_json(meta, "scaler", path) if "scaler" in meta else {}
        if scaler_state:
            scaler.load_state_dict(scaler_state)
    torch.set_rng_state(tensors["rng/torch"])
    return _train_state(progress, path)


def _meta_json(meta: dict[str, str], key: str, path: object) -> dict[str, Any]:
    """A JSON object stored under ``key`` in a checkpoint's metadata."""
    try:
        value = json.loads(meta[key])
    except (KeyError, ValueError, RecursionError):
        raise DamagedFileError(f"{path} is damaged: its {key!r} metadata is missing or not JSON") from None
    if not isinstance(value, dict):
        raise DamagedFileError(f"{path} is damaged: its {key!r} metadata is not a JSON object")
    return value


def _train_state(progress: dict[str, Any], path: object) -> TrainState:
    try:
        return TrainState(epoch=int(progress["epoch"]), step=int(progress["step"]), extra=dict(progress["extra"]))
    except (KeyError, TypeError, ValueError):
        raise DamagedFileError(f"{path} is damaged: its 'state' metadata lacks epoch, step or extra") from None


def _optimizer_param_names(model: nn.Module, optimizer: Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its own order (state is keyed by name, not position,
    so attaching masks — which reorders ``model.parameters()`` — cannot scramble it)."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    names = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in by_id:
                raise CheckpointError("the optimizer holds a parameter that is not part of the model")
            names.append(by_id[id(p)])
    return names


def _load_optimizer(optimizer: Optimizer, model: nn.Module, optim_meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: object) -> None:
    names = _optimizer_param_names(model, optimizer)
    if sorted(names) != sorted(optim_meta["param_names"]):
        raise CheckpointError(f"{path}: the optimizer's parameters differ from the checkpoint's (attach the same masks/structure first)")
    index = {name: i for i, name in enumerate(names)}
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            name, _, field = key.removeprefix("optim/").rpartition("/")
            state.setdefault(index[name], {})[field] = value
    for name, scalars in optim_meta.get("scalars", {}).items():
        state.setdefault(index[name], {}).update(scalars)
    groups = [dict(saved, params=current["params"]) for saved, current in zip(optim_meta["param_groups"], optimizer.state_dict()["param_groups"])]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def read_train_state(path: str | os.PathLike[str]) -> TrainState:
    """Progress recorded in a checkpoint, without loading any tensor."""
    return _train_state(_meta_json(safetensors_metadata(path), "state", path), path)
