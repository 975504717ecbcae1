"""Pruners: target filter + allocation + importance + selection."""

from prunekit.pruners.nm import nm_prune
from prunekit.pruners.structured import LayerChannels, PruneResult, StructuredConfig, StructuredPruner
from prunekit.pruners.unstructured import UnstructuredConfig, collect_gradients, compute_scores, prune_unstructured

__all__ = [
    "LayerChannels", "PruneResult", "StructuredConfig", "StructuredPruner", "UnstructuredConfig", "collect_gradients",
    "compute_scores", "nm_prune", "prune_unstructured",
]
