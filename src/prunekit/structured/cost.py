"""Analytic MACs and parameter counts of a pruning plan, without touching the model.

Every size a cost depends on (a weight dim, an activation axis) is a *factor*: a constant plus the
number of its positions whose unit survives. A cost is a sum of terms ``coeff × Π factors``.
Evaluating a plan is a handful of vectorised numpy operations, so budget searches can try many
plans; the pruner then checks the chosen plan with :func:`prunekit.metrics.count_macs`.

Counted like :mod:`prunekit.metrics.macs`: convolutions and linear layers (output positions ×
weight size) and matrix products (matmul/bmm), per example. Fused scaled dot-product attention is
left out, as torch's flop counter does on CPU; the pruner's final check measures the real count.
"""

from __future__ import annotations

import math
import numpy as np
from torch import fx

from prunekit.layer_kinds import kind_of
from prunekit.structured.fields import TensorInfo
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.ops import op_name
from prunekit.structured.values import TensorMeta

_MATMUL = {"matmul", "bmm", "mm", "baddbmm", "addmm"}


class CostModel:
    """MACs and parameters of ``graph.model`` as functions of a removal mask over labels."""

    def __init__(self, graph: DependencyGraph) -> None:
        self.graph = graph
        self.labels = graph.labels
        self._const: list[float] = [1.0]  # factor 0 is the constant 1
        self._lab: list[np.ndarray] = [np.zeros(0, np.int64)]
        self._cnt: list[np.ndarray] = [np.zeros(0)]
        self._terms: dict[str, list[tuple[float, list[int]]]] = {"macs": [], "params": []}
        self._dim_factor: dict[tuple[str, str, int], int] = {}
        self._batch = self._batch_size()
        self._build_params()
        self._build_macs()
        self._compile()

    # --- factors ------------------------------------------------------------------------------
    def _factor(self, ids: np.ndarray, axis: int = 0) -> int | float:
        """Factor for the kept size along ``axis`` of an id array (a constant when nothing can change)."""
        lab = self.labels[ids]
        if lab.ndim > 1:
            moved = np.moveaxis(lab, axis, 0).reshape(lab.shape[axis], -1)
            constant = (moved == moved[:, :1]).all(1)
            fixed = float((~constant).sum())
            lab = moved[constant, 0]
        else:
            fixed = 0.0
        units, counts = np.unique(lab, return_counts=True)
        if units.size == 1 and units[0] == self.labels[0]:
            return fixed + float(counts[0])
        self._const.append(fixed)
        self._lab.append(units)
        self._cnt.append(counts.astype(float))
        return len(self._const) - 1

    def _axis(self, info: TensorInfo, axis: int) -> int | float:
        f = info.field_at(axis)
        if f is None:
            return float(info.shape[axis])
        return self._factor(f.ids, f.axes.index(axis))

    def _dim(self, module: str, name: str, dim: int) -> int | float:
        record = self.graph.prop.tensors.get((module, name))
        if record is None:
            return 0.0
        key = (module, name, dim)
        if key not in self._dim_factor:
            f = self._factor(record.dim_ids[dim])
            if isinstance(f, float):
                return f
            self._dim_factor[key] = f
        return self._dim_factor[key]

    def _term(self, kind: str, coeff: float, factors: list[int | float]) -> None:
        ids = []
        for f in factors:
            if isinstance(f, float):
                coeff *= f
            else:
                ids.append(f)
        self._terms[kind].append((coeff, ids))

    # --- terms --------------------------------------------------------------------------------
    def _batch_size(self) -> int:
        for node in self.graph.prop.trace.graph.nodes:
            meta = node.meta.get("value")
            if node.op == "placeholder" and isinstance(meta, TensorMeta) and meta.shape:
                return int(meta.shape[0])
        return 1

    def _build_params(self) -> None:
        model = self.graph.model
        seen: set[int] = set()
        for module_name, module in model.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                if (module_name, name) in self.graph.prop.tensors:
                    self._term("params", 1.0, [self._dim(module_name, name, d) for d in range(p.dim())])
                else:
                    self._term("params", float(p.numel()), [])

    def _build_macs(self) -> None:
        prop = self.graph.prop
        handlers = {call.node: call for call in prop.leaf_calls}
        for node in prop.trace.graph.nodes:
            out = node.meta.get("value")
            if node in handlers and isinstance(out, TensorMeta):
                call = handlers[node]
                kind = kind_of(call.module)
                if kind is not None and kind.macs_over is not None:
                    # positions of the output (a transposed conv: of its input), as count_macs counts them
                    source = node.args[0].meta.get("value") if kind.macs_over == "input" and node.args else out
                    source = source if isinstance(source, TensorMeta) else out
                    positions = math.prod(source.shape) / max(1, source.shape[kind.channel_dim]) / self._batch
                    w = getattr(call.module, kind.weight)
                    self._term("macs", positions, [self._dim(call.path, kind.weight, d) for d in range(w.dim())])
            elif node.op in ("call_function", "call_method") and isinstance(out, TensorMeta):
                self._functional(node, out)

    def _functional(self, node: fx.Node, out: TensorMeta) -> None:
        name = op_name(node)
        infos = self.graph.prop.infos
        out_info = infos.get(node)
        if not isinstance(out_info, TensorInfo):
            return
        if name in ("conv1d", "conv2d", "conv3d", "linear"):
            w = infos.get(node.args[1]) if len(node.args) > 1 else infos.get(node.kwargs.get("weight"))
            if not isinstance(w, TensorInfo):
                return
            channel = out.shape[-1] if name == "linear" else out.shape[1]
            positions = math.prod(out.shape) / max(1, channel) / self._batch
            self._term("macs", positions, [self._axis(w, d) for d in range(w.ndim)])
        elif name in _MATMUL:
            a = infos.get(node.args[1] if name in ("baddbmm", "addmm") else node.args[0])
            if isinstance(a, TensorInfo):
                factors = [self._axis(out_info, d) for d in range(out_info.ndim)] + [self._axis(a, a.ndim - 1)]
                self._term("macs", 1.0 / self._batch, factors)

    def _compile(self) -> None:
        sizes = [len(x) for x in self._lab]
        self._flat_lab = np.concatenate(self._lab) if sum(sizes) else np.zeros(0, np.int64)
        self._flat_cnt = np.concatenate(self._cnt) if sum(sizes) else np.zeros(0)
        self._flat_fid = np.repeat(np.arange(len(sizes)), sizes)
        self._const_arr = np.asarray(self._const)
        self._compiled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for kind, terms in self._terms.items():
            width = max((len(ids) for _, ids in terms), default=0)
            coeff = np.array([c for c, _ in terms], dtype=float)
            idx = np.zeros((len(terms), max(1, width)), np.int64)
            for i, (_, ids) in enumerate(terms):
                idx[i, : len(ids)] = ids
            self._compiled[kind] = (coeff, idx)

    # --- evaluation ---------------------------------------------------------------------------
    def _values(self, removed: np.ndarray) -> np.ndarray:
        kept = self._flat_cnt * ~removed[self._flat_lab]
        return self._const_arr + np.bincount(self._flat_fid, weights=kept, minlength=len(self._const))

    def weight_size(self, module: str, dim: int, weight: str = "weight") -> int | float:
        """The kept size of ``module.weight``'s ``dim``: a factor id (read with :meth:`factor_values`) or a constant."""
        size = self._dim(module, weight, dim)
        if isinstance(size, float) and (module, weight) not in self.graph.prop.tensors:
            return float(self.graph.model.get_submodule(module).get_parameter(weight).shape[dim])
        return size

    def factor_values(self, removed: np.ndarray) -> np.ndarray:
        """The kept size of every factor after removing ``removed`` labels (index with :meth:`weight_size` ids)."""
        return self._values(removed)

    def removal_deltas(self, ordered_labels: np.ndarray) -> np.ndarray:
        """Row ``k``: how much every factor shrinks when the first ``k`` of ``ordered_labels`` are removed
        (``k`` = 0 … len), so the kept sizes of any removal prefix are ``factor_values(none) - rows[k]``."""
        n_factors = len(self._const)
        pos = np.full(int(max(self.labels.max(), self._flat_lab.max(initial=0))) + 1, -1, np.int64)
        pos[np.asarray(ordered_labels, np.int64)] = np.arange(len(ordered_labels))
        hit = pos[self._flat_lab] >= 0 if self._flat_lab.size else np.zeros(0, bool)
        per_label = np.zeros((len(ordered_labels), n_factors))
        np.add.at(per_label, (pos[self._flat_lab[hit]], self._flat_fid[hit]), self._flat_cnt[hit])
        return np.vstack([np.zeros((1, n_factors)), np.cumsum(per_label, axis=0)])

    def cost(self, removed: np.ndarray) -> dict[str, float]:
        """``{"macs": ..., "params": ...}`` of the model after removing ``removed`` labels."""
        return self.cost_of_sizes(self._values(removed))

    def cost_of_sizes(self, values: np.ndarray) -> dict[str, float]:
        """``{"macs": ..., "params": ...}`` from the kept size of every factor (:meth:`factor_values`)."""
        out = {}
        for kind, (coeff, idx) in self._compiled.items():
            out[kind] = float((coeff * values[idx].prod(axis=1)).sum()) if coeff.size else 0.0
        return out

    def dense_sizes(self) -> np.ndarray:
        """:meth:`factor_values` with nothing removed: every factor at its unpruned size."""
        return self._values(np.zeros(int(self.labels.max()) + 1, bool))

    def dense(self) -> dict[str, float]:
        return self.cost_of_sizes(self.dense_sizes())

