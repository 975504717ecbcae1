"""Structured sensitivity: prune each channel group alone at several ratios and measure validation accuracy.

>>> result = structured_sensitivity(model, x, val_batches, ratios=(0.25, 0.5, 0.75), cache="sensitivity.jsonl")
>>> result.drop("layer1.0.conv1", 0.5)    # accuracy lost with half of that group's channels removed
>>> save_png(result.plot(), "sensitivity.png")

Each measurement (one group at one ratio, on a pruned copy, or the unpruned baseline) is appended
to the ``cache`` JSONL as soon as it is finished, so a run killed even with SIGKILL resumes
without redoing any; the header fingerprints the model, the data and the settings, and a cache of
anything else is refused. Under torchrun (an initialised ``torch.distributed`` group, or
``$RANK``/``$WORLD_SIZE``) each process measures every ``WORLD_SIZE``-th item into its own shard
file beside ``cache`` and rank 0 merges them (:func:`merge_sensitivity_shards`, also callable by
hand). Give a validation split, never the test set: the table is used to choose ratios.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunekit._io import read_jsonl, write_text
from prunekit.analysis.group_space import (Batch, GroupSpace, RecordCache, Shard, data_fingerprint, first_batches, model_fingerprint,
                                           recalibrate_bn, resolve_shard, settings_fingerprint, shard_path)
from prunekit.errors import ConfigError
from prunekit.importance.calibration import Calibration
from prunekit.metrics.accuracy import evaluate
from prunekit.progress import track
from prunekit.pruners.objective import measure_model
from prunekit.pruners.structured_config import StructuredConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Ratios of each group's channels removed by default.
DEFAULT_RATIOS = (0.25, 0.5, 0.75)
#: The ``group`` of the unpruned measurement.
BASELINE = -1
WHAT = "structured sensitivity"
#: Settings of :class:`StructuredConfig` that change the measurements (which units go, how counts round).
_SETTINGS = ("importance", "reduction", "normalization", "max_layer_ratio", "layer_round_to", "ignored_layers", "attention", "seed")


@dataclass(frozen=True)
class GroupMeasurement:
    """Validation accuracy and cost with one group pruned at ``ratio`` (``group == -1``: nothing pruned)."""

    group: int
    name: str
    size: int
    ratio: float
    removed: int
    accuracy: float
    loss: float
    macs: float
    params: float
    seconds: float


@dataclass
class StructuredSensitivity:
    """The scan: the baseline and one :class:`GroupMeasurement` per (group, ratio) measured so far."""

    baseline: GroupMeasurement | None
    ratios: list[float]
    groups: dict[int, str]
    rows: list[GroupMeasurement]

    @property
    def complete(self) -> bool:
        return self.baseline is not None and len(self.rows) == len(self.groups) * len(self.ratios)

    @property
    def seconds(self) -> float:
        """Seconds the measurements took (summed over processes)."""
        return sum(r.seconds for r in self.rows) + (self.baseline.seconds if self.baseline else 0.0)

    def row(self, group: int | str, ratio: float) -> GroupMeasurement:
        """The measurement of ``group`` (index or name) at ``ratio``."""
        index = group if isinstance(group, int) else next((i for i, n in self.groups.items() if n == group), None)
        found = next((r for r in self.rows if r.group == index and abs(r.ratio - ratio) < 1e-9), None)
        if found is None:
            raise ConfigError(f"no measurement of group {group!r} at ratio {ratio}; groups: {sorted(self.groups.values())}, ratios: {self.ratios}")
        return found

    def _baseline(self) -> GroupMeasurement:
        if self.baseline is None:
            raise ConfigError("the unpruned baseline has not been measured yet (an unfinished shard): merge the shards first")
        return self.baseline

    def drop(self, group: int | str, ratio: float) -> float:
        """Accuracy lost (baseline − accuracy) with ``group`` pruned at ``ratio``."""
        return self._baseline().accuracy - self.row(group, ratio).accuracy

    def macs_saved(self, group: int | str, ratio: float) -> float:
        """MACs (per example) saved with ``group`` pruned at ``ratio``."""
        return self._baseline().macs - self.row(group, ratio).macs

    def accuracy_table(self) -> dict[str, list[float]]:
        """``{group name: accuracy at each ratio}`` for the groups measured at every ratio."""
        table = {}
        for index, name in self.groups.items():
            rows = {round(r.ratio, 9): r.accuracy for r in self.rows if r.group == index}
            if len(rows) == len(self.ratios):
                table[name] = [rows[round(q, 9)] for q in self.ratios]
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": asdict(self.baseline) if self.baseline else None, "ratios": list(self.ratios),
                "groups": {str(k): v for k, v in self.groups.items()}, "rows": [asdict(r) for r in self.rows],
                "complete": self.complete, "seconds": self.seconds}

    def plot(self) -> Figure:
        """Accuracy against the ratio removed, one line per group (starting at the unpruned accuracy)."""
        from prunekit.report.plots import sensitivity_curves

        base = self._baseline().accuracy
        table = {name: [base, *values] for name, values in self.accuracy_table().items()}
        return sensitivity_curves([0.0, *self.ratios], table, base, xlabel="channels removed from the group (%)",
                                  title="Per-group sensitivity (one channel group pruned at a time)")


def structured_sensitivity(model: nn.Module, example_inputs: Any, val_batches: Iterable[Batch], ratios: Sequence[float] = DEFAULT_RATIOS,
                           config: StructuredConfig | None = None, *, cache: str | Path | None = None,
                           calibration_batches: Iterable[Batch] | None = None, calibration: Calibration | None = None,
                           rank: int | None = None, world_size: int | None = None, device: str | torch.device | None = None,
                           progress: bool = True, merge_timeout_s: float = 3600.0) -> StructuredSensitivity:
    """Prune each prunable group of ``model`` alone at each ratio (on a copy) and evaluate on ``val_batches``.

    ``config`` decides which units go and how counts round (``importance``, ``round_to``,
    ``max_layer_ratio``, ...; its target is ignored). ``calibration_batches`` (training batches)
    re-estimate BatchNorm statistics of each pruned copy before evaluating; ``calibration`` holds
    what gradient/activation criteria need. ``rank``/``world_size`` choose a shard by hand (then
    merge with :func:`merge_sensitivity_shards`); see the module docstring. ``model`` is not changed.
    """
    space = GroupSpace(model, example_inputs, config or StructuredConfig(ratio=0.0), calibration)
    return scan_groups(space, val_batches, ratios, cache=cache, calibration_batches=calibration_batches, rank=rank,
                       world_size=world_size, device=device, progress=progress, merge_timeout_s=merge_timeout_s)


def scan_groups(space: GroupSpace, val_batches: Iterable[Batch], ratios: Sequence[float], *, cache: str | Path | None = None,
                calibration_batches: Iterable[Batch] | None = None, rank: int | None = None, world_size: int | None = None,
                device: str | torch.device | None = None, progress: bool = True, merge_timeout_s: float = 3600.0) -> StructuredSensitivity:
    """:func:`structured_sensitivity` over an already built :class:`GroupSpace`."""
    ratios = _check_ratios(ratios)
    val, bn = first_batches(val_batches, None), first_batches(calibration_batches, None)
    if not val:
        raise ConfigError("structured sensitivity got no validation batches; pass the validation split (never the test set)")
    device = device if device is not None else _device(space.model)
    items = [(BASELINE, 0.0)] + [(c.index, r) for c in space.candidates for r in ratios]
    header = _header(space, ratios, val, bn)
    shard = resolve_shard(rank, world_size)
    done: dict[int, dict[str, Any]] = {}
    own = None
    if cache is not None:
        cache = Path(cache)
        if shard.world_size == 1 or cache.exists():
            done.update((r["item"], r) for r in RecordCache(cache, header).load() if r.get("kind") == "row")
        own = RecordCache(shard.path(cache), header)
        done.update((r["item"], r) for r in own.load() if r.get("kind") == "row")
    elif shard.world_size > 1:
        raise ConfigError("a sharded sensitivity scan needs cache=... (a path all processes can write beside)")
    todo = [i for i in range(len(items)) if shard.mine(i) and i not in done]
    label = WHAT if shard.world_size == 1 else f"{WHAT} (shard {shard.rank + 1}/{shard.world_size})"
    for i in track(todo, label, enabled=progress):
        done[i] = _measure(space, items[i], i, val, bn, device)
        if own is not None:
            own.append(done[i])
    if shard.world_size > 1 and cache is not None:
        done = _gather(cache, shard, header, done, len(items), merge_timeout_s)
    return _result(header["info"], done.values())


def merge_sensitivity_shards(cache: str | Path, world_size: int, *, wait_s: float = 0.0) -> StructuredSensitivity:
    """Merge the shard files of ``world_size`` processes into ``cache`` (atomically) and return the whole scan.

    Waits up to ``wait_s`` seconds for unfinished shards; what is missing then stays missing
    (``result.complete`` is False) and a rerun of those shards fills it in.
    """
    cache = Path(cache)
    deadline = time.monotonic() + wait_s
    while True:
        header, rows = _read_shards(cache, world_size)
        if _count(header) == len(rows) or time.monotonic() >= deadline:
            break
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    write_text(cache, "".join(json.dumps(r, sort_keys=True) + "\n" for r in [header, *(rows[i] for i in sorted(rows))]))
    return _result(header["info"], rows.values())


def _gather(cache: Path, shard: Shard, header: dict[str, Any], done: dict[int, dict[str, Any]], total: int,
            timeout: float) -> dict[int, dict[str, Any]]:
    """After this shard: under torch.distributed rank 0 merges between barriers and every rank reads the
    merged file; from ``$RANK`` alone rank 0 waits for the other shards' files; explicit shards merge by hand."""
    if shard.source == "distributed":
        torch.distributed.barrier()
        if shard.rank == 0:
            merge_sensitivity_shards(cache, shard.world_size)
        torch.distributed.barrier()
        return {r["item"]: r for r in RecordCache(cache, header).load() if r.get("kind") == "row"}
    if shard.source == "environment" and shard.rank == 0:
        merged = merge_sensitivity_shards(cache, shard.world_size, wait_s=timeout)
        if not merged.complete:
            raise ConfigError(f"shards of {cache} did not finish within {timeout:g} s; rerun the missing ranks (finished measurements are kept), "
                              f"then merge_sensitivity_shards({str(cache)!r}, {shard.world_size})")
        return {r["item"]: r for r in RecordCache(cache, header).load() if r.get("kind") == "row"}
    return done


