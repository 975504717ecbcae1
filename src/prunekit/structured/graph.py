"""The dependency graph: trace, couple, resolve into groups, and check plans before surgery."""

from __future__ import annotations

import fnmatch
import logging
import warnings
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from torch import fx, nn
from torch.nn.utils import parametrize

from prunekit._deprecation import renamed
from prunekit.errors import StructureError
from prunekit.structured.fields import BLOCK, TensorInfo, distinct
from prunekit.structured.graph_config import GraphConfig
from prunekit.structured.groups import Group, build_groups
from prunekit.structured.parts import Parts
from prunekit.structured.layers import handler_for
from prunekit.structured.propagate import AttentionModes, Propagation
from prunekit.structured.resolve import resolve, whole_groups_where_stripes_collapse
from prunekit.structured.shapes import AttrKey, Evaluator, Invalid, Site, dependencies
from prunekit.structured.trace import Trace, trace_model
from prunekit.structured.untouched import UntouchedLayer, find_untouched, layer_positions

log = logging.getLogger(__name__)


#: The reason :meth:`DependencyGraph.fix_modules` gives by default (the caller's ``ignored_layers``).
IGNORED = "ignored by the caller"


class PruningWarning(UserWarning):
    """Part of a model is left untouched by structured pruning (the message says which and why)."""


@dataclass(frozen=True)
class ActivationSite:
    """Where a group's channels can be observed: output ``index`` of module ``module`` along ``axis``."""

    module: str
    index: int
    axis: int
    units: np.ndarray


