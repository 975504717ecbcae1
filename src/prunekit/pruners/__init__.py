"""Pruners: target filter + allocation + importance + selection."""

from prunekit.pruners.structured import LayerChannels, PruneResult, StructuredConfig, StructuredPruner

__all__ = ["LayerChannels", "PruneResult", "StructuredConfig", "StructuredPruner"]