def _read_shards(cache: Path, world_size: int) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    files = [cache, *(shard_path(cache, r, world_size) for r in range(world_size))]
    headers, rows = [], {}
    for path in files:
        records = read_jsonl(path)
        if records and records[0].get("kind") == "header":
            headers.append((path, records[0]))
            rows.update((r["item"], r) for r in records[1:] if r.get("kind") == "row")
    if not headers:
        raise ConfigError(f"no shard files of {cache} (looked for {files[1].name} … {files[-1].name}); run the shards first")
    first = headers[0][1]
    for path, other in headers[1:]:
        RecordCache(path, {k: v for k, v in first.items() if k != "kind"}).check(other)
    return first, rows


def _count(header: Mapping[str, Any]) -> int:
    info = header["info"]
    return 1 + len(info["groups"]) * len(info["ratios"])


def _measure(space: GroupSpace, item: tuple[int, float], index: int, val: list[Batch], bn: list[Batch], device: Any) -> dict[str, Any]:
    group, ratio = item
    start = time.perf_counter()
    counts = {} if group == BASELINE else {group: space.counts({group: ratio})[group]}
    trial = space.pruned_copy(counts)
    if bn:
        recalibrate_bn(trial, bn, device)
    ev = evaluate(trial, val, device=device)
    size = next((c.size for c in space.candidates if c.index == group), 0)
    return {"kind": "row", "item": index, "group": group, "name": space.names.get(group, "(unpruned)"), "size": size, "ratio": ratio,
            "removed": counts.get(group, 0), "accuracy": ev.accuracy, "loss": ev.loss, "macs": measure_model("macs", trial, space.inputs),
            "params": measure_model("params", trial, space.inputs), "seconds": time.perf_counter() - start}


