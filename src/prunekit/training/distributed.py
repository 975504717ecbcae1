"""Multi-process training under ``torchrun``: the process group's lifecycle and the collectives training needs.

``torchrun --nproc_per_node=N`` starts N processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_from_env` joins them into one process group
(gloo on CPU, nccl on CUDA, each process on ``cuda:LOCAL_RANK``). Everything here is a no-op in a
single process (no group initialised), so library code calls it unconditionally. :class:`Shard`
and :func:`resolve_shard` are the analyses' share of a list of measurements (they also accept
``$RANK``/``$WORLD_SIZE`` without a group).

Gradients are averaged with an explicit all-reduce before each optimizer step
(:func:`all_reduce_gradients`) rather than by wrapping the model in ``DistributedDataParallel``: callbacks keep seeing the
model itself (``trainer.model``, not ``.module``), and masks re-attached as parametrizations
mid-training (gradual pruning, RigL/SET) would invalidate the parameter list DDP's reducer is built on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor, nn
from torch import distributed as dist

from prunekit.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a rank waits for the others at a collective (rank 0 alone evaluates and reports).
TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Shard:
    """The share of a list of measurements one process does: every ``world_size``-th, starting at ``rank``."""

    rank: int = 0
    world_size: int = 1
    source: str = "single"  # single | explicit | distributed | environment

    def mine(self, index: int) -> bool:
        return index % self.world_size == self.rank

    def path(self, cache: Path) -> Path:
        """This shard's JSONL file beside ``cache`` (``cache`` itself when unsharded)."""
        return cache if self.world_size == 1 else shard_path(cache, self.rank, self.world_size)


def shard_path(cache: Path, rank: int, world_size: int) -> Path:
    return cache.with_name(f"{cache.stem}.shard{rank}-of-{world_size}{cache.suffix}")


def resolve_shard(rank: int | None = None, world_size: int | None = None) -> Shard:
    """Explicit ``rank``/``world_size``, else an initialised ``torch.distributed`` group, else ``$RANK``/``$WORLD_SIZE``, else one process."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ConfigError("give both rank= and world_size= (or neither: torch.distributed or $RANK/$WORLD_SIZE decide)")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        return Shard(rank, world_size, "explicit")
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size(), "distributed")
    env_rank, env_world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if env_rank is not None and env_world is not None:
        if not (env_rank.isdigit() and env_world.isdigit() and int(env_rank) < int(env_world)):
            raise ConfigError(f"$RANK={env_rank!r} and $WORLD_SIZE={env_world!r} are not a rank below a world size; unset them or fix them")
        return Shard(int(env_rank), int(env_world), "environment")
    return Shard()


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (or an equivalent launcher) set ``WORLD_SIZE`` > 1 for this process."""
    return int(os.environ.get("WORLD_SIZE", "1") or "1") > 1 and "RANK" in os.environ


def init_from_env(device: str | torch.device | None = None) -> bool:
    """Join the process group ``torchrun`` described in the environment; ``True`` if distributed.

    ``device`` picks the backend: nccl for CUDA (this process then uses ``cuda:$LOCAL_RANK``),
    gloo otherwise (default: CUDA when available). Idempotent; a no-op (``False``) outside torchrun.
    """
    if is_distributed():
        return True
    if not launched_by_torchrun():
        return False
    cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_device("cuda"))
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"could not join the torchrun process group (RANK={os.environ.get('RANK')}, "
                          f"WORLD_SIZE={os.environ.get('WORLD_SIZE')}, MASTER_ADDR={os.environ.get('MASTER_ADDR')}, "
                          f"MASTER_PORT={os.environ.get('MASTER_PORT')}): {exc}") from exc
    log.info("joined process group: rank %d of %d (%s)", rank(), world_size(), dist.get_backend())
    return True


def shutdown() -> None:
    """Leave the process group (after a last barrier, so no rank exits while others still talk)."""
    if is_distributed():
        barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the initialised process group (0 without one).

    Only a process group counts (not ``$RANK`` alone, as :func:`resolve_shard` allows): the
    processes that leave writing to rank 0 must be able to wait for it at a :func:`barrier`.
    """
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the initialised process group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes files and shows progress."""
    return rank() == 0


def local_device(device: str | torch.device) -> torch.device:
    """``device`` for this process: plain ``cuda`` becomes ``cuda:$LOCAL_RANK`` under torchrun."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    """Wait for every rank (e.g. before reading what rank 0 wrote)."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _flat_all_reduce(tensors: list[Tensor], average: bool) -> None:
    """Sum (or average) ``tensors`` in place across ranks, one flat buffer per dtype and device."""
    buckets: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for t in tensors:
        buckets.setdefault((t.dtype, t.device), []).append(t)
    for group in buckets.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        if average:
            flat /= dist.get_world_size()
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def all_reduce_mean(tensors: Iterable[Tensor]) -> None:
    """Average floating-point ``tensors`` in place across ranks."""
    if is_distributed():
        _flat_all_reduce([t for t in tensors], average=True)


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum numbers across ranks (e.g. per-epoch loss sums and counts)."""
    if not is_distributed():
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def all_reduce_gradients(model: nn.Module) -> None:
    """Average the ``.grad`` of ``model``'s parameters across ranks (parameters without one are skipped:
    they are the same on every rank, as every rank runs the same model code)."""
    if is_distributed():
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads:
            _flat_all_reduce(grads, average=True)


def broadcast_tensors(tensors: Iterable[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``src``'s (bool tensors travel as uint8)."""
    if not is_distributed():
        return
    for t in tensors:
        if t.dtype == torch.bool or not t.is_contiguous():  # channels-last weights travel as a contiguous copy
            carrier = t.to(torch.uint8 if t.dtype == torch.bool else t.dtype).contiguous()
            dist.broadcast(carrier, src)
            t.copy_(carrier)
        else:
            dist.broadcast(t, src)


def broadcast_state(model: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (masks included)."""
    if is_distributed():
        with torch.no_grad():
            broadcast_tensors(list(model.state_dict(keep_vars=True).values()), src)


def average_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across ranks; others come from rank 0."""
    if not is_distributed():
        return
    buffers = [b for b in model.buffers() if b is not None]
    with torch.no_grad():
        all_reduce_mean(b for b in buffers if b.is_floating_point())
        broadcast_tensors(b for b in buffers if not b.is_floating_point())


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` (any picklable value: a plan, a JSON-able dict) on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    dist.broadcast_object_list(box, src, device=device)
    return box[0]


def broadcast_masks(masks: Mapping[str, Tensor], src: int = 0) -> dict[str, Tensor]:
    """Rank ``src``'s masks (a :class:`~prunekit.masks.MaskSet` or mapping of bool tensors with the same
    names and shapes on every rank), as a new dict."""
    out = {name: m.clone() for name, m in masks.items()}
    broadcast_tensors(out[name] for name in sorted(out))
    return out


def shard_batches(batches: T) -> T:
    """``batches.shard(rank, world_size)`` under a process group when the loader can shard itself and
    is not sharded yet (``world_size`` attribute 1); otherwise ``batches`` unchanged."""
    if not is_distributed() or not hasattr(batches, "shard") or getattr(batches, "world_size", 1) != 1:
        return batches
    return batches.shard(dist.get_rank(), dist.get_world_size())  # type: ignore[no-any-return]
