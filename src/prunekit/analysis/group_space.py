"""What the structured analyses share: a model's prunable channel groups as removal counts, priced by a budget.

:class:`GroupSpace` builds the dependency graph, scores and per-group limits exactly as
:class:`~prunekit.pruners.structured.StructuredPruner` does (same criterion, rounding step and
``max_layer_ratio`` cap), so removal counts chosen here become ``layer_ratios`` that the pruner
turns back into the same plan. Also here: BatchNorm re-calibration (EagleEye), fingerprints of
models and data, the shard a process measures under torchrun, and :class:`RecordCache`, the JSONL
file that makes scans and searches resumable after a kill.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit._io import append_jsonl, read_jsonl, write_text
from prunekit.errors import ConfigError, StructureError
from prunekit.importance.calibration import Calibration
from prunekit.importance.group import ScoringContext, make_criterion
from prunekit.pruners.allocation import Candidate, uniform_counts
from prunekit.pruners.latency import LatencyObjective, prepare_reference, time_alone
from prunekit.pruners.objective import Objective, measure_model
from prunekit.pruners.plan import Plan
from prunekit.pruners.structured import check_layer_patterns, group_scores
from prunekit.pruners.structured_config import StructuredConfig
from prunekit.structured.graph import DependencyGraph, GraphConfig
from prunekit.structured.groups import Group
from prunekit.structured.shapes import Invalid
from prunekit.structured.surgery import apply_plan
from prunekit.training.distributed import Shard, resolve_shard, shard_path

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


class GroupSpace:
    """The prunable groups of ``model`` as :class:`~prunekit.pruners.allocation.Candidate` records; see the module docstring.

    ``model`` is never changed: trials are pruned copies (:meth:`pruned_copy`).
    """

    def __init__(self, model: nn.Module, example_inputs: Any, config: StructuredConfig, calibration: Calibration | None = None) -> None:
        self.model = model
        self.inputs: tuple[Any, ...] = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        self.config = config
        check_layer_patterns(model, config)
        self.graph = DependencyGraph.build(model, self.inputs, GraphConfig(attention=config.graph_attention, grouped_conv=config.grouped_conv))
        if config.ignored_layers:
            self.graph.fix_modules(config.ignored_layers)
        self.round_to = config.resolved_round_to()
        criterion = make_criterion(config.importance, reduction=config.reduction, normalization=config.normalization)
        ctx = ScoringContext(model, self.graph, seed=config.seed, calibration=calibration)
        scores = group_scores(self.graph, criterion, ctx)
        self.groups: list[Group] = self.graph.prunable_groups()
        self.candidates = [Candidate.make(g.index, scores[g.index], config.max_layer_ratio,
                                          _first_match(g, config.layer_round_to, self.round_to), g.width()) for g in self.groups]
        self.scores = {c.index: c.scores for c in self.candidates}
        self.names = _unique_names(self.groups)
        self.costs: dict[str, float] = {m: measure_model(m, model, self.inputs) for m in ("macs", "params")}
        self._objectives: dict[str, Objective] = {}

    @property
    def metric(self) -> str:
        """The metric of the config's resource target (``macs``, ``params`` or ``latency``)."""
        return self.config.target_metric

    def objective(self, metric: str | None = None) -> Objective:
        """The objective pricing plans in ``metric`` (latency: tables of the config's runtime, measured once)."""
        metric = metric or self.metric
        if metric not in self._objectives:
            if metric == "latency":
                target = self.config.runtime_target
                reference = prepare_reference(self.model, self.inputs, target)
                ms = time_alone(reference, target)
                self.costs["latency"] = ms
                latency = LatencyObjective(self.graph, self.inputs, reference, ms, target, step=self.round_to, current_ms=ms)
                self._objectives[metric] = Objective(self.graph, self.inputs, latency.metric(), cost_model=latency.model.cost_model)
            else:
                self._objectives[metric] = Objective(self.graph, self.inputs, metric)
        return self._objectives[metric]

    def goal(self) -> float:
        """The budget the config's resource target sets, in :attr:`metric` (measured against ``model``)."""
        if not self.config.resource_target:
            raise ConfigError("a ratio search needs a resource target in the structured settings: macs_reduction, max_macs, max_params, "
                              "latency_reduction or max_latency_ms (e.g. StructuredConfig(macs_reduction=2.0))")
        self.objective()
        return float(self.config.final_cost(self.costs))

    def counts(self, ratios: Mapping[int, float]) -> dict[int, int]:
        """Removal counts of ``{group index: ratio}`` as the pruner rounds them (missing groups: 0)."""
        return uniform_counts(self.candidates, lambda c: ratios.get(c.index, 0.0))

    def max_counts(self) -> dict[int, int]:
        """Every group at its cap (``max_layer_ratio``, rounding step)."""
        return self.counts({c.index: 1.0 for c in self.candidates})

    def plan(self, counts: Mapping[int, int]) -> Plan:
        return Plan.from_counts(self.scores, {g: k for g, k in counts.items() if k > 0})

    def cost(self, counts: Mapping[int, int], metric: str | None = None) -> float:
        """The objective's estimate of ``counts`` in ``metric`` (default: the target's)."""
        return self.objective(metric).cost(self.plan(counts))

    def pruned_copy(self, counts: Mapping[int, int]) -> nn.Module:
        """A deep copy of the model with ``counts`` removed (the lowest-scored units of each group)."""
        removed = self.plan(counts).removed_mask(self.graph)
        trial = copy.deepcopy(self.graph.model)
        try:
            apply_plan(self.graph, removed, self.graph.validate(removed), trial)
        except Invalid as exc:
            raise StructureError(f"the candidate plan would break the model: {exc}; please report this model") from None
        return trial

    def ratios(self, counts: Mapping[int, int]) -> dict[int, float]:
        """``{group index: removed / size}`` (exact: the pruner's flooring gives ``counts`` back)."""
        sizes = {c.index: c.size for c in self.candidates}
        return {g: int(k) / sizes[g] for g, k in counts.items() if k > 0}

    def layer_ratios(self, counts: Mapping[int, int]) -> dict[str, float] | None:
        """``StructuredConfig.layer_ratios`` patterns giving ``counts``; None when a group has no module of its own to name it."""
        owners: dict[str, set[int]] = {}
        for g in self.groups:
            for m in _names(g):
                owners.setdefault(m, set()).add(g.index)
        out, ratios = {}, self.ratios(counts)
        for g in self.groups:
            ratio = ratios.get(g.index)
            if ratio is None:
                continue
            own = next((m for m in _names(g) if owners[m] == {g.index}), None)
            if own is None:
                return None
            out[_escape(own)] = ratio
        return out


