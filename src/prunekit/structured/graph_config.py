"""How to build a dependency graph: :class:`GraphConfig`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from prunekit.structured.layers import LayerHandlers
from prunekit.structured.propagate import AttentionModes


@dataclass(frozen=True)
class GraphConfig:
    """How to build a dependency graph.

    ``attention``: prune attention ``"heads"`` (default) or ``"head_dims"`` (the same dims of every
    head), or ``{scope pattern: mode}`` per attention block (fnmatch over the module a product is
    called in, e.g. ``{"blocks.*.attn": "head_dims"}``; unmatched blocks: heads). ``opaque``:
    module names (fnmatch patterns) to leave untouched as black boxes.
    ``autowrap_functions``: functions recorded as single ops instead of being traced into.
    ``layer_handlers``: ``{module type: LayerHandler}`` for this graph only, looked up (through the
    class hierarchy) before the process-wide :func:`~prunekit.structured.layers.register_layer` table.
    ``grouped_conv``: prune grouped convolutions by ``"channels"`` (channel stripes: the same
    output, or input, channel of every group; ``groups`` is kept) or by whole ``"groups"``;
    ``"channels"`` takes stripes wherever per-group input and output sizes are both >= 2 (so
    depthwise convolutions lose whole groups); ``"auto"`` (default) too, except for a convolution
    whose stripes other couplings merge into one unit (a GroupNorm over contiguous channels after
    it): that one loses whole groups. ``whole_group_convs``: grouped-conv nodes (fx node names, as
    :meth:`~prunekit.structured.graph.DependencyGraph.grouped_conv_modes` reports them) that ``"auto"`` prunes by whole groups
    although stripes would be exact (what the structured pruner chose per conv).
    ``GraphOptions`` is the deprecated old name of this class.
    """

    attention: AttentionModes = "heads"
    opaque: tuple[str, ...] = ()
    autowrap_functions: tuple[Callable[..., Any], ...] = ()
    strict: bool = False
    layer_handlers: LayerHandlers = field(default_factory=dict)
    grouped_conv: Literal["auto", "channels", "groups"] = "auto"
    whole_group_convs: frozenset[str] = frozenset()
