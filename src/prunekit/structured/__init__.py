"""Structured pruning: a dependency graph of coupled channels and surgery that removes them for real."""

from prunekit._deprecation import renamed
from prunekit.structured.cost import CostModel
from prunekit.structured.graph import ActivationSite, DependencyGraph, GraphConfig, PruningWarning
from prunekit.structured.groups import Group, Member
from prunekit.structured.layers import LAYERS, ChannelLayer, LayerHandler, LeafShapes, handler_for, register_layer
from prunekit.structured.ops import OP_RULES, register_op
from prunekit.structured.regularizers import apply_bn_l1_grad_, bn_l1_penalty, group_lasso_penalty
from prunekit.structured.spec import architecture_spec, load_pruned, load_spec, rebuild, save_pruned, save_spec
from prunekit.structured.surgery import apply_plan, remove_units
from prunekit.structured.untouched import UntouchedLayer

__all__ = [
    "LAYERS", "OP_RULES", "ActivationSite", "ChannelLayer", "CostModel", "DependencyGraph", "GraphConfig", "Group",
    "LayerHandler", "LeafShapes", "Member", "PruningWarning", "UntouchedLayer", "apply_bn_l1_grad_", "apply_plan", "architecture_spec",
    "bn_l1_penalty", "group_lasso_penalty", "handler_for", "load_pruned", "load_spec", "rebuild", "register_layer",
    "register_op", "remove_units", "save_pruned", "save_spec",
]


__getattr__ = renamed(__name__, {"GraphOptions": ("GraphConfig", lambda: GraphConfig)})