def _names(group: Group) -> list[str]:
    """The module names the pruner matches per-layer patterns against."""
    return group.modules("out") or group.modules()


def _first_match(group: Group, patterns: Mapping[str, Any], default: Any) -> Any:
    names = _names(group)
    return next((v for p, v in patterns.items() if any(fnmatch.fnmatchcase(m, p) for m in names)), default)


def _escape(name: str) -> str:
    """An fnmatch pattern matching exactly ``name``."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name)


def _unique_names(groups: Sequence[Group]) -> dict[int, str]:
    seen: dict[str, int] = {}
    for g in groups:
        seen[g.name] = seen.get(g.name, 0) + 1
    return {g.index: g.name if seen[g.name] == 1 else f"{g.name}#{g.index}" for g in groups}


def recalibrate_bn(model: nn.Module, batches: Iterable[Batch], device: str | torch.device = "cpu") -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them from ``batches`` (EagleEye's adaptive BN).

    The BatchNorm layers run in train mode (a cumulative average), everything else in eval mode,
    without gradients; the model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    model.eval()
    batches = list(batches)
    if not norms or not batches:
        return model
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for x, _ in batches:
            model(x.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return model


def first_batches(batches: Iterable[Batch] | None, n: int | None) -> list[Batch]:
    """The first ``n`` batches (all when ``n`` is None) as a list."""
    out: list[Batch] = []
    if batches is None or n == 0:
        return out
    for batch in batches:
        out.append((batch[0], batch[1]))
        if n is not None and len(out) >= n:
            break
    return out


def _digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{t.numel()}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's state dict (names, dtypes, shapes and values)."""
    return _digest(sorted(model.state_dict().items()))


def data_fingerprint(*splits: Sequence[Batch]) -> str:
    """A hash of every tensor of the given batch lists."""
    return _digest((f"{s}.{i}.{j}", t) for s, batches in enumerate(splits) for i, batch in enumerate(batches) for j, t in enumerate(batch))


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """A hash of JSON-able settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RecordCache:
    """A JSONL file of finished measurements, headed by the fingerprints they belong to.

    ``header`` holds ``what`` the file records and fingerprints (``model``, ``data``,
    ``settings``) plus free ``info``; a file whose fingerprints differ is refused with a
    :class:`ConfigError` naming what changed. A line cut by a kill is dropped (the file is
    rewritten atomically without it) so that appends stay whole lines.
    """

    CHECKED = ("what", "model", "data", "settings")

    def __init__(self, path: str | os.PathLike[str], header: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.header = {"kind": "header", **header}

    def load(self) -> list[dict[str, Any]]:
        """The rows already recorded (writing the header first if the file is new or empty)."""
        records = read_jsonl(self.path)
        raw = self.path.read_bytes() if self.path.exists() else b""
        if records and records[0].get("kind") != "header":
            raise ConfigError(f"{self.path} is not a prunekit {self.header['what']} cache (no header line); choose another cache path (prunekit leaves this file as it is)")
        if records:
            self.check(records[0])
        if not records:
            write_text(self.path, json.dumps(self.header, sort_keys=True) + "\n")
        elif not raw.endswith(b"\n") or sum(1 for line in raw.splitlines() if line.strip()) != len(records):
            write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        return records[1:]

    def check(self, header: Mapping[str, Any]) -> None:
        changed = [k for k in self.CHECKED if header.get(k) != self.header.get(k)]
        if changed:
            raise ConfigError(f"{self.path} was written for another {' and '.join(changed)} than this run "
                              f"({'; '.join(f'{k}: {header.get(k)} in the file, {self.header.get(k)} now' for k in changed)}); "
                              "choose another cache path, or move this file aside to measure again")

    def append(self, row: Mapping[str, Any]) -> None:
        append_jsonl(self.path, row)
