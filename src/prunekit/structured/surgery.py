"""Surgery: physically remove the chosen units from every coupled tensor and attribute.

The result is an ordinary, smaller module: parameters are replaced by smaller ``nn.Parameter``
objects (``requires_grad`` kept, ``.grad`` dropped: create the optimizer after pruning), buffers by
smaller tensors, and attributes (``out_channels``, ``num_heads``, ``normalized_shape`` ...) are
rewritten. Nothing is attached to the model. The graph used for the plan is stale afterwards.
The model's train/eval mode is toggled once at the end so that modules caching tensors derived
from their parameters (timm's LeViT attention biases) drop those caches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import fx, nn

from prunekit.errors import StructureError
from prunekit.structured.fields import TensorInfo
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.groups import Group
from prunekit.structured.layers import LeafShapes, handler_for_type
from prunekit.structured.shapes import AttrKey, Invalid

log = logging.getLogger(__name__)


def remove_units(graph: DependencyGraph, selection: Mapping[Group | int, Iterable[int]]) -> nn.Module:
    """Remove ``{group: unit indices}`` from ``graph.model`` in place and return it.

    The plan is validated before anything changes: a plan that would break a size the model computes
    raises :class:`~prunekit.errors.StructureError` and leaves the model untouched.
    """
    plan = {(g.index if isinstance(g, Group) else int(g)): list(units) for g, units in selection.items()}
    removed = graph.removed_mask(plan)
    try:
        bindings = graph.validate(removed)
    except Invalid as exc:
        raise StructureError(f"this pruning plan would break the model: {exc}") from None
    apply_plan(graph, removed, bindings)
    return graph.model


def apply_plan(graph: DependencyGraph, removed: np.ndarray, bindings: Mapping[AttrKey, int], model: nn.Module | None = None) -> set[str]:
    """Slice tensors, update layer attributes and write attribute bindings; return changed module names.

    ``model`` defaults to ``graph.model``; a deep copy of it (same module names) works too.
    """
    model = graph.model if model is None else model
    labels = graph.labels
    modules = dict(model.named_modules())
    ev = graph.evaluator(removed, dict(bindings))
    old_shapes = {node: info.shape for node, info in graph.infos.items() if isinstance(info, TensorInfo)}
    replaced: dict[int, torch.Tensor] = {}
    changed: set[str] = set()
    for (module, name), record in graph.prop.tensors.items():
        owner = modules[module]
        old = getattr(owner, name)
        if id(old) in replaced:
            _assign(owner, name, replaced[id(old)])
            changed.add(module)
            continue
        keeps = []
        for dim, ids in enumerate(record.dim_ids):
            keep = ~removed[labels[ids]]
            if not keep.all():
                keeps.append((dim, torch.as_tensor(np.flatnonzero(keep), device=old.device)))
        if not keeps:
            continue
        with torch.no_grad():
            data = old.detach()
            for dim, index in keeps:
                data = data.index_select(dim, index)
            new: torch.Tensor = nn.Parameter(data.clone(), requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else data.clone()
        replaced[id(old)] = new
        _assign(owner, name, new)
        changed.add(module)
    leaf_paths = set()
    for call in graph.prop.leaf_calls:
        inputs = [ev.shape(a) if isinstance(a, fx.Node) and a in old_shapes else None for a in call.node.args]
        moved = any(s is not None and s != old_shapes[a] for s, a in zip(inputs, call.node.args))
        if call.path in changed or moved:
            call.handler.update(modules[call.path], LeafShapes(inputs))
            leaf_paths.add(call.path)
    for path in sorted(changed - leaf_paths):
        module = modules[path]
        handler = handler_for_type(module, graph.options.layer_handlers)
        if handler is not None:
            handler.update(module, None)
    for (owner_path, attr, index), value in bindings.items():
        owner = modules[owner_path]
        if index is None:
            setattr(owner, attr, int(value))
        else:
            old = getattr(owner, attr)
            items = list(old)
            items[index] = int(value)
            setattr(owner, attr, type(old)(items))
        changed.add(owner_path)
    # modules that cache tensors derived from their parameters (e.g. attention biases) drop them on train()
    mode = model.training
    model.train(True)
    model.train(mode)
    log.debug("pruned %d modules", len(changed))
    return changed


def replace_module(model: nn.Module, name: str, replacement: nn.Module) -> nn.Module:
    """Put ``replacement`` where the submodule ``name`` is (in place; depth pruning); return the module taken out.

    Only that entry changes: every other module keeps its name, so the remaining state_dict keys stay.
    """
    parent_name, _, child = name.rpartition(".")
    if not child:
        raise StructureError("cannot replace the model itself; name a submodule (e.g. 'layer1.0')")
    try:
        parent = model.get_submodule(parent_name)
        old = parent.get_submodule(child)
    except AttributeError:
        raise StructureError(f"{type(model).__name__} has no submodule {name!r}; names look like {[n for n, _ in model.named_modules() if n][:5]}") from None
    setattr(parent, child, replacement)
    return old


def _assign(owner: nn.Module, name: str, tensor: torch.Tensor) -> None:
    if name in owner._parameters:
        owner._parameters[name] = tensor  # type: ignore[assignment]
    elif name in owner._buffers:
        owner._buffers[name] = tensor
    else:
        raise StructureError(f"{type(owner).__name__}.{name} is neither a parameter nor a buffer; cannot resize it")
