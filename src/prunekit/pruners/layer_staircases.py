"""The latency staircase of a model's own layers: how each of its costliest conv/linear layers' measured
latency steps with its output channels on a runtime (inputs at their dense width), for reports.

The counts are sampled (at most ``points`` between half the width and the full width, every multiple
of the runtime's channel step among them) and measured through the per-layer latency tables of
:func:`prunekit.deployment.latency_tables.measure_tables`, so a rerun on the same machine reads them
from its cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prunekit.deployment.latency_tables import measure_tables
from prunekit.metrics import count_macs
from prunekit.pruners.latency import RuntimeTarget, layer_sites
from prunekit.structured.cost import CostModel
from prunekit.structured.graph import DependencyGraph


def staircase_counts(width: int, step: int, points: int) -> list[int]:
    """Output channel counts to measure for a layer ``width`` wide: ``points`` spread over [width/2, width], plus every multiple of ``step`` there."""
    low = max(1, width // 2)
    spread = np.unique(np.round(np.linspace(low, width, max(2, points))).astype(int))
    multiples = range(-(-low // step) * step, width + 1, step) if step > 1 else ()
    return sorted({*spread.tolist(), *multiples, width})


def layer_staircases(graph: DependencyGraph, example_inputs: tuple[Any, ...], target: RuntimeTarget, *, layers: int = 3, step: int = 1,
                     points: int = 24, progress: bool = False) -> dict[str, dict[str, Any]]:
    """``{layer: {"config", "inputs", "counts", "ms"}}`` for the ``layers`` prunable-output conv/linear layers of
    ``graph.model`` with the most dense MACs (one per distinct layer shape): latency (ms) on ``target`` against output channels."""
    cost_model = CostModel(graph)
    dense = cost_model.dense_sizes()
    macs = {layer.name: layer.dense for layer in count_macs(graph.model, example_inputs).layers}
    sites = [s for s in layer_sites(graph, cost_model) if isinstance(s.c_out, int) and not s.config.grouped]
    distinct = {}  # one layer per (config, input width): equal layers have equal staircases
    for s in sorted(sites, key=lambda s: -macs.get(s.module, 0)):
        distinct.setdefault((s.config, int(s.inputs(dense))), (s, staircase_counts(int(dense[s.c_out]), step, points)))
    chosen = list(distinct.items())[:layers]
    requests: dict[Any, tuple[set[int], set[int]]] = {}
    for (config, inputs), (_, counts) in chosen:
        have = requests.setdefault(config, (set(), set()))
        have[0].add(inputs)
        have[1].update(counts)
    tables = measure_tables({c: (sorted(i), sorted(o)) for c, (i, o) in requests.items()}, target.name, target.batch_size, target.threads,
                            progress=progress)
    out = {}
    for (config, inputs), (s, counts) in chosen:
        table = tables[config]
        row = table.ms[table.grid_in.index(inputs)]
        out[s.module] = {"config": config.name(), "inputs": inputs, "counts": counts, "ms": [row[table.grid_out.index(c)] for c in counts]}
    return out


__all__ = ["layer_staircases", "staircase_counts"]
