"""Pruners: target filter + allocation + importance + selection, all following one lifecycle.

- :mod:`~prunekit.pruners.lifecycle`: the :class:`Pruner` protocol (prepare / step / state_dict / finish);
- :mod:`~prunekit.pruners.allocation`: how much each layer or group loses (every rule);
- :mod:`~prunekit.pruners.plan`: the :class:`Plan` a structured step applies;
- :mod:`~prunekit.pruners.objective`: what a plan costs (:class:`Objective`, :data:`COST_METRICS`);
- :mod:`~prunekit.pruners.unstructured`, :mod:`~prunekit.pruners.nm`, :mod:`~prunekit.pruners.structured`: the pruners;
- :mod:`~prunekit.pruners.at_init`: pruning at initialisation (SNIP, SynFlow, GraSP) and the random control;
- :mod:`~prunekit.pruners.depth`: depth pruning (whole residual blocks, found by :mod:`~prunekit.pruners.depth_blocks`).
"""

from prunekit.importance.calibration import collect_gradients
from prunekit.pruners.at_init import AtInitConfig, prune_at_init, random_masks_like, reinitialize
from prunekit.pruners.depth import DEPTH_CRITERIA, DepthConfig, DepthResult, ResidualBlock, find_blocks, prune_depth
from prunekit.pruners.lifecycle import Pruner
from prunekit.pruners.nm import NM_CRITERIA, NMPruner, nm_prune, prune_nm
from prunekit.pruners.objective import COST_METRICS, CostMetric, Objective
from prunekit.pruners.plan import Plan
from prunekit.pruners.result import LayerChannels, PruneResult, layer_channels
from prunekit.pruners.structured import StructuredConfig, StructuredPruner, prune_structured
from prunekit.pruners.unstructured import UnstructuredConfig, UnstructuredPruner, compute_scores, prune_unstructured

__all__ = [
    "AtInitConfig", "prune_at_init", "random_masks_like", "reinitialize",
    "DEPTH_CRITERIA", "DepthConfig", "DepthResult", "ResidualBlock", "find_blocks", "prune_depth",
    "COST_METRICS", "NM_CRITERIA", "CostMetric", "LayerChannels", "NMPruner", "Objective", "Plan", "PruneResult", "Pruner",
    "StructuredConfig", "StructuredPruner", "UnstructuredConfig", "UnstructuredPruner", "collect_gradients", "compute_scores",
    "layer_channels", "nm_prune", "prune_nm", "prune_structured", "prune_unstructured",
]
