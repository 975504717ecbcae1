"""Pruners: target filter + allocation + importance + selection."""

from prunekit.pruners.nm import nm_prune
from prunekit.pruners.unstructured import UnstructuredConfig, collect_gradients, compute_scores, prune_unstructured

__all__ = ["UnstructuredConfig", "collect_gradients", "compute_scores", "nm_prune", "prune_unstructured"]
