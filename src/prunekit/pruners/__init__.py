"""Pruners: choose masks for a model and attach them."""

from prunekit.pruners.nm import nm_prune

__all__ = ["nm_prune"]