def _header(space: GroupSpace, ratios: list[float], val: list[Batch], bn: list[Batch]) -> dict[str, Any]:
    settings = {"ratios": ratios, "round_to": space.round_to, "inputs": [list(getattr(x, "shape", ())) for x in space.inputs],
                "structured": space.config.model_dump(mode="json", include=set(_SETTINGS))}
    return {"what": WHAT, "version": 1, "model": model_fingerprint(space.model), "data": data_fingerprint(val, bn),
            "settings": settings_fingerprint(settings), "info": {"ratios": ratios, "groups": [[i, n] for i, n in space.names.items()]}}


def _result(info: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> StructuredSensitivity:
    fields = set(GroupMeasurement.__dataclass_fields__)
    rows = sorted((GroupMeasurement(**{k: v for k, v in r.items() if k in fields}) for r in records), key=lambda m: (m.group, m.ratio))
    baseline = next((r for r in rows if r.group == BASELINE), None)
    return StructuredSensitivity(baseline, list(info["ratios"]), {int(i): n for i, n in info["groups"]}, [r for r in rows if r.group != BASELINE])


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    values = [float(r) for r in ratios]
    if not values or any(not 0.0 < r < 1.0 for r in values) or len(set(values)) != len(values):
        raise ConfigError(f"sensitivity ratios must be distinct numbers in (0, 1), got {list(ratios)}; e.g. 0.25, 0.5, 0.75")
    return sorted(values)


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))
