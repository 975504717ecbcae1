"""Structured pruning: a dependency graph of coupled channels and surgery that removes them for real."""

from prunekit.structured.graph import ActivationSite, DependencyGraph, GraphOptions, PruningWarning
from prunekit.structured.groups import Group, Member
from prunekit.structured.layers import ChannelLayer, LayerHandler, LeafShapes, register_layer
from prunekit.structured.ops import register_op

__all__ = [
    "ActivationSite", "ChannelLayer", "DependencyGraph", "GraphOptions", "Group", "LayerHandler", "LeafShapes", "Member",
    "PruningWarning", "register_layer", "register_op",
]