@dataclass
class DependencyGraph:
    """Coupled channel groups of a model, built from one concrete trace.

    >>> graph = DependencyGraph.build(model, torch.randn(1, 3, 32, 32))
    >>> [g for g in graph.groups if g.prunable]
    """

    model: nn.Module
    prop: Propagation
    labels: np.ndarray
    groups: list[Group]
    warnings: list[str] = field(default_factory=list)
    _sites_of_label: dict[int, list[int]] = field(default_factory=dict)
    _untouched: list[UntouchedLayer] = field(default_factory=list)
    _ordinary: list[str] = field(default_factory=list)
    options: GraphConfig = field(default_factory=GraphConfig)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, model: nn.Module, example_inputs: Any, options: GraphConfig | None = None, *,
              observer: AbstractContextManager[Any] | None = None) -> DependencyGraph:
        """Trace ``model(*example_inputs)`` and find every group of coupled channels.

        ``observer``: a context entered around the tracer's forward (which runs every operator for real).
        """
        options = options or GraphConfig()
        if any(parametrize.is_parametrized(m) for m in model.modules()):
            raise StructureError("the model has parametrizations (masks?); strip them first (prunekit.masks) before structured pruning")
        inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        opaque = {name for name, _ in model.named_modules() if name and any(fnmatch.fnmatchcase(name, p) for p in options.opaque)}
        lookup = partial(handler_for, overrides=options.layer_handlers)
        known: dict[type, bool] = {}

        def is_handled(m: nn.Module) -> bool:
            if type(m) not in known:
                known[type(m)] = lookup(m) is not None
            return known[type(m)]

        trace = trace_model(model, inputs, is_handled, opaque, options.autowrap_functions, observer=observer)
        return cls._from_trace(model, trace, options)

    @classmethod
    def _from_trace(cls, model: nn.Module, trace: Trace, options: GraphConfig) -> DependencyGraph:
        lookup = partial(handler_for, overrides=options.layer_handlers)
        whole = options.whole_group_convs if options.grouped_conv == "auto" else frozenset()
        prop = Propagation(trace, lookup, attention=options.attention, grouped_conv=options.grouped_conv, strict=options.strict,
                           whole_group_convs=frozenset(whole)).run()
        labels = resolve(prop)
        if options.grouped_conv == "auto":
            prop, labels = whole_groups_where_stripes_collapse(prop, labels)
        graph = cls(model, prop, labels, [], options=options)
        graph._form_groups()
        return graph

    def with_attention(self, attention: AttentionModes) -> DependencyGraph:
        """The graph of the same (unchanged) model with another ``attention`` setting, propagated from this graph's trace."""
        return self.with_options(attention=attention)

    def with_options(self, **changes: Any) -> DependencyGraph:
        """The graph of the same (unchanged) model with ``changes`` to its :class:`GraphConfig`, propagated from this graph's trace."""
        return self._from_trace(self.model, self.prop.trace, replace(self.options, **changes))

    def _unit_mask(self, labels: np.ndarray) -> np.ndarray:
        """Labels that can be units: not blocked, and holding a channel of a real layer (a role other than 'param')."""
        mask = np.zeros(int(labels.max()) + 1, bool)
        for rec in self.prop.tensors.values():
            for dim, role in enumerate(rec.roles):
                if role and role != "param":
                    mask[labels[rec.dim_ids[dim]]] = True
        mask[labels[BLOCK]] = False
        return mask

    def _form_groups(self) -> None:
        prop = self.prop
        records = [(r.module, r.name, r.dim_ids, [role or "param" for role in r.roles]) for key, r in prop.tensors.items() if key == (r.module, r.name)]
        self.groups = build_groups(records, self.labels, self._unit_mask(self.labels))
        self._index_sites()
        self._warn_blocks()
        self._probe()
        self._name_untouched()

    def _index_sites(self) -> None:
        """Which sites a plan must check: by the labels of the tensors they read, and by the attributes they read."""
        self._sites_of_label = {}
        self._sites_of_key: dict[AttrKey, list[int]] = {}
        self._unconditional: list[int] = []
        for i, site in enumerate(self.prop.sites):
            ids = list(site.ids)
            if site.always:
                read, keys = dependencies(site.node, self.infos)
                ids += read
                for key in keys:
                    self._sites_of_key.setdefault(key, []).append(i)
                if not keys and not read:
                    self._unconditional.append(i)
            lab = distinct(self.labels[np.concatenate([a.ravel() for a in ids])]) if ids else np.zeros(0, np.int64)
            for label in lab.tolist():
                self._sites_of_label.setdefault(label, []).append(i)
        self.parts = Parts.build(self.infos, self.prop.tensors, self.labels, self.groups)

    def _warn_blocks(self) -> None:
        """One warning per layer whose explicit block took away channels that were otherwise prunable."""
        ids = self.prop.ids
        if not ids.blocks:
            return
        base = ids.components(explicit=False)
        prunable = self._unit_mask(base)
        by_layer: dict[str, list[str]] = {}
        for rec in ids.blocks:
            if prunable[base[rec.ids]].any():
                reasons = by_layer.setdefault(rec.where or "<model>", [])
                if rec.reason not in reasons:
                    reasons.append(rec.reason)
        for layer, reasons in by_layer.items():
            self._warn(f"{layer}: channels coupled to it are left untouched: {'; '.join(reasons)}")

    def _warn(self, message: str) -> None:
        self.warnings.append(message)  # emitted by _name_untouched, once every untouched layer is named

    def _name_untouched(self) -> None:
        """Name every untouched layer (:meth:`untouched_layers`) in exactly one warning, then emit them all.

        A layer whose reason is a site already warned about is listed in that site's warning; the
        others get one warning each.
        """
        self._untouched = find_untouched(self.prop.ids, self.prop.tensors, self.labels, self.groups, self._ordinary)
        listed: dict[str, list[str]] = {}
        for u in self._untouched:
            listed.setdefault(u.where, []).append(u.name)
        subjects = {m.partition(": ")[0]: i for i, m in enumerate(self.warnings)}
        for where, names in listed.items():
            if where in subjects:
                self.warnings[subjects[where]] += f" (layers left untouched: {', '.join(names)})"
        for u in self._untouched:
            if u.where not in subjects:
                self.warnings.append(f"{u.name}: left untouched: {u.reason}")
        for message in self.warnings:
            warnings.warn(message, PruningWarning, stacklevel=4)

    def untouched_layers(self) -> list[UntouchedLayer]:
        """Layers that keep every channel for a reason of the model (each is named in :attr:`warnings`)."""
        return list(self._untouched)

    def layers(self) -> list[str]:
        """Modules with a tensor dim of role ``out`` or ``in`` (of size > 1): what untouched-layer checks cover."""
        return list(layer_positions(self.prop.tensors))

    def fixed_by_model(self) -> list[str]:
        """Layers whose every channel is fixed by the model's inputs or outputs alone (not worth a warning)."""
        return list(self._ordinary)

    def _probe(self) -> None:
        """Refuse groups whose removal would break a size the model computes."""
        failed: dict[str, list[str]] = {}
        for g in self.groups:
            if not g.prunable or g.size < 2:
                g.prunable = g.prunable and g.size >= 2
                if g.size < 2 and not g.reason:
                    g.reason = "a single unit"
                continue
            trials = _probe_trials(g.size, self.parts.of_group(g))
            if not trials:
                sole = next(p for p in self.parts.of_group(g) if p.size == 1)
                g.prunable, g.reason = False, f"{self.parts.where_of(g, sole)} would have no channels left (it holds only some of its group's channels)"
                failed.setdefault(g.name, []).append(g.reason)
                continue
            for units in trials:
                removed = np.zeros(int(self.labels.max()) + 1, bool)
                removed[g.labels[units]] = True
                try:
                    self.validate(removed)
                except Invalid as exc:
                    g.prunable, g.reason = False, str(exc)
                    failed.setdefault(g.name, []).append(str(exc))
                    break
        for name, reasons in failed.items():
            self._warn(f"{name}: channels coupled to it are left untouched: {reasons[0]}")

    # --- queries ------------------------------------------------------------------------------
    @property
    def infos(self) -> dict[fx.Node, Any]:
        return self.prop.infos

    @property
    def head_scopes(self) -> list[str]:
        """Modules (scopes) whose products multiply per-head channels: where ``attention`` chooses heads or head dims."""
        return list(self.prop.head_scopes)

    def grouped_conv_modes(self) -> dict[str, tuple[str, str]]:
        """``{node: (module, "channels" | "groups")}`` of every grouped conv that channel stripes would fit
        (depthwise convs are not listed): how this graph prunes it."""
        return {node: (module, "channels" if node in self.prop.stripe_convs else "groups") for node, module in self.prop.grouped_convs.items()}

    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def groups_of(self, module: str) -> list[Group]:
        """Groups with a member in ``module`` (exact name)."""
        return [g for g in self.groups if any(m.module == module for m in g.members)]

    def fix_modules(self, patterns: Sequence[str], reason: str = IGNORED) -> None:
        """Make every group touching a module matching ``patterns`` unprunable."""
        for g in self.groups:
            if any(fnmatch.fnmatchcase(m.module, p) for m in g.members for p in patterns):
                g.prunable, g.reason = False, reason

    def output_layers(self) -> list[str]:
        """Modules whose output channels are the model's outputs (classifier layers)."""
        outs: list[str] = []
        blocked = self.labels[BLOCK]
        for (module, _name), rec in self.prop.tensors.items():
            if "out" in rec.roles:
                d = rec.roles.index("out")
                if (self.labels[rec.dim_ids[d]] == blocked).all() and module not in outs and self._feeds_output(module):
                    outs.append(module)
        return outs

    def _feeds_output(self, module: str) -> bool:
        output = next(n for n in self.prop.trace.graph.nodes if n.op == "output")
        stack, seen = list(output.all_input_nodes), set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n.op == "call_module" and n.target == module:
                return True
            if n.op == "call_module" and self.prop.tensors.get((str(n.target), "weight")) is not None:
                continue
            stack.extend(n.all_input_nodes)
        return False

    def activation_sites(self, group: Group) -> list[ActivationSite]:
        """Module outputs on which the group's channels appear (for activation statistics)."""
        unit_of = {int(lab): u for u, lab in enumerate(group.labels)}
        sites = []
        for path, nodes in self.prop.trace.module_outputs.items():
            info = self.prop.infos.get(nodes[0])
            for index, t in enumerate(info if isinstance(info, list) else [info]):
                if not isinstance(t, TensorInfo):
                    continue
                for f in t.fields:
                    if len(f.axes) != 1:
                        continue
                    lab = self.labels[f.ids]
                    units = np.array([unit_of.get(int(x), -1) for x in lab])
                    if (units >= 0).any():
                        sites.append(ActivationSite(path, index, f.axes[0], units))
        return sites

    # --- plans --------------------------------------------------------------------------------
    def removed_mask(self, selection: dict[int, Iterable[int]]) -> np.ndarray:
        """Boolean mask over labels from ``{group index: unit indices to remove}``."""
        removed = np.zeros(int(self.labels.max()) + 1, bool)
        for gi, units in selection.items():
            units = list(units)
            if not units:
                continue
            g = self.groups[gi]
            if not g.prunable:
                raise StructureError(f"group {g.name!r} is not prunable: {g.reason}")
            if len(units) >= g.size:
                raise StructureError(f"cannot remove all {g.size} units of group {g.name!r}")
            removed[g.labels[np.asarray(units, dtype=np.int64)]] = True
        return removed

    def evaluator(self, removed: np.ndarray, bindings: dict[AttrKey, int] | None = None) -> Evaluator:
        return Evaluator(self.prop.infos, self.labels, removed, dict(bindings or {}))

    def validate(self, removed: np.ndarray) -> dict[AttrKey, int]:
        """Check a plan against every size the model computes; return the attribute values it needs.

        Raises :class:`~prunekit.structured.shapes.Invalid` if the plan would break the model.
        """
        relevant: set[int] = set(self._unconditional)
        gone = np.flatnonzero(removed).tolist()
        for label in gone:
            relevant.update(self._sites_of_label.get(label, ()))
        emptied = self.parts.emptied(removed)
        if emptied is not None:
            raise Invalid(f"{emptied} would have no channels left (it holds only some of its group's channels)")
        ev = self.evaluator(removed)
        bindings: dict[AttrKey, int] = {}
        pending = sorted(relevant)
        while pending:  # a rewritten attribute brings in every site that reads it
            for i in pending:
                for key, value in self.prop.sites[i].bind(ev):
                    if bindings.get(key, value) != value:
                        raise Invalid(f"{key[0]}.{key[1]} would need two values ({bindings[key]} and {value})")
                    bindings[key] = value
            more = {j for key in bindings for j in self._sites_of_key.get(key, ())} - relevant
            relevant |= more
            pending = sorted(more)
        sites: list[Site] = [self.prop.sites[i] for i in sorted(relevant)]
        ev = ev.with_bindings(bindings)
        for site in sites:
            try:
                site.check(ev)
            except Invalid as exc:
                raise Invalid(f"{site.where or '<model>'}: {exc}") from None
        return bindings


def _probe_trials(size: int, parts: list[np.ndarray]) -> list[list[int]]:
    """Removals that tell whether a group can shrink: its first removable unit, and all but one unit
    (keeping one unit of every part, see :meth:`~prunekit.structured.parts.Parts.of_group`). Empty when
    every unit is some tensor's only channel."""
    keep = {int(p[-1]) for p in parts} | {size - 1}
    sole = {int(p[0]) for p in parts if p.size == 1}
    first = next((u for u in range(size) if u not in sole), None)
    if first is None:
        return []
    return [[first], [u for u in range(size) if u not in keep]] if len(keep) < size else [[first]]


__getattr__ = renamed(__name__, {"GraphOptions": ("GraphConfig", lambda: GraphConfig)})
