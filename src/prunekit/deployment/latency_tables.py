"""Latency of layers on a runtime, measured on this machine: the channel staircase and per-layer tables.

Runtimes compute channels in blocks (vector width, kernel tiles), so a layer's latency is flat
between multiples of a block and jumps after one: the *staircase*. :func:`measure_staircase`
finds its step by timing one conv at every channel count in a range (both axes);
:func:`staircase_step` reads the step from such timings. :func:`measure_tables` times each layer
configuration of a model alone on a grid of channel counts that are multiples of the step
(sampled: at most ``points`` per axis, linear in between, which :class:`LayerTable` interpolates).

Everything measured is cached as JSON under ``$PRUNEKIT_CACHE_DIR/latency`` (default
``~/.cache/prunekit/latency``), keyed by runtime, its version, torch's version, the CPU model,
batch size and threads (:class:`MachineKey`). A cached file whose key differs from this machine's
is never used: it is re-measured, with a warning.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit._io import read_json, write_json
from prunekit.deployment.layer_probe import LayerConfig
from prunekit.deployment.runtimes import cpu_model, get_runtime
from prunekit.errors import CheckpointError
from prunekit.metrics import compare_latency
from prunekit._cache import CACHE_ENV, cache_root  # noqa: F401  (CACHE_ENV: re-exported)
from prunekit.progress import track

log = logging.getLogger(__name__)

#: Channel steps the staircase probe can find.
STEPS = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class MachineKey:
    """What a latency measurement depends on; a table is reused only under an equal key."""

    runtime: str
    runtime_version: str
    torch_version: str
    cpu: str
    batch_size: int
    threads: int

    @classmethod
    def current(cls, runtime: str | None, batch_size: int, threads: int) -> MachineKey:
        name, rt = get_runtime(runtime)
        return cls(name, rt.version(), torch.__version__, cpu_model(), int(batch_size), int(threads))


class LatencyCache:
    """JSON files of measurements for one :class:`MachineKey` (``root`` default: :func:`cache_root`)."""

    def __init__(self, key: MachineKey, root: str | os.PathLike[str] | None = None) -> None:
        self.key = key
        base = Path(root) if root is not None else cache_root() / "latency"
        self.folder = base / f"{key.runtime}-b{key.batch_size}-t{key.threads}"

    def path(self, what: str) -> Path:
        return self.folder / f"{hashlib.sha256(what.encode()).hexdigest()[:16]}.json"

    def load(self, what: str) -> dict[str, Any] | None:
        """The payload stored for ``what``, or None (absent, damaged, or measured under another key: a warning says which)."""
        path = self.path(what)
        if not path.exists():
            return None
        try:
            record = read_json(path, "latency cache file")
        except CheckpointError as exc:
            log.warning("%s; measuring again", exc)
            return None
        if record.get("key") != asdict(self.key) or record.get("what") != what:
            log.warning("latency cache %s was measured under %s, not this machine's %s; measuring again", path, record.get("key"), asdict(self.key))
            return None
        return record.get("payload")

    def store(self, what: str, payload: Mapping[str, Any]) -> None:
        """Write the payload (atomically); a cache folder that cannot be written costs a re-measurement next time, with a warning."""
        try:
            write_json(self.path(what), {"key": asdict(self.key), "what": what, "payload": dict(payload)})
        except OSError as exc:
            log.warning("could not write the latency cache %s (%s); set $%s to a writable folder to keep measurements", self.path(what), exc, CACHE_ENV)


# --- the staircase ----------------------------------------------------------------------------


def staircase_step(latency: Mapping[int, float], tolerance: float = 0.03, agreement: float = 0.75) -> int:
    """The channel step of a staircase, from ``{channels: latency}`` over a contiguous range.

    A count is *fast* when every larger measured count is more than ``tolerance`` slower (keeping
    fewer channels than a larger, as-fast count wastes them). The step is the largest of
    :data:`STEPS` whose multiples are fast and which holds the fast counts, each at least
    ``agreement`` of the time (1 when no step fits: no staircase to follow).
    """
    counts = sorted(latency)
    fast = {c for i, c in enumerate(counts[:-1]) if min(latency[d] for d in counts[i + 1:]) > latency[c] * (1 + tolerance)}
    inner = counts[:-1]
    best = 1
    for step in STEPS[1:]:
        multiples = [c for c in inner if c % step == 0]
        if not multiples or not fast:
            continue
        precision = sum(c in fast for c in multiples) / len(multiples)
        recall = sum(c % step == 0 for c in fast) / len(fast)
        if precision >= agreement and recall >= agreement:
            best = step
    return best


@dataclass(frozen=True)
class Staircase:
    """Timings of one 3×3 conv at each channel count (output axis, input axis) and the step read from them."""

    step: int
    counts: list[int]
    out_ms: list[float]
    in_ms: list[float]


def _probe_config(batch_size: int) -> LayerConfig:
    size = 16 if batch_size <= 8 else 8
    return LayerConfig("conv", (size, size), (3, 3), (1, 1), (1, 1), (1, 1))


def measure_staircase(runtime: str | None = None, batch_size: int = 1, threads: int = 1, *, cache: bool = True,
                      width: int = 64, progress: bool = False) -> Staircase:
    """Find the channel step of ``runtime`` on this machine (cached): a 3×3 conv with the other axis at ``width``."""
    key = MachineKey.current(runtime, batch_size, threads)
    store = LatencyCache(key)
    what = f"staircase width={width}"
    if cache and (hit := store.load(what)) is not None:
        return Staircase(**hit)
    log.info("measuring the channel staircase of %s (batch %d, %d thread(s)) on this CPU; cached in %s", key.runtime, batch_size, threads, store.folder)
    _, rt = get_runtime(key.runtime)
    config = _probe_config(batch_size)
    counts = list(range(width // 2 + 1, width + 2))
    calls = {}
    for c in track(counts, "staircase probe", enabled=progress):
        calls[("out", c)] = rt.layer(config, width, c, batch_size, threads)
        calls[("in", c)] = rt.layer(config, c, width, batch_size, threads)
    timed = compare_latency(calls, (), warmup=2, repeats=15, min_time_s=2.0)
    out_ms = [timed[("out", c)].median_ms for c in counts]
    in_ms = [timed[("in", c)].median_ms for c in counts]
    step = max(staircase_step(dict(zip(counts, out_ms))), staircase_step(dict(zip(counts, in_ms))))
    result = Staircase(step, counts, out_ms, in_ms)
    if cache:
        store.store(what, asdict(result))
    log.info("channel step of %s here: %d", key.runtime, step)
    return result


# --- per-layer tables -------------------------------------------------------------------------


def sample_grid(size: int, step: int, points: int, free: bool = True) -> list[int]:
    """Channel counts to measure on one axis: multiples of ``step`` up to ``size`` and ``size`` itself,
    thinned to ``points`` spread evenly (always keeping the smallest and ``size``). Just ``[size]`` if not ``free``."""
    if not free:
        return [size]
    grid = sorted({*range(step, size + 1, step), size})
    if len(grid) <= points:
        return grid
    picks = np.unique(np.round(np.linspace(0, len(grid) - 1, points)).astype(int))
    return [grid[i] for i in picks]


def _interp(grid: Sequence[int], x: float) -> tuple[int, int, float]:
    """Indices and weight of ``x`` between two grid points (clamped to the ends)."""
    if len(grid) == 1 or x <= grid[0]:
        return 0, 0, 0.0
    if x >= grid[-1]:
        return len(grid) - 1, len(grid) - 1, 0.0
    j = bisect.bisect_right(grid, x)
    return j - 1, j, (x - grid[j - 1]) / (grid[j] - grid[j - 1])


@dataclass(frozen=True)
class LayerTable:
    """Measured latency (ms) of one layer configuration on a grid of (input, output) channel counts."""

    config: LayerConfig
    grid_in: list[int]
    grid_out: list[int]
    ms: list[list[float]]  # [input index][output index]

    def __call__(self, c_in: float, c_out: float) -> float:
        """Bilinear interpolation between the measured counts (the ends clamp; below the smallest, linear to zero)."""
        i0, i1, wi = _interp(self.grid_in, c_in)
        o0, o1, wo = _interp(self.grid_out, c_out)
        m = self.ms
        value = (1 - wi) * ((1 - wo) * m[i0][o0] + wo * m[i0][o1]) + wi * ((1 - wo) * m[i1][o0] + wo * m[i1][o1])
        scale = min(1.0, c_in / self.grid_in[0]) * min(1.0, c_out / self.grid_out[0])
        return value * scale


def measure_tables(requests: Mapping[LayerConfig, tuple[list[int], list[int]]], runtime: str | None = None, batch_size: int = 1,
                   threads: int = 1, *, cache: bool = True, progress: bool = False) -> dict[LayerConfig, LayerTable]:
    """A :class:`LayerTable` per config on its ``(input counts, output counts)`` grid, each measured interleaved (cached)."""
    key = MachineKey.current(runtime, batch_size, threads)
    store = LatencyCache(key)
    _, rt = get_runtime(key.runtime)
    tables: dict[LayerConfig, LayerTable] = {}
    todo = []
    for config, (grid_in, grid_out) in requests.items():
        what = f"table {config.name()} in={grid_in} out={grid_out}"
        hit = store.load(what) if cache else None
        if hit is not None:
            tables[config] = LayerTable(config, grid_in, grid_out, hit["ms"])
        else:
            todo.append((config, grid_in, grid_out, what))
    if todo:
        points = sum(len(i) * len(o) for _, i, o, _ in todo)
        log.info("measuring %d layer configuration(s), %d points, on %s; cached in %s", len(todo), points, key.runtime, store.folder)
    for config, grid_in, grid_out, what in track(todo, f"latency tables ({key.runtime})", enabled=progress):
        calls = {(ci, co): rt.layer(config, ci, co, batch_size, threads) for ci in grid_in for co in grid_out}
        timed = compare_latency(calls, (), warmup=2, repeats=7, min_time_s=0.2)
        ms = [[timed[(ci, co)].median_ms for co in grid_out] for ci in grid_in]
        tables[config] = LayerTable(config, grid_in, grid_out, ms)
        if cache:
            store.store(what, {"ms": ms})
    return tables
